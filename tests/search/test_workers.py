"""``search run --workers N`` as a user runs it: one command, N worker processes (on the CPU the
parent and N-1 spawned ones) sharing a SQLite study. Checked from the outside: exit codes, what
the storage holds afterwards, and that no process of the command's process group outlives it
(Ctrl-C reaches the whole group, SIGTERM only the parent)."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

pytestmark = pytest.mark.slow
TrialState = optuna.trial.TrialState
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STOP_WITHIN = 45.0  # seconds from the signal to the command's exit (the package waits <= 60 s)


def _env() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("OPTUNA_STORAGE", None)
    return env


def search(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``search`` in its own session (its own process group), output to files so it never blocks."""
    out = (cwd / f"stdout-{uuid.uuid4().hex[:6]}.txt").open("w")
    err = (cwd / f"stderr-{uuid.uuid4().hex[:6]}.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        cwd=cwd,
        env=_env(),
        stdout=out,
        stderr=err,
        text=True,
        start_new_session=True,
    )
    proc.out_path, proc.err_path = Path(out.name), Path(err.name)  # type: ignore[attr-defined]
    out.close()
    err.close()
    return proc


def stderr_of(proc: subprocess.Popen[str]) -> str:
    return proc.err_path.read_text()  # type: ignore[attr-defined]


def group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of a process group, from /proc: 'pid state cmdline'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry.name} {fields[0]} {cmd[:120]}")
    return found


def assert_group_gone(pgid: int, timeout: float = 15.0) -> None:
    """No process of the group is left: ``killpg(pgid, 0)`` finds nobody (zombies aside,
    which are dead and only wait for a reaper this test does not control)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if not group_members(pgid):
            return
        time.sleep(0.2)
    left = group_members(pgid)
    for line in left:  # do not leave them to slow down the next tests
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert not left, (
        f"processes of group {pgid} still alive {timeout:.0f} s after the command:\n" + "\n".join(left)
    )


def study_exists(db: Path, name: str) -> bool:
    """Read with sqlite3, so the test never races the command into creating Optuna's schema."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchall()
        return bool(rows)
    except sqlite3.Error:
        return False


def wait_for(condition: Callable[[], Any], proc: subprocess.Popen[str], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"command exited ({proc.returncode}) before {what}:\n{stderr_of(proc)}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no {what} within {timeout:.0f} s:\n{stderr_of(proc)}")


