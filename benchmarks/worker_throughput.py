"""Trials per hour with ``search run --workers 1`` and ``--workers 2`` on the same study definition,
on SQLite and on PostgreSQL, through the real CLI in subprocesses.

The family is small enough to be latency-bound (digits, one 32-wide block, 5 epochs, no pruner),
so the question is whether two worker processes on a 2-core machine really run two trials at a
time. Each run gets a fresh study; throughput is timed two ways:

* steady: trials completed per second while every worker is running, from the study's own
  timestamps and each trial's ``worker`` attr: from the moment the last worker starts its
  first trial to the moment the first worker finishes its last one. The throughput of a long
  study, which is what the target is about;
* wall: the whole command, start-up of Python, torch and the spawned worker included (what a
  user of a short run waits for).

Runs are interleaved (1 worker, 2 workers, 1, 2, ...) so that machine noise hits both alike; the
report gives the median of the per-repeat ratios 2 workers / 1 worker. Target: >= 1.7x (steady).
The machine must be otherwise idle: ``--wait-idle MINUTES`` waits for known long benchmarks
to end first, and the load average before and after is written with the results.

    python benchmarks/worker_throughput.py      # writes benchmarks/results/worker_throughput.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

RESULTS = Path(__file__).parent / "results"
PG_URL = os.environ.get("VARSHIFT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FAMILY = [
    "--dataset", "digits", "--family", "mlp", "--depth", "1,1", "--widths", "32",
    "--max-epochs", "5", "--pruner", "none", "--sampler", "random", "--seed", "0",
]  # fmt: skip
BUSY_PATTERNS = ("pruning_replay", "live_guard")  # other developers' long benchmarks
TARGET = 1.7


def busy_processes() -> list[str]:
    found = []
    for pattern in BUSY_PATTERNS:
        out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        found += [line for line in out.splitlines() if line.strip() and str(os.getpid()) != line.split()[0]]
    return found


def wait_idle(minutes: float, poll_s: float = 120.0) -> dict[str, Any]:
    began = time.monotonic()
    while True:
        busy = busy_processes()
        waited = time.monotonic() - began
        if not busy or waited >= minutes * 60:
            return {"waited_s": round(waited), "still_busy": busy}
        print(f"waiting for an idle machine ({len(busy)} busy: {busy[0][:80]}) ...", flush=True)
        time.sleep(min(poll_s, max(1.0, minutes * 60 - waited)))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_once(storage: str, url: str, workers: int, n_trials: int, cwd: Path) -> dict[str, Any]:
    name = f"throughput-{workers}w-{uuid.uuid4().hex[:10]}"
    cmd = [
        sys.executable, "-m", "search", "run", "--study-name", name, "--storage", url,
        "--workers", str(workers), "--n-trials", str(n_trials), "-q", *FAMILY,
    ]  # fmt: skip
    env = {**os.environ}
    env.pop("OPTUNA_STORAGE", None)
    load_before = load_average()
    others = busy_processes()
    began = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - began
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    finally:
        if name in optuna.get_all_study_names(url):
            optuna.delete_study(study_name=name, storage=url)
    done = [t for t in trials if t.state.is_finished() and t.datetime_complete is not None]
    steady_s, steady_n, n_workers = steady_window(done)
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    return {
        "storage": storage,
        "workers": workers,
        "workers_that_ran_trials": n_workers,
        "trials": len(done),
        "states": {k: v for k, v in states.items() if v},
        "steady_s": round(steady_s, 2),
        "steady_trials": steady_n,
        "wall_s": round(wall, 2),
        "trial_seconds_sum": round(busy, 2),
        "per_hour_steady": round(steady_n / steady_s * 3600, 1),
        "per_hour_wall": round(len(done) / wall * 3600, 1),
        "load_before": load_before,
        "other_benchmarks": others,
    }


def steady_window(done: list[optuna.trial.FrozenTrial]) -> tuple[float, int, int]:
    """(seconds, trials completed) while every worker that ran trials was running, and how
    many workers ran trials. One worker: first start to last completion."""
    by_worker: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in done:
        by_worker.setdefault(str(t.user_attrs.get("worker")), []).append(t)
    t0 = max(min(t.datetime_start for t in ts) for ts in by_worker.values())  # type: ignore[type-var]
    t1 = min(max(t.datetime_complete for t in ts) for ts in by_worker.values())  # type: ignore[type-var]
    n = sum(t0 < t.datetime_complete <= t1 for t in done)  # type: ignore[operator]
    return (t1 - t0).total_seconds(), n, len(by_worker)


def postgres_ok() -> str | None:
    try:
        optuna.storages.RDBStorage(PG_URL, engine_kwargs={"connect_args": {"connect_timeout": 5}})
    except Exception as err:  # report it, run SQLite alone
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return None


def summarise(runs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for storage in sorted({r["storage"] for r in runs}):
        by = {w: [r for r in runs if r["storage"] == storage and r["workers"] == w] for w in (1, 2)}
        pairs = list(zip(by[1], by[2], strict=False))[:repeats]
        steady = [b["per_hour_steady"] / a["per_hour_steady"] for a, b in pairs]
        wall = [b["per_hour_wall"] / a["per_hour_wall"] for a, b in pairs]
        out[storage] = {
            "median_per_hour_steady": {
                w: statistics.median(r["per_hour_steady"] for r in by[w]) for w in (1, 2)
            },
            "median_per_hour_wall": {w: statistics.median(r["per_hour_wall"] for r in by[w]) for w in (1, 2)},
            "steady_ratios": [round(x, 3) for x in steady],
            "wall_ratios": [round(x, 3) for x in wall],
            "median_ratio_steady": round(statistics.median(steady), 3),
            "median_ratio_wall": round(statistics.median(wall), 3),
            "target": TARGET,
            "target_met": statistics.median(steady) >= TARGET,
            "shared_machine_runs": sum(bool(r["other_benchmarks"]) for r in by[1] + by[2]),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Worker throughput: `search run --workers 1` vs `--workers 2`",
        "",
        f"Run {report['started']} -> {report['finished']} on {env['cpus']} CPU cores, {env['platform']}, "
        f"Python {env['python']}, Optuna {env['optuna']}.",
        f"Study definition: `{' '.join(FAMILY)}`, {report['n_trials']} trials per run, fresh study each run; "
        f"order interleaved (1, 2, 1, 2, ...) for {report['repeats']} repeats per storage.",
        "",
        "steady = trials completed per hour while every worker was running (the study's own "
        "timestamps and each trial's `worker` attr); wall = the whole command, start-up of Python, "
        "torch and the spawned worker included. On the CPU the parent process is worker 0 and trains "
        "while the second worker starts.",
        "",
        "## Machine state",
        "",
        f"- load average (1, 5, 15 min) before: {report['load_before']}, after: {report['load_after']}",
        f"- waited {report['idle']['waited_s']} s for other benchmarks "
        f"({', '.join(BUSY_PATTERNS)}) to end; still running at start: "
        f"{report['idle']['still_busy'] or 'none'}; at the end: {report['busy_after'] or 'none'}",
    ]
    shared = sum(bool(r["other_benchmarks"]) for r in report["runs"])
    if report["idle"]["still_busy"] or report["busy_after"] or shared:
        lines.append(
            f"- runs that started while another benchmark was running: {shared} of {len(report['runs'])}"
        )
        lines.append(
            "- **The machine was NOT idle**: another benchmark shared the 2 cores, so absolute rates "
            "are low and the 2-worker ratio is understated (2 workers cannot get 2 free cores)."
        )
    if report.get("note"):
        lines.append(f"- {report['note']}")
    if report.get("postgres_error"):
        lines.append(f"- PostgreSQL unavailable ({report['postgres_error']}): SQLite only.")
    lines += [
        "",
        "## Summary",
        "",
        "| storage | 1 worker trials/h (steady) | 2 workers trials/h (steady) | median ratio (steady) "
        "| per-repeat ratios (steady) | median ratio (wall) | per-repeat ratios (wall) | target >= 1.7x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for storage, s in report["summary"].items():
        lines.append(
            f"| {storage} | {s['median_per_hour_steady'][1]:.0f} | {s['median_per_hour_steady'][2]:.0f} "
            f"| {s['median_ratio_steady']:.2f}x | {', '.join(f'{x:.2f}' for x in s['steady_ratios'])} "
            f"| {s['median_ratio_wall']:.2f}x | {', '.join(f'{x:.2f}' for x in s['wall_ratios'])} "
            f"| {'met' if s['target_met'] else 'NOT met'} |"
        )
    lines += [
        "",
        "## Runs (in the order they ran)",
        "",
        "| # | storage | workers (ran trials) | trials | steady s (trials) | wall s | trials/h steady "
        "| trials/h wall | sum of trial s | load before | other benchmark running |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["runs"]):
        lines.append(
            f"| {i} | {r['storage']} | {r['workers']} ({r['workers_that_ran_trials']}) | {r['trials']} "
            f"| {r['steady_s']:.1f} ({r['steady_trials']}) | {r['wall_s']:.1f} "
            f"| {r['per_hour_steady']:.0f} | {r['per_hour_wall']:.0f} | {r['trial_seconds_sum']:.1f} "
            f"| {r['load_before'][0]} | {'yes' if r['other_benchmarks'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storages", default="sqlite,postgres")
    parser.add_argument("--wait-idle", type=float, default=0.0, help="minutes to wait for other benchmarks")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line for the report's machine-state section")
    args = parser.parse_args()
    idle = wait_idle(args.wait_idle)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = load_average()
    storages = args.storages.split(",")
    pg_error = postgres_ok() if "postgres" in storages else None
    if pg_error:
        storages.remove("postgres")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="worker-throughput-") as tmp:
        for repeat in range(args.repeats):
            for storage in storages:
                for workers in (1, 2):
                    cwd = Path(tmp) / f"{storage}-{repeat}-{workers}"
                    cwd.mkdir()
                    url = f"sqlite:///{cwd / 'studies.db'}" if storage == "sqlite" else PG_URL
                    run = run_once(storage, url, workers, args.n_trials, cwd)
                    run["repeat"] = repeat
                    runs.append(run)
                    print(
                        f"{storage:8s} workers={workers} repeat={repeat}: {run['trials']} trials, "
                        f"steady {run['steady_s']:.1f} s ({run['per_hour_steady']:.0f}/h), "
                        f"wall {run['wall_s']:.1f} s ({run['per_hour_wall']:.0f}/h), load {run['load_before'][0]}",
                        flush=True,
                    )
    report = {
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_trials": args.n_trials,
        "repeats": args.repeats,
        "family": FAMILY,
        "idle": idle,
        "busy_after": busy_processes(),
        "load_before": load_before,
        "load_after": load_average(),
        "postgres_error": pg_error,
        "note": args.note,
        "environment": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "optuna": optuna.__version__,
        },
        "summary": summarise(runs, args.repeats),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "worker_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "worker_throughput.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
