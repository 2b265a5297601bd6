"""Trials per hour with ``search run --workers 1`` and ``--workers 2`` on the same study definition,
on SQLite and on PostgreSQL, through the real CLI in subprocesses.

The family is small enough to be latency-bound (digits, one 32-wide block, 5 epochs, no pruner),
so the question is whether two worker processes on a 2-core machine really run two trials at a
time. Each run gets a fresh study; throughput is timed two ways:

* span: from the study's own trial timestamps, first ``datetime_start`` to last
  ``datetime_complete`` (start-up of the command and its workers excluded);
* wall: the whole command, start-up included (what a user waits for).

Runs are interleaved (1 worker, 2 workers, 1, 2, ...) so that machine noise hits both alike; the
report gives the median of the per-repeat ratios 2 workers / 1 worker. Target: >= 1.7x.
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
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    return {
        "storage": storage,
        "workers": workers,
        "trials": len(done),
        "states": {k: v for k, v in states.items() if v},
        "span_s": round(span, 2),
        "wall_s": round(wall, 2),
        "trial_seconds_sum": round(busy, 2),
        "per_hour_span": round(len(done) / span * 3600, 1),
        "per_hour_wall": round(len(done) / wall * 3600, 1),
        "load_before": load_before,
        "other_benchmarks": others,
    }


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
        span_ratios = [b["per_hour_span"] / a["per_hour_span"] for a, b in pairs]
        wall_ratios = [b["per_hour_wall"] / a["per_hour_wall"] for a, b in pairs]
        idle = [(a, b) for a, b in pairs if not a["other_benchmarks"] and not b["other_benchmarks"]]
        idle_ratios = [b["per_hour_span"] / a["per_hour_span"] for a, b in idle]
        out[storage] = {
            "idle_pairs_ratios_span": [round(x, 3) for x in idle_ratios],
            "idle_pairs_ratios_wall": [round(b["per_hour_wall"] / a["per_hour_wall"], 3) for a, b in idle],
            "median_per_hour_span": {w: statistics.median(r["per_hour_span"] for r in by[w]) for w in (1, 2)},
            "median_per_hour_wall": {w: statistics.median(r["per_hour_wall"] for r in by[w]) for w in (1, 2)},
            "span_ratios": [round(x, 3) for x in span_ratios],
            "wall_ratios": [round(x, 3) for x in wall_ratios],
            "median_ratio_span": round(statistics.median(span_ratios), 3),
            "median_ratio_wall": round(statistics.median(wall_ratios), 3),
            "target": TARGET,
            "target_met_span": statistics.median(span_ratios) >= TARGET,
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
        "span = first trial start to last trial completion (the study's own timestamps); "
        "wall = the whole command, start-up of Python, torch and the spawned workers included.",
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
        "| storage | 1 worker trials/h (span) | 2 workers trials/h (span) | median ratio (span) "
        "| median ratio (wall) | per-repeat ratios (span) | target >= 1.7x |",
        "|---|---|---|---|---|---|---|",
    ]
    for storage, s in report["summary"].items():
        lines.append(
            f"| {storage} | {s['median_per_hour_span'][1]:.0f} | {s['median_per_hour_span'][2]:.0f} "
            f"| {s['median_ratio_span']:.2f}x | {s['median_ratio_wall']:.2f}x "
            f"| {', '.join(f'{x:.2f}' for x in s['span_ratios'])} "
            f"| {'met' if s['target_met_span'] else 'NOT met'} |"
        )
    idle_rows = [(k, s) for k, s in report["summary"].items() if s.get("idle_pairs_ratios_span")]
    if idle_rows:
        lines += [
            "",
            "Pairs (1 worker, 2 workers) where neither run shared the machine with another benchmark:",
            "",
        ]
        for storage, s in idle_rows:
            lines.append(
                f"- {storage}: span ratios {', '.join(f'{x:.2f}x' for x in s['idle_pairs_ratios_span'])}, "
                f"wall ratios {', '.join(f'{x:.2f}x' for x in s['idle_pairs_ratios_wall'])}"
            )
    lines += [
        "",
        "## Runs (in the order they ran)",
        "",
        "| # | storage | workers | trials | span s | wall s | trials/h span | trials/h wall | sum of trial s "
        "| load before | other benchmark running |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["runs"]):
        lines.append(
            f"| {i} | {r['storage']} | {r['workers']} | {r['trials']} | {r['span_s']:.1f} | {r['wall_s']:.1f} "
            f"| {r['per_hour_span']:.0f} | {r['per_hour_wall']:.0f} | {r['trial_seconds_sum']:.1f} "
            f"| {r['load_before'][0]} | {'yes' if r['other_benchmarks'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storages", default="sqlite,postgres")
    parser.add_argument("--wait-idle", type=float, default=0.0, help="minutes to wait for other benchmarks")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line for the report's machine-state section")
    parser.add_argument("--render", type=Path, help="only re-render the .md from this .json (no runs)")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        for run in report["runs"]:
            run.setdefault("other_benchmarks", [])
        report["summary"] = summarise(report["runs"], report["repeats"])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "worker_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "worker_throughput.md").write_text(markdown(report))
        print(markdown(report))
        return

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
                        f"span {run['span_s']:.1f} s ({run['per_hour_span']:.0f}/h), "
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
