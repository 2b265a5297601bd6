"""Replay pruner configurations over fully trained candidates: what each one saves and what it kills.

Two phases:

* ``collect``: per setting (data set x family), sample N candidates with Optuna's
  ``RandomSampler`` through the package's own space, train each one fully once (every
  epoch's validation accuracy, the paper's variance shift and the dropout-induced shift),
  and cache them under ``benchmarks/cache/<setting>.json`` (resumable).
* ``replay``: for every pruner configuration (built by ``search.pruners.make_pruner``, as the
  CLI builds it) and R random candidate orders, run a fresh in-memory Optuna study exactly
  as the trainer would (ask, set the shift attrs, report, should_prune, tell) and measure
  the fraction of epochs trained, P(best), regret and top-5 candidates killed.

    python benchmarks/pruning_replay.py                       # collect (resumes) + replay
    python benchmarks/pruning_replay.py --phase replay        # replay the cached candidates only
    python benchmarks/pruning_replay.py --settings digits-mlp,mnist1d-cnn --candidates 60 --orders 50
    python benchmarks/pruning_replay.py --phase report        # rewrite the markdown and plots from the JSON
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import statistics
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CACHE = HERE / "cache"
SETTINGS: dict[str, tuple[str, str]] = {  # setting -> (--dataset, --family)
    "digits-mlp": ("digits", "mlp"),
    "digits-cnn": ("digits", "cnn"),
    "mnist1d-mlp": ("mnist1d", "mlp"),
    "mnist1d-cnn": ("mnist1d", "cnn"),
    "mnist1d20k-mlp": ("mnist1d:20000", "mlp"),
    "mnist1d20k-cnn": ("mnist1d:20000", "cnn"),
    # The placement space: every block has BN and dropout, so where dropout sits (and at which
    # rate) is the main choice -- the question varshift is for. Not in the default run.
    "digits-mlp-placement": ("digits", "mlp"),
    "digits-cnn-placement": ("digits", "cnn"),
    "mnist1d-mlp-placement": ("mnist1d", "mlp"),
    "mnist1d-cnn-placement": ("mnist1d", "cnn"),
}
DEFAULT_SETTINGS = [s for s in SETTINGS if not s.endswith("-placement")]
# The placement space as `search run` options (live_guard.py passes the same ones).
PLACEMENT_OPTIONS = {"bn": "always", "dropout": "always", "placements": "blocks"}


def setting_options(setting: str) -> dict[str, str]:
    """The `search run` options that pick a setting's space: none, or the placement space's."""
    return PLACEMENT_OPTIONS if setting.endswith("-placement") else {}


def space_of(setting: str) -> Any:
    """The space a setting samples from, built the way `search run` builds it."""
    from search.config import build_config

    return build_config(cli_values={"family": SETTINGS[setting][1], **setting_options(setting)}).space()


GOAL_P_BEST = 0.95  # the default keeps the no-pruning best in >= 95% of orders, every setting
GOAL_FRACTION = 0.5  # ... at <= half of the no-pruning epochs, every setting
GOAL_GUARD_SAVING = 0.10  # the guard alone saves >= 10% of epochs with P(best) = 1


def quiet() -> None:
    """Lightning's INFO lines and warnings, once per trained candidate, would drown the log."""
    warnings.filterwarnings("ignore")
    import pytorch_lightning  # noqa: F401  # its import sets its logger to INFO: import first

    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# --------------------------------------------------------------------------- collect


def arrangement(spec: Any) -> dict[str, Any]:
    """Where BN and dropout sit: per-block order of the components present, and shift flags."""
    blocks = []
    drop_before_bn = False  # dropout directly ahead of BN inside a block (the paper's worst case)
    feeds_bn = False  # any dropout before the last BN (a later block's BN still shifts)
    last_bn = max((i for i, b in enumerate(spec.blocks) if b.bn), default=-1)
    for i, b in enumerate(spec.blocks):
        present = [c for c in b.order if c == "act" or (c == "bn" and b.bn) or (c == "drop" and b.dropout)]
        blocks.append("-".join(present))
        if b.bn and b.dropout and b.order.index("drop") < b.order.index("bn"):
            drop_before_bn = True
        if b.dropout and (i < last_bn or (i == last_bn and b.order.index("drop") < b.order.index("bn"))):
            feeds_bn = True
    return {
        "blocks": blocks,
        "head_dropout": spec.head_dropout,
        "has_bn": any(b.bn for b in spec.blocks),
        "has_dropout": any(b.dropout for b in spec.blocks) or spec.head_dropout is not None,
        "dropout_before_bn": drop_before_bn,
        "dropout_feeds_bn": feeds_bn,
    }


def sample_candidates(setting: str, n: int, seed: int) -> list[dict[str, Any]]:
    """The first ``n`` candidates a seeded RandomSampler draws from the setting's space."""
    import optuna

    from spaces import suggest_architecture
    from trainers.data import load_dataset

    data = load_dataset(SETTINGS[setting][0], seed=0)
    space = space_of(setting)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for i in range(n):
        trial = study.ask()
        spec = suggest_architecture(trial, space, data.input_shape, data.n_classes)
        out.append(
            {
                "index": i,
                "architecture": spec.describe(),
                "params": trial.params,
                "spec": spec.to_dict(),
                **arrangement(spec),
            }
        )
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # nothing to learn: random sampling
    return out


_DATA: dict[str, Any] = {}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    quiet()


def _train(task: tuple[str, dict[str, Any], int]) -> tuple[str, dict[str, Any]]:
    """Train one candidate fully (worker process); returns its per-epoch record."""
    setting, cand, epochs = task
    from spaces import ArchitectureSpec
    from trainers.data import load_dataset
    from trainers.fit import TrainConfig, train_candidate

    dataset = SETTINGS[setting][0]
    if dataset not in _DATA:
        _DATA[dataset] = load_dataset(dataset, seed=0)
    spec = ArchitectureSpec.from_dict(cand["spec"])
    record = {k: v for k, v in cand.items() if k != "spec"}
    start = time.perf_counter()
    try:
        result = train_candidate(
            spec, _DATA[dataset], TrainConfig(max_epochs=epochs, seed=cand["index"], accelerator="cpu")
        )
    except (RuntimeError, ValueError) as err:  # NonFiniteLossError or an untrainable candidate
        record.update(failed=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - start)
        return setting, record
    record.update(
        failed=None,
        val_acc=[float(r.val_acc) for r in result.reports],
        variance_shift=[float(r.variance_shift_max) for r in result.reports],
        dropout_shift=[float(r.dropout_shift_max) for r in result.reports],
        best_val_acc=float(result.best_val_acc),
        n_params=result.n_params,
        seconds=round(time.perf_counter() - start, 2),
    )
    return setting, record


