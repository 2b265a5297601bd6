"""Live TPE studies that check the replay's recommended pruner: with and without the shift guard.

For each setting and seed, two real studies run through the package's own code path
(``build_config`` -> ``prepare`` -> ``open_study`` -> ``run_trials``, SQLite storage): one with
the recommended default pruner (curve pruner + variance-shift guard), one with the same
curve pruner alone. Reported: completed / pruned trials, epochs trained, the best value, and
the share of trials TPE spends on high-shift arrangements (Dropout ahead of BN inside a
block) in the first and the second half of each study: does pruning on the shift teach the
sampler where Dropout must not go?

    python benchmarks/live_guard.py                      # reads the default from results/pruning_replay.json
    python benchmarks/live_guard.py --n-trials 40 --seeds 0,1,2 --settings digits-mlp,mnist1d-mlp
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pruning_replay import SETTINGS, json_safe, quiet, setting_options  # as in the replay

HERE = Path(__file__).parent
RESULTS = HERE / "results"
DROPOUT_NAMES = ("Dropout", "GaussianDropout", "Uout")  # Dropout1d/2d start with "Dropout" too


def high_shift_from_params(params: dict[str, Any]) -> bool | None:
    """Dropout ahead of BN inside some block, read from ``block.*`` / ``blockN.*`` params.

    None when the params say nothing about blocks (e.g. a foreign space)."""
    prefixes = {k.rsplit(".", 1)[0] for k in params if k.startswith("block") and "." in k}
    if not prefixes:
        return None
    for p in prefixes:
        bn = params.get(f"{p}.bn")
        dropout = params.get(f"{p}.dropout")
        order = params.get(f"{p}.order")
        if bn and dropout not in (None, "none") and isinstance(order, str):
            parts = order.split("-")
            if parts.index("drop") < parts.index("bn"):
                return True
    return False


def high_shift_from_architecture(architecture: str) -> bool:
    """The same from the ``architecture`` user attr, e.g. ``Linear(64)-Dropout(0.30)-BN-ReLU | ...``."""
    for block in architecture.split(" | "):
        tokens = block.split("-")
        drop = next((i for i, t in enumerate(tokens) if t.startswith(DROPOUT_NAMES)), None)
        bn = next((i for i, t in enumerate(tokens) if t == "BN"), None)
        if drop is not None and bn is not None and drop < bn:
            return True
    return False


def is_high_shift(trial: Any) -> bool:
    found = high_shift_from_params(trial.params)
    if found is None:
        found = high_shift_from_architecture(str(trial.user_attrs.get("architecture", "")))
    return found


# --------------------------------------------------------------------------- one study


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One live study through the package's own code path (runs in a worker process)."""
    quiet()
    import inspect

    from search import study as search_study
    from search.config import build_config

    dataset, family = SETTINGS[job["setting"]]
    config = build_config(
        cli_values={
            "study_name": job["study_name"],
            "storage": job["storage"],
            "n_trials": job["n_trials"],
            "dataset": dataset,
            "family": family,
            "max_epochs": job["epochs"],
            "sampler": "tpe",
            "seed": job["seed"],
            "accelerator": "cpu",
            "threads": 1,
            "workers": 1,
            "quiet": True,
            **setting_options(job["setting"]),
            **job["pruner"],
        }
    )
    data, pruner = search_study.prepare(config)
    study = search_study.open_study(config, pruner, data)
    search_study.set_threads(config)
    start = time.perf_counter()
    if "budget" in inspect.signature(search_study.run_trials).parameters:  # run_trials(..., budget, ...)
        search_study.run_trials(config, study, data, search_study.TrialBudget(config))
    else:
        search_study.run_trials(config, study, data)
    seconds = time.perf_counter() - start
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "epochs": len(t.intermediate_values),
            "pruned_by": t.user_attrs.get("pruned_by"),
            "architecture": t.user_attrs.get("architecture"),
            "high_shift": is_high_shift(t),
            "dropout_shift_by_epoch": t.user_attrs.get("dropout_shift_by_epoch"),
        }
        for t in trials
    ]
    return {**{k: v for k, v in job.items() if k != "storage"}, "seconds": round(seconds, 1), "trials": rows}