def load(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def finished_record(trials: list[optuna.trial.FrozenTrial]) -> dict[int, tuple[Any, ...]]:
    return {
        t.number: (t.state, t.value, t.params, t.datetime_complete, dict(t.intermediate_values))
        for t in trials
        if t.state in FINISHED
    }


@pytest.fixture
def sqlite_study(tmp_path: Path) -> Any:
    """(cwd, db file, url, unique name); the study is deleted afterwards."""
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    name = f"workers-{uuid.uuid4().hex}"
    yield tmp_path, db, url, name
    if study_exists(db, name):
        optuna.delete_study(study_name=name, storage=url)


def test_two_workers_share_a_sqlite_study_without_lock_errors(sqlite_study: Any) -> None:
    cwd, _, url, name = sqlite_study
    # The parent trains from the start, the spawned worker joins after ~5 s of imports:
    # enough trials that it still finds work on a loaded machine.
    proc = search(
        "run", "--study-name", name, "--storage", url, "--workers", "2", "--n-trials", "40",
        "--max-epochs", "4", "-q", cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "database is locked" not in proc.stderr
    trials = load(url, name)
    assert len(trials) == 40, [(t.number, t.state) for t in trials]
    assert sorted(t.number for t in trials) == list(range(40))
    assert len({t._trial_id for t in trials}) == 40
    assert all(t.state in FINISHED for t in trials), [(t.number, t.state.name) for t in trials]
    assert all(t.user_attrs.get("architecture") for t in trials)
    # Both workers trained: two processes ran trials, at least two of them at the same time.
    assert len({t.user_attrs["worker"] for t in trials}) == 2, {t.user_attrs["worker"] for t in trials}
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert all(s is not None and c is not None for s, c in spans)
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert overlaps, f"no two trials overlapped in time, so one worker did all the work: {spans}"
    # The summary the parent prints counts the whole study, e.g. "<name>: 5 complete, 1 pruned".
    summary = [line for line in proc.stdout.splitlines() if line.startswith(f"{name}: ")]
    assert summary, proc.stdout
    assert sum(int(part.split()[0]) for part in summary[-1].split(": ", 1)[1].split(", ")) == 40


def _start_long_search(cwd: Path, url: str, name: str) -> subprocess.Popen[str]:
    return start(
        "run", "--study-name", name, "--storage", url, "--workers", "2", "--n-trials", "50",
        "--max-epochs", "30", "-q", cwd=cwd,
    )  # fmt: skip


def _wait_until_both_workers_are_busy(
    proc: subprocess.Popen[str], db: Path, url: str, name: str
) -> list[optuna.trial.FrozenTrial]:
    """Both workers (the parent and the spawned one) have run trials and one is running now,
    so that the signal lands mid-trial with both processes past their start-up."""
    wait_for(lambda: study_exists(db, name), proc, 120, "study in the storage")

    def busy() -> list[optuna.trial.FrozenTrial] | None:
        trials = load(url, name)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        workers = {t.user_attrs.get("worker") for t in trials} - {None}
        return trials if len(workers) >= 2 and running >= 1 else None

    return wait_for(busy, proc, 180, "both workers busy")


def _assert_stopped_cleanly(
    proc: subprocess.Popen[str], url: str, name: str, before: dict[int, tuple[Any, ...]], signalled: float
) -> list[optuna.trial.FrozenTrial]:
    try:
        code = proc.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(
            f"not stopped {STOP_WITHIN:.0f} s after the signal:\n{stderr_of(proc)}"
        ) from None
    err = stderr_of(proc)
    assert code == 130, f"exit {code}, {time.monotonic() - signalled:.1f} s after the signal\n{err}"
    # Optuna logs each interrupted trial as a one-line warning; no traceback anywhere (an
    # interrupt Python swallowed in a finaliser included); the last word is the one-line message.
    assert err.strip().splitlines()[-1].startswith("error: interrupted"), err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "database is locked" not in err
    assert_group_gone(proc.pid)
    trials = load(url, name)
    states = {t.number: t.state.name for t in trials}
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials), states
    assert {t.state for t in trials} <= {*FINISHED, TrialState.FAIL}, states
    after = finished_record(trials)
    for number, record in before.items():  # what had finished before the signal is untouched
        assert after.get(number) == record, f"trial {number} changed: {record} -> {after.get(number)}"
    return trials


def test_ctrl_c_stops_every_worker_and_the_study_resumes(sqlite_study: Any) -> None:
    cwd, db, url, name = sqlite_study
    proc = _start_long_search(cwd, url, name)
    busy = _wait_until_both_workers_are_busy(proc, db, url, name)
    running = {t.number for t in busy if t.state == TrialState.RUNNING}
    before = finished_record(load(url, name))
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    trials = _assert_stopped_cleanly(proc, url, name, before, signalled)
    by_number = {t.number: t for t in trials}
    for number in running:  # interrupted mid-trial: FAIL (unless it finished in the meantime)
        assert by_number[number].state in (TrialState.FAIL, *FINISHED)
    assert any(t.state == TrialState.FAIL for t in trials), "an interrupted trial should be FAIL"

    rerun = search(
        "run", "--study-name", name, "--storage", url, "--n-trials", "2", "--max-epochs", "2", "-q", cwd=cwd
    )
    assert rerun.returncode == 0, rerun.stderr
    resumed = load(url, name)
    assert len(resumed) == len(trials) + 2
    assert sorted(t.number for t in resumed) == list(range(len(resumed)))
    new = [t for t in resumed if t.number >= len(trials)]
    assert all(t.state in FINISHED for t in new), [(t.number, t.state.name) for t in new]
    old = {t.number: (t.state, t.value, t.params) for t in trials}
    assert {t.number: (t.state, t.value, t.params) for t in resumed if t.number in old} == old


def test_ctrl_c_while_a_worker_is_still_starting(sqlite_study: Any) -> None:
    """Ctrl-C as soon as the parent runs its first trial, while the spawned worker is most
    likely still importing torch: the same one line and exit 130, no traceback from inside an
    import, nobody left behind."""
    cwd, db, url, name = sqlite_study
    proc = _start_long_search(cwd, url, name)
    wait_for(lambda: study_exists(db, name), proc, 120, "study in the storage")
    wait_for(lambda: load(url, name) or None, proc, 120, "a first trial")
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _assert_stopped_cleanly(proc, url, name, {}, signalled)


def test_sigterm_to_the_parent_alone_stops_every_worker(sqlite_study: Any) -> None:
    cwd, db, url, name = sqlite_study
    proc = _start_long_search(cwd, url, name)
    _wait_until_both_workers_are_busy(proc, db, url, name)
    before = finished_record(load(url, name))
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)  # e.g. a scheduler stopping the job: workers get nothing
    _assert_stopped_cleanly(proc, url, name, before, signalled)