def cache_path(setting: str) -> Path:
    return CACHE / f"{setting}.json"


def load_cache(setting: str, epochs: int, seed: int) -> dict[str, Any]:
    path = cache_path(setting)
    if path.is_file():
        cache = json.loads(path.read_text())
        if cache.get("epochs") == epochs and cache.get("sampler_seed") == seed:
            return cache
        print(f"{path}: made with other epochs/seed; starting {setting} afresh", flush=True)
    dataset, family = SETTINGS[setting]
    return {
        "setting": setting,
        "dataset": dataset,
        "family": family,
        "epochs": epochs,
        "sampler_seed": seed,
        "candidates": {},
    }


def save_cache(cache: dict[str, Any]) -> None:
    path = cache_path(cache["setting"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, path)


def _cost(setting: str, cand: dict[str, Any]) -> float:
    """Rough training cost, to hand the largest candidates out first (better load balance)."""
    spec = cand["spec"]
    width = spec["blocks"][0]["width"]
    size = {"digits": 1.0, "mnist1d": 3.0, "mnist1d:20000": 12.0}[SETTINGS[setting][0]]
    conv = 8.0 if spec["family"] == "cnn" else 1.0
    return size * conv * len(spec["blocks"]) * width


def collect(settings: list[str], n: int, epochs: int, seed: int, workers: int) -> None:
    caches = {s: load_cache(s, epochs, seed) for s in settings}
    tasks = []
    for s in settings:
        todo = [c for c in sample_candidates(s, n, seed) if str(c["index"]) not in caches[s]["candidates"]]
        todo.sort(key=lambda c: -_cost(s, c))
        tasks += [(s, c, epochs) for c in todo]
        print(f"{s}: {n - len(todo)} cached, {len(todo)} to train", flush=True)
    if not tasks:
        return
    start, done = time.perf_counter(), 0
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        for setting, record in pool.imap_unordered(_train, tasks, chunksize=1):
            caches[setting]["candidates"][str(record["index"])] = record
            save_cache(caches[setting])
            done += 1
            acc = "failed" if record["failed"] else f"best {record['best_val_acc']:.3f}"
            print(
                f"[{done}/{len(tasks)} {time.perf_counter() - start:6.0f}s] {setting} #{record['index']} "
                f"{record['seconds']:.1f}s {acc} {record['architecture']}",
                flush=True,
            )


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class PrunerConfig:
    """One ``make_pruner`` call: the CLI's ``--pruner`` value and its options."""

    name: str  # a short label for tables and plots
    spec: str  # "none", "median", "hyperband", "varshift", "varshift+median", ...
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> str | None:
        """The curve pruner with its warm-up, e.g. ``median w6``; None for none/guard alone."""
        base = self.spec.rpartition("+")[2] if "+" in self.spec else self.spec
        if base not in ("median", "hyperband"):
            return None
        return f"{base} w{self.kwargs.get('curve_warmup', 1)}"

    @property
    def guarded(self) -> bool:
        return self.spec.startswith("varshift")

    def guard_label(self) -> str:
        k = self.kwargs
        return f"{k.get('statistic', 'dropout')}>{k.get('threshold', 1.5)} w{k.get('warmup', 1)}"


MEDIAN_WARMUPS = (0, 2, 3, 4, 5, 6)
GUARD_THRESHOLDS = (1.2, 1.3, 1.5, 2.0)  # with a curve pruner
GUARD_ALONE_THRESHOLDS = (1.1, 1.2, 1.3, 1.5, 2.0)


def pruner_configs() -> list[PrunerConfig]:
    """Every configuration replayed. Median always waits for 5 startup trials."""
    out = [PrunerConfig("none", "none")]
    for w in MEDIAN_WARMUPS:
        out.append(PrunerConfig(f"median w{w}", "median", {"curve_warmup": w, "n_startup_trials": 5}))
    for r in (1, 2):
        out.append(PrunerConfig(f"hyperband r{r}", "hyperband", {"curve_warmup": r}))
    guard_alone = [(t, 1) for t in GUARD_ALONE_THRESHOLDS] + [(1.3, 0), (1.5, 0)]
    for t, w in guard_alone:
        out.append(
            PrunerConfig(
                f"guard dropout>{t} w{w}", "varshift", {"threshold": t, "warmup": w, "statistic": "dropout"}
            )
        )
    for w in (0, 1, 3):
        out.append(
            PrunerConfig(
                f"guard paper>1.5 w{w}", "varshift", {"threshold": 1.5, "warmup": w, "statistic": "paper"}
            )
        )
    for t in GUARD_THRESHOLDS:
        for w in MEDIAN_WARMUPS:
            out.append(
                PrunerConfig(
                    f"guard dropout>{t} w1 + median w{w}",
                    "varshift+median",
                    {
                        "threshold": t,
                        "warmup": 1,
                        "statistic": "dropout",
                        "curve_warmup": w,
                        "n_startup_trials": 5,
                    },
                )
            )
    for r in (1, 2):
        out.append(
            PrunerConfig(
                f"guard dropout>1.5 w1 + hyperband r{r}",
                "varshift+hyperband",
                {"threshold": 1.5, "warmup": 1, "statistic": "dropout", "curve_warmup": r},
            )
        )
    return out


def usable(cache: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Trained candidates with index < n, in index order (failed ones are left out)."""
    cands = [c for c in cache["candidates"].values() if c["index"] < n and not c.get("failed")]
    return sorted(cands, key=lambda c: c["index"])


def replay_study(
    cands: list[dict[str, Any]], order: Iterable[int], config: PrunerConfig, epochs: int, name: str
) -> dict[str, Any]:
    """One study: candidates in ``order``, pruned as the trainer's per-epoch callback would."""
    import optuna

    from search.pruners import VarianceShiftPruner, make_pruner

    pruner = make_pruner(config.spec, max_epochs=epochs, **config.kwargs)
    study = optuna.create_study(
        study_name=name,  # Hyperband's bracket of a trial follows from the study name: fixed
        direction="maximize",
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    used: dict[int, int] = {}
    pruned_set: set[int] = set()
    by_shift: set[int] = set()
    for idx in order:
        c = cands[idx]
        trial = study.ask()
        best = -math.inf
        pruned = False
        for e in range(epochs):
            trial.set_user_attr("variance_shift_by_epoch", c["variance_shift"][: e + 1])
            trial.set_user_attr("dropout_shift_by_epoch", c["dropout_shift"][: e + 1])
            trial.report(c["val_acc"][e], e)
            best = max(best, c["val_acc"][e])
            if trial.should_prune():
                if isinstance(pruner, VarianceShiftPruner) and pruner.check_shift(trial._get_latest_trial()):
                    by_shift.add(idx)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                pruned_set.add(idx)
                pruned = True
                break
        used[idx] = e + 1
        if not pruned:
            study.tell(trial, best)
    return {"used": used, "pruned": sorted(pruned_set), "by_shift": sorted(by_shift)}


def _replay_job(job: tuple[str, list[dict[str, Any]], PrunerConfig, list[list[int]], int]) -> dict[str, Any]:
    setting, cands, config, orders, epochs = job
    studies = [
        replay_study(cands, order, config, epochs, f"replay-{setting}-{r}") for r, order in enumerate(orders)
    ]
    return {"setting": setting, "config": config.name, "studies": studies}


def score(cands: list[dict[str, Any]], studies: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Fraction of epochs, P(best), regret and top-5 killed over the orders of one configuration."""
    best_acc = [max(c["val_acc"][:epochs]) for c in cands]
    top = max(best_acc)
    ranking = rank(cands, epochs)
    winner = ranking[0]
    top5 = set(ranking[:5])
    fractions, kept, reached, regrets, killed5, n_pruned, n_shift = [], [], [], [], [], [], []
    for s in studies:
        used = s["used"]
        done = set(used) - set(s["pruned"])  # completed trials (one pruned at the last epoch is not)
        fractions.append(sum(used.values()) / (len(cands) * epochs))
        kept.append(winner in done)
        regrets.append(top - max((best_acc[i] for i in done), default=0.0))
        reached.append(regrets[-1] <= 1e-9)
        killed5.append(len(top5 - done))
        n_pruned.append(len(cands) - len(done))
        n_shift.append(len(s["by_shift"]))
    return {
        "fraction": statistics.mean(fractions),
        "fraction_std": statistics.pstdev(fractions),
        "p_best": statistics.mean(reached),  # the no-pruning best accuracy is still found
        "p_winner": statistics.mean(kept),  # the tie-broken winner itself completes
        "regret": statistics.mean(regrets),
        "regret_max": max(regrets),
        "top5_killed": statistics.mean(killed5),
        "pruned": statistics.mean(n_pruned),
        "pruned_by_shift": statistics.mean(n_shift),
    }


def order_list(n: int, orders: int, seed: int) -> list[list[int]]:
    """The same R random orders for every configuration of a setting: a paired comparison."""
    return [np.random.default_rng([seed, r]).permutation(n).tolist() for r in range(orders)]


def replay(settings: list[str], args: argparse.Namespace) -> None:
    configs = pruner_configs()
    info: dict[str, dict[str, Any]] = {}
    cands_of: dict[str, list[dict[str, Any]]] = {}
    jobs = []
    for s in settings:
        cache = load_cache(s, args.epochs, args.seed)
        cands = usable(cache, args.candidates)
        failed = [c for c in cache["candidates"].values() if c["index"] < args.candidates and c.get("failed")]
        if len(cands) < 10:
            print(f"{s}: only {len(cands)} trained candidates cached; run --phase collect first. Skipped.")
            continue
        cands_of[s] = cands
        info[s] = describe_setting(s, cands, failed, args.epochs)
        orders = order_list(len(cands), args.orders, args.seed)
        jobs += [(s, cands, c, orders, args.epochs) for c in configs]
    if not jobs:
        return
    print(
        f"replaying {len(configs)} configurations x {len(cands_of)} settings x {args.orders} orders",
        flush=True,
    )
    start = time.perf_counter()
    metrics: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in cands_of}
    with mp.get_context("spawn").Pool(args.workers, initializer=quiet) as pool:
        for n, out in enumerate(pool.imap_unordered(_replay_job, jobs, chunksize=1), 1):
            s = out["setting"]
            metrics[s][out["config"]] = score(cands_of[s], out["studies"], args.epochs)
            if n % 20 == 0 or n == len(jobs):
                print(f"  {n}/{len(jobs)} ({time.perf_counter() - start:.0f}s)", flush=True)
    metrics = {s: {c.name: metrics[s][c.name] for c in configs} for s in metrics}  # config order
    render(args, info, metrics, cands_of)


def rerender(args: argparse.Namespace) -> None:
    """Rewrite the report and plots from the saved JSON and the cache, without replaying."""
    saved = json.loads((args.out / "pruning_replay.json").read_text())
    for key in ("settings", "candidates", "orders", "epochs", "seed"):
        setattr(args, key, saved["args"][key])
    cands_of = {s: usable(load_cache(s, args.epochs, args.seed), args.candidates) for s in saved["settings"]}
    render(args, saved["settings"], saved["metrics"], cands_of)


def render(
    args: argparse.Namespace,
    info: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, dict[str, Any]]],
    cands_of: dict[str, list[dict[str, Any]]],
) -> None:
    configs = pruner_configs()
    by_name = {c.name: c for c in configs}
    correlations = {s: correlate(cands_of[s]) for s in cands_of}
    summary = summarise(metrics, configs)
    verdicts = judge(metrics, summary, by_name)
    verdicts["guard_headroom"] = headroom(cands_of, verdicts, by_name, args.epochs)
    write_report(args, info, metrics, summary, correlations, verdicts, configs)
    plot_tradeoff(args.out / "pruning_replay_tradeoff.png", metrics, configs, verdicts["recommended"]["name"])
    plot_shift(
        args.out / "shift_vs_accuracy.png", cands_of, correlations, verdicts["guard_headroom"]["threshold"]
    )


def rank(cands: list[dict[str, Any]], epochs: int) -> list[int]:
    """Candidates best first: best-epoch accuracy, ties broken by the mean of the last 5 epochs.

    Ties at the top are real (accuracy moves in steps of 1/n_val: 3 candidates share 357/360 on
    the digits MLP placement space). P(best) asks whether the best accuracy is still found, by
    any of them; P(winner), whether this ranking's first candidate itself survives.
    """
    key = [(max(c["val_acc"][:epochs]), statistics.mean(c["val_acc"][:epochs][-5:])) for c in cands]
    return sorted(range(len(cands)), key=lambda i: key[i], reverse=True)


def describe_setting(
    setting: str, cands: list[dict[str, Any]], failed: list[dict[str, Any]], epochs: int
) -> dict[str, Any]:
    best = [max(c["val_acc"][:epochs]) for c in cands]
    top = max(best)
    winner = cands[rank(cands, epochs)[0]]
    return {
        "dataset": SETTINGS[setting][0],
        "family": SETTINGS[setting][1],
        "n": len(cands),
        "failed": [{"index": c["index"], "error": c["failed"]} for c in failed],
        "best_acc": top,
        "median_acc": float(np.median(best)),
        "tied_best": sum(a >= top - 1e-9 for a in best),
        "winner": {
            "index": winner["index"],
            "architecture": winner["architecture"],
            "lr": winner["params"].get("lr"),
            "best_epoch": int(np.argmax(winner["val_acc"][:epochs])),
            "acc_epoch": [round(a, 4) for a in winner["val_acc"][:epochs]],
            "dropout_shift_epoch1": winner["dropout_shift"][1] if epochs > 1 else None,
            "paper_shift_epoch1": winner["variance_shift"][1] if epochs > 1 else None,
        },
        "train_seconds": round(sum(c.get("seconds", 0.0) for c in cands), 1),
    }


def correlate(cands: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman's rho of early shifts with the final (best-epoch) accuracy, BN+dropout candidates."""
    from scipy.stats import spearmanr

    sub = [c for c in cands if c["has_bn"] and c["has_dropout"]]
    acc = [max(c["val_acc"]) for c in sub]
    out: dict[str, Any] = {"n": len(sub)}
    for key, attr in (("dropout", "dropout_shift"), ("paper", "variance_shift")):
        for e in (0, 1):
            x = [c[attr][e] for c in sub]
            if len(sub) < 3 or len(set(x)) < 2:
                out[f"{key}_e{e}"] = {"rho": math.nan, "p": math.nan}
                continue
            res = spearmanr(x, acc)
            out[f"{key}_e{e}"] = {"rho": float(res.statistic), "p": float(res.pvalue)}
    # The same at epoch 1 over narrower and wider sets: only where dropout can shift a BN, and all.
    for name, group in (
        ("dropout_e1_feeds_bn", [c for c in sub if c["dropout_feeds_bn"]]),
        ("dropout_e1_all", cands),
    ):
        x = [c["dropout_shift"][1] for c in group]
        y = [max(c["val_acc"]) for c in group]
        if len(group) < 3 or len(set(x)) < 2:
            out[name] = {"rho": math.nan, "p": math.nan, "n": len(group)}
        else:
            res = spearmanr(x, y)
            out[name] = {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(group)}
    # Mean final accuracy by arrangement, among candidates with both BN and dropout.
    for name, pick in (
        ("dropout_before_bn", lambda c: c["dropout_before_bn"]),
        ("dropout_feeds_bn_other", lambda c: c["dropout_feeds_bn"] and not c["dropout_before_bn"]),
        ("shift_free", lambda c: not c["dropout_feeds_bn"]),
    ):
        accs = [max(c["val_acc"]) for c in sub if pick(c)]
        out[f"acc_{name}"] = {"n": len(accs), "mean": statistics.mean(accs) if accs else math.nan}
    return out


def summarise(
    metrics: dict[str, dict[str, dict[str, Any]]], configs: list[PrunerConfig]
) -> dict[str, dict[str, Any]]:
    out = {}
    for c in configs:
        rows = [metrics[s][c.name] for s in metrics]
        out[c.name] = {
            "p_best_min": min(r["p_best"] for r in rows),
            "p_best_mean": statistics.mean(r["p_best"] for r in rows),
            "fraction_mean": statistics.mean(r["fraction"] for r in rows),
            "fraction_max": max(r["fraction"] for r in rows),
            "regret_mean": statistics.mean(r["regret"] for r in rows),
            "regret_max": max(r["regret_max"] for r in rows),
            "top5_killed_mean": statistics.mean(r["top5_killed"] for r in rows),
        }
        out[c.name]["meets_default_goal"] = (
            out[c.name]["p_best_min"] >= GOAL_P_BEST and out[c.name]["fraction_max"] <= GOAL_FRACTION
        )
    return out


def judge(
    metrics: dict[str, dict[str, dict[str, Any]]],
    summary: dict[str, dict[str, Any]],
    by_name: dict[str, PrunerConfig],
) -> dict[str, Any]:
    """Pick the default by the issue's goals and check the guard's two goals."""
    eligible = [n for n, r in summary.items() if r["meets_default_goal"]]
    key = lambda n: (summary[n]["fraction_mean"], -summary[n]["p_best_mean"], summary[n]["regret_mean"])  # noqa: E731
    if eligible:
        chosen, how = min(eligible, key=key), "meets the goal"
    else:
        safe = [n for n, r in summary.items() if r["p_best_min"] >= GOAL_P_BEST and n != "none"]
        if safe:
            chosen, how = (
                min(safe, key=key),
                "no configuration meets both; fewest epochs with P(best) >= 0.95",
            )
        else:
            chosen = max(summary, key=lambda n: (summary[n]["p_best_min"], -summary[n]["fraction_mean"]))
            how = "no configuration keeps P(best) >= 0.95 everywhere; highest worst-case P(best)"
    rec = by_name[chosen]
    settings = list(metrics)

    # Goal 2: the guard never lowers P(best) and saves epochs against the same curve pruner alone.
    pairs = []
    for c in by_name.values():
        if not (c.guarded and c.curve):
            continue
        alone = next(a for a in by_name.values() if not a.guarded and a.curve == c.curve)
        rows = []
        for s in settings:
            g, a = metrics[s][c.name], metrics[s][alone.name]
            rows.append(
                {
                    "setting": s,
                    "p_best_guard": g["p_best"],
                    "p_best_alone": a["p_best"],
                    "fraction_guard": g["fraction"],
                    "fraction_alone": a["fraction"],
                    "saved_points": (a["fraction"] - g["fraction"]) * 100,
                }
            )
        pairs.append(
            {
                "guarded": c.name,
                "alone": alone.name,
                "never_lowers_p_best": all(r["p_best_guard"] >= r["p_best_alone"] for r in rows),
                "saves_everywhere": all(r["saved_points"] > 0 for r in rows),
                "saved_points_mean": statistics.mean(r["saved_points"] for r in rows),
                "saved_points_min": min(r["saved_points"] for r in rows),
                "per_setting": rows,
            }
        )
    for p in pairs:
        p["met"] = p["never_lowers_p_best"] and p["saves_everywhere"]

    # Goal 3: the guard alone saves >= 10% of the epochs with P(best) = 1 in every setting.
    alone_rows = []
    for c in by_name.values():
        if c.spec != "varshift":
            continue
        rows = [metrics[s][c.name] for s in settings]
        alone_rows.append(
            {
                "config": c.name,
                "saving_min": min(1 - r["fraction"] for r in rows),
                "saving_mean": statistics.mean(1 - r["fraction"] for r in rows),
                "p_best_min": min(r["p_best"] for r in rows),
                "met": all(1 - r["fraction"] >= GOAL_GUARD_SAVING and r["p_best"] >= 1.0 for r in rows),
                "per_setting": {
                    s: {"saving": 1 - metrics[s][c.name]["fraction"], "p_best": metrics[s][c.name]["p_best"]}
                    for s in settings
                },
            }
        )
    guard_params = rec.kwargs if rec.guarded else {"threshold": 1.5, "warmup": 1, "statistic": "dropout"}
    guard_alone_name = f"guard {guard_params.get('statistic', 'dropout')}>{guard_params.get('threshold', 1.5)} w{guard_params.get('warmup', 1)}"
    # The cautious alternative: fewest epochs among those that never lost the winner anywhere.
    perfect = [n for n, r in summary.items() if r["p_best_min"] >= 1.0 and r["fraction_max"] <= GOAL_FRACTION]
    safest = min(perfect, key=key) if perfect else None
    return {
        "safest": {"name": safest, **summary[safest]} if safest else None,
        "recommended": {
            "name": chosen,
            "how": how,
            "pruner": rec.spec,
            "make_pruner_kwargs": rec.kwargs,
            **summary[chosen],
        },
        "eligible": sorted(eligible, key=key),
        "default_goal_met": bool(eligible),
        "guard_vs_curve": pairs,
        "default_pair": next((p for p in pairs if p["guarded"] == chosen), None),
        "guard_alone": alone_rows,
        "default_guard_alone": next((r for r in alone_rows if r["config"] == guard_alone_name), None),
    }


def headroom(
    cands_of: dict[str, list[dict[str, Any]]],
    verdicts: dict[str, Any],
    by_name: dict[str, PrunerConfig],
    epochs: int,
) -> dict[str, Any]:
    """How much a guard with the default's threshold could ever save: candidates above it after warm-up."""
    rec = by_name[verdicts["recommended"]["name"]]
    kw = rec.kwargs if rec.guarded else {"threshold": 1.5, "warmup": 1, "statistic": "dropout"}
    t, w = kw.get("threshold", 1.5), kw.get("warmup", 1)
    attr = "dropout_shift" if kw.get("statistic", "dropout") == "dropout" else "variance_shift"
    out = {"threshold": t, "warmup": w, "statistic": kw.get("statistic", "dropout"), "per_setting": {}}
    for s, cands in cands_of.items():
        above = [c for c in cands if c[attr][w] > t]
        out["per_setting"][s] = {
            "n": len(cands),
            "above_at_warmup": len(above),
            "max_saving": sum(epochs - (w + 1) for _ in above) / (len(cands) * epochs),
            "dropout_feeds_bn": sum(c["dropout_feeds_bn"] for c in cands),
            "dropout_before_bn": sum(c["dropout_before_bn"] for c in cands),
        }
    return out


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.1e}" if x < 1e-3 else f"{x:.3f}"


def write_report(
    args: argparse.Namespace,
    info: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, dict[str, Any]]],
    summary: dict[str, dict[str, Any]],
    correlations: dict[str, dict[str, Any]],
    verdicts: dict[str, Any],
    configs: list[PrunerConfig],
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    settings = list(metrics)
    rec = verdicts["recommended"]
    L = [
        "# Pruning replay: what each pruner configuration saves and what it kills",
        "",
        "Settings: " + ", ".join(f"{s} ({info[s]['n']} candidates)" for s in settings) + "; "
        f"{args.epochs} epochs each, trained once (`RandomSampler(seed={args.seed})` over the family's "
        "default space, or for `-placement` settings the placement space "
        f"(`{' '.join(f'--{k} {v}' for k, v in PLACEMENT_OPTIONS.items())}`: BN and dropout in every "
        "block; trial seed = candidate index). "
        "Every configuration is built by "
        f"`search.pruners.make_pruner` and replayed through a fresh Optuna study (ask, set "
        f"`variance_shift_by_epoch`/`dropout_shift_by_epoch`, report, should_prune, tell) over the same "
        f"{args.orders} random candidate orders per setting.",
        "",
        "- **fraction**: epochs trained / epochs without pruning. **P(best)**: share of orders in which the "
        "no-pruning best accuracy is still reached by a completed candidate (zero regret). **P(winner)** "
        "(per-setting tables): share of orders in which the no-pruning best candidate itself completes "
        "(highest best-epoch accuracy, a tie broken by the higher mean accuracy of the last 5 epochs); it "
        "differs from P(best) only where candidates tie at the top. "
        "**regret**: no-pruning best accuracy minus the best accuracy among completed trials (mean over orders). "
        "**top-5 killed**: mean number of the 5 best candidates pruned.",
        "- Labels: `median wK` = MedianPruner(n_startup_trials=5, n_warmup_steps=K); `hyperband rK` = "
        "HyperbandPruner(min_resource=K, max_resource=20, reduction_factor=3); `guard S>T wK` = "
        "VarianceShiftPruner on statistic S (`dropout`: dropout-induced, `paper`: Li et al.) with threshold T "
        "and warm-up K epochs; `guard ... + X` wraps X.",
        "",
        "## Recommended default",
        "",
        f"**`{rec['name']}`** ({rec['how']}): `--pruner {rec['pruner']}` with "
        + ", ".join(f"`{k}={v}`" for k, v in rec["make_pruner_kwargs"].items())
        + f". Worst-case P(best) {rec['p_best_min']:.2f}, fraction of epochs mean {rec['fraction_mean']:.3f} "
        f"/ max {rec['fraction_max']:.3f}, mean regret {rec['regret_mean'] * 100:.2f} points.",
        "",
        (
            f"Cautious alternative (fewest epochs with P(best) = 1.00 in every setting): `{verdicts['safest']['name']}`, "
            f"fraction mean {verdicts['safest']['fraction_mean']:.3f} / max {verdicts['safest']['fraction_max']:.3f}, "
            f"mean top-5 killed {verdicts['safest']['top5_killed_mean']:.2f} (recommended: {rec['top5_killed_mean']:.2f})."
            if verdicts["safest"]
            else "No configuration keeps P(best) = 1.00 in every setting within half the epochs."
        ),
        "",
        "Configurations that meet the default goal (P(best) >= 0.95 in every setting and fraction <= 0.5 in "
        "every setting), fewest epochs first: "
        + (", ".join(f"`{n}` ({summary[n]['fraction_mean']:.3f})" for n in verdicts["eligible"]) or "none")
        + ".",
        "",
        "## Summary over settings",
        "",
        "| configuration | worst P(best) | mean P(best) | mean fraction | max fraction | mean regret (pts) | max regret (pts) | mean top-5 killed | meets default goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        r = summary[c.name]
        name = f"**{c.name}**" if c.name == rec["name"] else c.name
        L.append(
            f"| {name} | {r['p_best_min']:.2f} | {r['p_best_mean']:.2f} | {r['fraction_mean']:.3f} | "
            f"{r['fraction_max']:.3f} | {r['regret_mean'] * 100:.2f} | {r['regret_max'] * 100:.2f} | "
            f"{r['top5_killed_mean']:.2f} | {'yes' if r['meets_default_goal'] else ''} |"
        )
    L += ["", "## Goals", ""]
    L += goal_lines(verdicts, settings, info)
    L += ["", "## Correlation of early shift with final accuracy", ""]
    L += [
        "Spearman's rho (p-value) over candidates with both BN and dropout (dropout anywhere, the head included); "
        "final accuracy = best-epoch validation accuracy. Epoch index 0 is the first validation epoch.",
        "",
        "| setting | n | dropout shift e1 | dropout shift e0 | paper shift e1 | paper shift e0 | dropout shift e1, only dropout before the last BN | dropout shift e1, all candidates |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(c: dict[str, Any], k: str) -> str:
        return f"{_f(c[k]['rho'])} ({_p(c[k]['p'])})"

    def acc(c: dict[str, Any], k: str) -> str:
        return f"{_f(c[k]['mean'], 3)} (n={c[k]['n']})"

    for s in settings:
        c = correlations[s]
        L.append(
            f"| {s} | {c['n']} | {cell(c, 'dropout_e1')} | {cell(c, 'dropout_e0')} | {cell(c, 'paper_e1')} | "
            f"{cell(c, 'paper_e0')} | {cell(c, 'dropout_e1_feeds_bn')}, n={c['dropout_e1_feeds_bn']['n']} | "
            f"{cell(c, 'dropout_e1_all')}, n={c['dropout_e1_all']['n']} |"
        )
    L += [
        "",
        "Mean final accuracy of the BN+dropout candidates by arrangement:",
        "",
        "| setting | dropout->BN inside a block | other dropout before the last BN | dropout only after the last BN (shift-free) |",
        "|---|---|---|---|",
    ]
    for s in settings:
        c = correlations[s]
        L.append(
            f"| {s} | {acc(c, 'acc_dropout_before_bn')} | {acc(c, 'acc_dropout_feeds_bn_other')} | "
            f"{acc(c, 'acc_shift_free')} |"
        )
    L += ["", "## Per setting", ""]
    for s in settings:
        i = info[s]
        w = i["winner"]
        L += [
            f"### {s}: {i['dataset']}, {i['family']}, {i['n']} candidates",
            "",
            f"No-pruning best {i['best_acc']:.4f} (median candidate {i['median_acc']:.4f}; {i['tied_best']} tied at "
            f"the top): #{w['index']} `{w['architecture']}`, lr {_f(w['lr'] or math.nan, 5)}, best at epoch "
            f"{w['best_epoch']}, epoch-1 dropout shift {_f(w['dropout_shift_epoch1'])}, paper shift "
            f"{_f(w['paper_shift_epoch1'])}. Failed candidates: {len(i['failed'])}.",
            "",
            "| configuration | fraction | P(best) | P(winner) | mean regret (pts) | max regret (pts) | top-5 killed "
            "| pruned | pruned by shift |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in configs:
            r = metrics[s][c.name]
            L.append(
                f"| {c.name} | {r['fraction']:.3f} | {r['p_best']:.2f} | {r.get('p_winner', math.nan):.2f} "
                f"| {r['regret'] * 100:.2f} | "
                f"{r['regret_max'] * 100:.2f} | {r['top5_killed']:.2f} | {r['pruned']:.1f} | {r['pruned_by_shift']:.1f} |"
            )
        L.append("")
    L += [
        "## Reproduce",
        "",
        "```",
        f"python benchmarks/pruning_replay.py --settings {','.join(settings)} --candidates {args.candidates} "
        f"--orders {args.orders} --epochs {args.epochs} --phase all",
        "```",
        "",
        "Plots: `pruning_replay_tradeoff.png`, `shift_vs_accuracy.png`.",
    ]
    text = "\n".join(L) + "\n"
    (args.out / "pruning_replay.md").write_text(text)
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "configs": [{"name": c.name, "pruner": c.spec, "make_pruner_kwargs": c.kwargs} for c in configs],
        "settings": info,
        "metrics": metrics,
        "summary": summary,
        "correlations": correlations,
        "verdicts": verdicts,
    }
    (args.out / "pruning_replay.json").write_text(json.dumps(json_safe(payload), indent=1))
    print(text)


def json_safe(x: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def goal_lines(verdicts: dict[str, Any], settings: list[str], info: dict[str, Any]) -> list[str]:
    rec = verdicts["recommended"]
    yes = lambda b: "**met**" if b else "**not met**"  # noqa: E731
    L = [
        f"1. *The default keeps the no-pruning best in >= 95% of orders in every setting, at <= 0.5 of the "
        f"no-pruning epochs*: {yes(verdicts['default_goal_met'])}. `{rec['name']}`: worst-case P(best) "
        f"{rec['p_best_min']:.2f}, fraction of epochs max {rec['fraction_max']:.3f} (mean {rec['fraction_mean']:.3f}).",
    ]
    pair = verdicts["default_pair"]
    if pair is not None:
        per = "; ".join(
            f"{r['setting']} P(best) {r['p_best_guard']:.2f} vs {r['p_best_alone']:.2f}, "
            f"fraction {r['fraction_guard']:.3f} vs {r['fraction_alone']:.3f}"
            for r in pair["per_setting"]
        )
        L.append(
            f"2. *Adding the shift guard never lowers P(best) and saves epochs compared with the same curve pruner "
            f"alone* (default: `{pair['guarded']}` vs `{pair['alone']}`): {yes(pair['met'])}. Never lowers "
            f"P(best): {'yes' if pair['never_lowers_p_best'] else 'no'}; saves epochs in every setting: "
            f"{'yes' if pair['saves_everywhere'] else 'no'} (mean {pair['saved_points_mean']:.2f}, min "
            f"{pair['saved_points_min']:.2f} points of the no-pruning epochs). Per setting (guarded vs alone): {per}."
        )
    else:
        L.append(
            "2. *Adding the shift guard never lowers P(best) and saves epochs*: the default has no guard; see the table below."
        )
    L += [
        "",
        "   Every guarded curve pruner against the same curve pruner alone:",
        "",
        "   | guarded | alone | never lowers P(best) | saves epochs in every setting | mean saving (pts) | min saving (pts) | met |",
        "   |---|---|---|---|---|---|---|",
    ]
    for p in verdicts["guard_vs_curve"]:
        L.append(
            f"   | {p['guarded']} | {p['alone']} | {'yes' if p['never_lowers_p_best'] else 'no'} | "
            f"{'yes' if p['saves_everywhere'] else 'no'} | {p['saved_points_mean']:.2f} | {p['saved_points_min']:.2f} | "
            f"{'yes' if p['met'] else 'no'} |"
        )
    g = verdicts["default_guard_alone"]
    if g is not None:
        per = ", ".join(
            f"{s} {v['saving'] * 100:.1f}% / {v['p_best']:.2f}" for s, v in g["per_setting"].items()
        )
        L += [
            "",
            f"3. *The guard alone saves >= 10% with P(best) = 1* (the default's guard, `{g['config']}`): "
            f"{yes(g['met'])}. Saving min {g['saving_min'] * 100:.1f}% / mean {g['saving_mean'] * 100:.1f}%, "
            f"worst P(best) {g['p_best_min']:.2f}. Per setting (saving / P(best)): {per}.",
        ]
    L += [
        "",
        "   | guard alone | min saving | mean saving | worst P(best) | met |",
        "   |---|---|---|---|---|",
    ]
    for r in verdicts["guard_alone"]:
        L.append(
            f"   | {r['config']} | {r['saving_min'] * 100:.1f}% | {r['saving_mean'] * 100:.1f}% | "
            f"{r['p_best_min']:.2f} | {'yes' if r['met'] else 'no'} |"
        )
    h = verdicts.get("guard_headroom")
    if g is not None and not g["met"] and h:
        per = ", ".join(
            f"{s} {v['above_at_warmup']}/{v['n']} ({v['max_saving'] * 100:.1f}%)"
            for s, v in h["per_setting"].items()
        )
        L += [
            "",
            f"   Why goal 3 fails, and what next: a guard can only save the epochs of candidates whose shift is above "
            f"its threshold once its warm-up is over. Candidates with {h['statistic']} shift > {h['threshold']} at "
            f"epoch {h['warmup']}, and the share of epochs that pruning exactly them at that epoch saves "
            f"(candidates that cross the threshold later add a little): {per}. "
            + _space_contrast(g, info, h["threshold"])
            + " Next: (1) a per-study relative rule (prune when the shift is in the worst quantile of the trials "
            "so far, or when it exceeds what the formula 1/(1-q) predicts for the candidate's rate) instead of a "
            "fixed threshold; (2) a warm-up of 0 on the dropout statistic, which has no BN lag (see `guard "
            "dropout>1.5 w0`); (3) count on the guard mainly for what it teaches the sampler (see "
            "`live_guard.md`), not for the epochs it saves directly.",
        ]
    return L


def _space_contrast(g: dict[str, Any], info: dict[str, Any], threshold: float) -> str:
    """The guard alone in the family spaces against the placement space, and why a lower
    threshold is not the answer (placement-space winners that shift)."""
    per = g["per_setting"]
    fam = [v["saving"] for s, v in per.items() if not s.endswith("-placement")]
    plc = [v["saving"] for s, v in per.items() if s.endswith("-placement")]
    if not (fam and plc):
        return ""
    shifted = [
        f"{s} {info[s]['winner']['dropout_shift_epoch1']:.2f}"
        for s in per
        if 1.2 < info[s]["winner"]["dropout_shift_epoch1"] <= threshold
    ]
    return (
        f"In the family spaces most candidates put dropout after the last BN, in the head, or have no BN "
        f"at all (shift exactly 1): the guard alone saves {statistics.mean(fam) * 100:.1f}% there on average. "
        f"In the placement space, where every block has BN and dropout and placement is the choice, it saves "
        f"{statistics.mean(plc) * 100:.1f}% on average ({min(plc) * 100:.1f}-{max(plc) * 100:.1f}%) without "
        f"losing the best. A lower threshold saves more but kills winners that shift less than "
        f"{threshold}: epoch-1 dropout shift of the no-pruning winner {', '.join(shifted) or '(none)'}."
    )


FAMILY_STYLE = {  # colour and marker per kind of configuration
    "none": ("black", "X"),
    "median": ("tab:blue", "o"),
    "hyperband": ("tab:orange", "s"),
    "varshift": ("tab:green", "^"),
    "varshift+median": ("tab:purple", "D"),
    "varshift+hyperband": ("tab:red", "v"),
}


def plot_tradeoff(
    path: Path, metrics: dict[str, dict[str, dict[str, Any]]], configs: list[PrunerConfig], recommended: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(metrics)
    cols = 3 if len(settings) > 2 else len(settings)
    rows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols + 4.5, 6.0 * rows), squeeze=False)
    for ax, s in zip(axes.flat, settings, strict=False):
        at: dict[tuple[float, float], list[str]] = {}  # configurations landing on one spot share a label
        for k, c in enumerate(configs, 1):
            r = metrics[s][c.name]
            colour, marker = FAMILY_STYLE[c.spec]
            star = c.name == recommended
            ax.scatter(
                r["fraction"],
                r["p_best"],
                c=colour,
                marker="*" if star else marker,
                s=220 if star else 45,
                edgecolors="black" if star else "none",
                zorder=4 if star else 3,
                alpha=0.85,
            )
            at.setdefault((round(r["fraction"], 2), round(r["p_best"], 2)), []).append(str(k))
        for (x, y), ks in at.items():
            ax.annotate(
                ",".join(ks), (x, y), fontsize=6.5, xytext=(3, 4), textcoords="offset points", rotation=35
            )
        ax.axvline(GOAL_FRACTION, color="grey", ls="--", lw=0.8)
        ax.axhline(GOAL_P_BEST, color="grey", ls="--", lw=0.8)
        ax.set_xlim(0, 1.05)
        ax.set_ylim(-0.05, 1.08)
        ax.set_title(s)
        ax.set_xlabel("fraction of no-pruning epochs")
        ax.set_ylabel("P(best): no-pruning best completes")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    legend = "\n".join(f"{k:>2}  {c.name}" for k, c in enumerate(configs, 1))
    fig.text(
        0.81,
        0.42,
        legend + "\n\n* = recommended (big star)\ndashed: goals 0.5 / 0.95",
        fontsize=8,
        family="monospace",
        va="center",
    )
    handles = [
        plt.Line2D([], [], color=col, marker=m, ls="", label=k) for k, (col, m) in FAMILY_STYLE.items()
    ]
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.95), fontsize=8, frameon=True)
    fig.suptitle(
        "Pruner trade-off: epochs trained vs keeping the no-pruning winner (replayed through Optuna)"
    )
    fig.tight_layout(rect=(0, 0, 0.8, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_shift(
    path: Path,
    cands_of: dict[str, list[dict[str, Any]]],
    correlations: dict[str, dict[str, Any]],
    threshold: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    settings = list(cands_of)
    cols = 3 if len(settings) > 2 else len(settings)
    rows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.4 * rows), squeeze=False)
    kinds = (
        ("dropout->BN inside a block", "tab:red", lambda c: c["dropout_before_bn"]),
        (
            "other dropout before the last BN",
            "tab:orange",
            lambda c: c["dropout_feeds_bn"] and not c["dropout_before_bn"],
        ),
        (
            "BN + dropout, shift-free",
            "tab:blue",
            lambda c: c["has_bn"] and c["has_dropout"] and not c["dropout_feeds_bn"],
        ),
        ("no BN or no dropout", "lightgrey", lambda c: not (c["has_bn"] and c["has_dropout"])),
    )
    for ax, s in zip(axes.flat, settings, strict=False):
        for label, colour, pick in kinds:
            sub = [c for c in cands_of[s] if pick(c)]
            ax.scatter(
                [max(c["dropout_shift"][1], 1.0) for c in sub],
                [max(c["val_acc"]) for c in sub],
                c=colour,
                s=22,
                label=label,
                edgecolors="none",
                alpha=0.85,
            )
        ax.set_xscale("log")
        top = max(max(c["dropout_shift"][1], 1.0) for c in cands_of[s])
        ax.set_xticks([t for t in (1, 1.2, 1.5, 2, 3, 5, 10, 20, 50) if t <= top * 1.2])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axvline(threshold, color="grey", ls="--", lw=0.8)
        rho = correlations[s]["dropout_e1"]
        ax.set_title(f"{s}: rho={_f(rho['rho'])} (p={_p(rho['p'])}, n={correlations[s]['n']})", fontsize=10)
        ax.set_xlabel("dropout-induced shift at epoch 1 (log)")
        ax.set_ylabel("final (best-epoch) val accuracy")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"Epoch-1 dropout-induced shift vs final accuracy (rho over BN+dropout candidates; dashed: default threshold {threshold})"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=",".join(DEFAULT_SETTINGS), help="comma-separated, from: " + ", ".join(SETTINGS)
    )
    parser.add_argument(
        "--candidates", type=int, default=60, help="candidates per setting (>= 60 for the issue)"
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=50,
        help="random candidate orders per configuration (20 leaves P(best) of 0.95 resting on one order)",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--phase",
        choices=("collect", "replay", "all", "report"),
        default="all",
        help="report: rewrite the markdown and plots from the saved JSON, no replay",
    )
    parser.add_argument("--seed", type=int, default=0, help="RandomSampler seed and base of the order seeds")
    parser.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    quiet()
    if args.phase in ("collect", "all"):
        collect(settings, args.candidates, args.epochs, args.seed, args.workers)
    if args.phase in ("replay", "all"):
        replay(settings, args)
    if args.phase == "report":
        rerender(args)


if __name__ == "__main__":
    main()