def summarise_study(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["trials"]
    half = len(rows) // 2
    first, second = rows[:half], rows[half:]
    values = [r["value"] for r in rows if r["state"] == "complete" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "pruned"]
    share = lambda rs: sum(r["high_shift"] for r in rs) / len(rs) if rs else math.nan  # noqa: E731
    return {
        "trials": len(rows),
        "completed": len(values),
        "pruned": len(pruned),
        "pruned_by_shift": sum(r["pruned_by"] == "variance_shift" for r in pruned),
        "failed": sum(r["state"] == "fail" for r in rows),
        "epochs": sum(r["epochs"] for r in rows),
        "epoch_fraction": sum(r["epochs"] for r in rows) / (len(rows) * result["epochs"])
        if rows
        else math.nan,
        "best": max(values) if values else math.nan,
        "high_shift_first_half": share(first),
        "high_shift_second_half": share(second),
        "high_shift_epoch_share": (
            sum(r["epochs"] for r in rows if r["high_shift"]) / max(1, sum(r["epochs"] for r in rows))
        ),
        "seconds": result["seconds"],
    }


# --------------------------------------------------------------------------- the pruners compared


def pruner_pair(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(guarded, alone) as ``RunConfig`` option values, from the replay's recommendation or flags."""
    rec: dict[str, Any] = {}
    source = "command-line flags"
    if args.pruner is None and args.replay.is_file():
        rec = json.loads(args.replay.read_text())["verdicts"]["recommended"]
        source = f"{os.path.relpath(args.replay)} (recommended: {rec['name']})"
    spec = args.pruner or rec.get("pruner") or "varshift+median"
    kw = dict(rec.get("make_pruner_kwargs") or {})
    for flag, key in (
        ("shift_threshold", "threshold"),
        ("shift_warmup", "warmup"),
        ("shift_statistic", "statistic"),
        ("curve_warmup", "curve_warmup"),
        ("n_startup_trials", "n_startup_trials"),
    ):
        if getattr(args, flag) is not None:
            kw[key] = getattr(args, flag)
    base = spec.rpartition("+")[2] if "+" in spec else spec
    if base in ("none", "varshift"):
        raise SystemExit(f"live_guard needs a curve pruner to compare against, but the default is {spec!r}")
    options = {
        "shift_threshold": float(kw.get("threshold", 1.5)),
        "shift_warmup": int(kw.get("warmup", 1)),
        "shift_statistic": str(kw.get("statistic", "dropout")),
        "curve_warmup": int(kw.get("curve_warmup", 1)),
        "n_startup_trials": int(kw.get("n_startup_trials", 5)),
    }
    guarded = {"pruner": f"varshift+{base}", **options}
    alone = {"pruner": base, **options}
    return guarded, alone, source


def label(p: dict[str, Any]) -> str:
    text = f"{p['pruner']} (curve warm-up {p['curve_warmup']}"
    if p["pruner"].startswith("varshift"):
        text += f", {p['shift_statistic']} shift > {p['shift_threshold']} after warm-up {p['shift_warmup']}"
    return text + ")"


# --------------------------------------------------------------------------- report


def _m(xs: list[float], digits: int = 2) -> str:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return "n/a"
    return f"{statistics.mean(xs):.{digits}f}"


def write(
    args: argparse.Namespace, results: list[dict[str, Any]], pair: dict[str, dict[str, Any]], source: str
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for r in results:
        r["summary"] = summarise_study(r)
    settings = [s for s in args.settings if any(r["setting"] == s for r in results)]
    L = [
        "# Live TPE studies: the recommended pruner with and without the variance-shift guard",
        "",
        f"Pruners from {source}.",
        f"- **guarded**: {label(pair['guarded'])}",
        f"- **alone**: {label(pair['alone'])}",
        "",
        f"Each study: `search run`'s code path (`build_config` -> `prepare` -> `open_study` -> `run_trials`), TPE "
        f"(multivariate, 10 startup trials), {args.n_trials} trials x {args.epochs} epochs, seeds "
        f"{', '.join(map(str, args.seeds))}, 1 torch thread per study, {args.workers} studies at a time, "
        "SQLite storage. *High-shift* trial: some block has Dropout ahead of its BN (from `block*.order`). "
        "Shares are of all trials in each half of the study (the first half includes TPE's 10 random startup trials).",
        "",
        "| setting | pruner | seed | completed | pruned (by shift) | epochs trained (fraction) | best value | high-shift share 1st half | 2nd half | high-shift share of epochs | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    means: dict[str, dict[str, Any]] = {}
    for s in settings:
        for variant in ("guarded", "alone"):
            rs = sorted(
                (r for r in results if r["setting"] == s and r["variant"] == variant), key=lambda r: r["seed"]
            )
            for r in rs:
                m = r["summary"]
                L.append(
                    f"| {s} | {variant} | {r['seed']} | {m['completed']} | {m['pruned']} ({m['pruned_by_shift']}) | "
                    f"{m['epochs']} ({m['epoch_fraction']:.2f}) | {m['best']:.4f} | {m['high_shift_first_half']:.2f} | "
                    f"{m['high_shift_second_half']:.2f} | {m['high_shift_epoch_share']:.2f} | {m['seconds'] / 60:.1f} |"
                )
            ms = [r["summary"] for r in rs]
            agg = (
                {k: statistics.mean(m[k] for m in ms) for k in ms[0] if isinstance(ms[0][k], (int, float))}
                if ms
                else {}
            )
            means[f"{s}/{variant}"] = agg
            if ms:
                L.append(
                    f"| **{s}** | **{variant}, mean** | | {_m([m['completed'] for m in ms], 1)} | "
                    f"{_m([m['pruned'] for m in ms], 1)} ({_m([m['pruned_by_shift'] for m in ms], 1)}) | "
                    f"{_m([m['epochs'] for m in ms], 0)} ({_m([m['epoch_fraction'] for m in ms])}) | "
                    f"{_m([m['best'] for m in ms], 4)} | {_m([m['high_shift_first_half'] for m in ms])} | "
                    f"{_m([m['high_shift_second_half'] for m in ms])} | {_m([m['high_shift_epoch_share'] for m in ms])} | "
                    f"{_m([m['seconds'] / 60 for m in ms], 1)} |"
                )
    L += ["", "## Guarded vs alone", ""]
    for s in settings:
        g, a = means.get(f"{s}/guarded"), means.get(f"{s}/alone")
        if not g or not a:
            continue
        hs = {
            v: (
                sum(
                    sum(t["high_shift"] for t in r["trials"])
                    for r in results
                    if r["setting"] == s and r["variant"] == v
                ),
                sum(len(r["trials"]) for r in results if r["setting"] == s and r["variant"] == v),
            )
            for v in ("guarded", "alone")
        }
        L.append(
            f"- **{s}**: high-shift trials over all seeds {hs['guarded'][0]}/{hs['guarded'][1]} with the guard, "
            f"{hs['alone'][0]}/{hs['alone'][1]} without; "
            f"epochs {g['epochs']:.0f} vs {a['epochs']:.0f} ({(1 - g['epochs'] / a['epochs']) * 100:+.1f}% "
            f"saved by the guard); best value {g['best']:.4f} vs {a['best']:.4f}; high-shift share first -> second "
            f"half {g['high_shift_first_half']:.2f} -> {g['high_shift_second_half']:.2f} with the guard, "
            f"{a['high_shift_first_half']:.2f} -> {a['high_shift_second_half']:.2f} without."
        )
    L += [
        "",
        "## Reproduce",
        "",
        "```",
        f"python benchmarks/live_guard.py --settings {','.join(settings)} --seeds {','.join(map(str, args.seeds))} "
        f"--n-trials {args.n_trials} --epochs {args.epochs} --workers {args.workers}" + overrides(args),
        "```",
    ]
    text = "\n".join(L) + "\n"
    (args.out / "live_guard.md").write_text(text)
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "pruners": pair,
        "source": source,
        "means": means,
        "studies": results,
    }
    (args.out / "live_guard.json").write_text(json.dumps(json_safe(payload), indent=1))
    print(text)


OVERRIDES = (
    "pruner",
    "shift_threshold",
    "shift_warmup",
    "shift_statistic",
    "curve_warmup",
    "n_startup_trials",
)


def overrides(args: argparse.Namespace) -> str:
    return "".join(
        f" --{f.replace('_', '-')} {getattr(args, f)}" for f in OVERRIDES if getattr(args, f) is not None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="digits-mlp,mnist1d-mlp", help="from: " + ", ".join(SETTINGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=2, help="studies run at a time (one torch thread each)"
    )
    parser.add_argument(
        "--replay", type=Path, default=RESULTS / "pruning_replay.json", help="where the default comes from"
    )
    parser.add_argument("--pruner", default=None, help="override the replay's recommended --pruner value")
    parser.add_argument("--shift-threshold", type=float, default=None)
    parser.add_argument("--shift-warmup", type=int, default=None)
    parser.add_argument("--shift-statistic", default=None)
    parser.add_argument("--curve-warmup", type=int, default=None)
    parser.add_argument("--n-startup-trials", type=int, default=None)
    parser.add_argument(
        "--db-dir", type=Path, default=None, help="folder for live.db (default: a fresh temp dir)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the saved live_guard.json, run nothing",
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((args.out / "live_guard.json").read_text())
        for key in ("settings", "seeds", "n_trials", "epochs", "workers", *OVERRIDES):
            setattr(args, key, saved["args"].get(key))
        write(args, saved["studies"], saved["pruners"], saved["source"])
        return
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}")
    guarded, alone, source = pruner_pair(args)
    pair = {"guarded": guarded, "alone": alone}
    db_dir = args.db_dir or Path(tempfile.mkdtemp(prefix="varshift-live-"))
    db_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{db_dir / 'live.db'}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jobs = [
        {
            "setting": s,
            "seed": seed,
            "variant": variant,
            "n_trials": args.n_trials,
            "epochs": args.epochs,
            "pruner": pair[variant],
            "storage": storage,
            "study_name": f"live-{s}-seed{seed}-{variant}-{stamp}",
        }
        for s in args.settings
        for seed in args.seeds
        for variant in ("guarded", "alone")
    ]
    jobs.sort(key=lambda j: (SETTINGS[j["setting"]][0] != "digits",))  # slower data sets last
    print(
        f"{len(jobs)} studies into {storage}; guarded = {label(guarded)}; alone = {label(alone)}", flush=True
    )
    results = []
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for r in pool.imap_unordered(run_one, jobs, chunksize=1):
            results.append(r)
            m = summarise_study(r)
            print(
                f"[{len(results)}/{len(jobs)} {time.perf_counter() - start:5.0f}s] {r['study_name']}: "
                f"{m['completed']} completed, {m['pruned']} pruned ({m['pruned_by_shift']} by shift), "
                f"{m['epochs']} epochs, best {m['best']:.4f}, high-shift {m['high_shift_first_half']:.2f} -> "
                f"{m['high_shift_second_half']:.2f}",
                flush=True,
            )
    write(args, results, pair, source)


if __name__ == "__main__":
    main()
