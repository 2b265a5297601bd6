"""Many machines, one PostgreSQL study: every ``search run`` pointed at the same URL and study
name joins it as a worker, and Optuna's heartbeats fail and retry the trial of a worker that
died. Real PostgreSQL (127.0.0.1:5432, user postgres, database test; ``VARSHIFT_TEST_POSTGRES``
overrides the URL). These tests never skip: an unreachable server is a failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pytest
from sqlalchemy.engine import make_url

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
TrialState = optuna.trial.TrialState
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PG_URL = os.environ.get("VARSHIFT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "3")
GRACE = 3.0
Retry = optuna.storages.RetryHeartbeatStaleTrialCallback


class SetupError(RuntimeError):
    """A worker that misbehaved before the point a test checks (not an AssertionError, so an
    xfail(raises=AssertionError) test cannot pass on it)."""


@pytest.fixture(scope="module")
def pg() -> optuna.storages.RDBStorage:
    """A storage on the test database (heartbeats off: it only reads and cleans up).

    Opening it also creates Optuna's tables when the database is fresh, so the concurrent
    processes below never race each other to create the schema."""
    url = make_url(PG_URL)
    try:
        psycopg.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname=url.database, connect_timeout=5
        ).close()
    except psycopg.OperationalError as err:
        pytest.fail(
            f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable ({err}). "
            "These tests need a real server (trust auth, database 'test'); they do not skip.",
            pytrace=False,
        )
    return optuna.storages.RDBStorage(PG_URL)


@pytest.fixture
def new_name(pg: optuna.storages.RDBStorage) -> Iterator[Callable[[], str]]:
    """Unique study names; every study made under them is deleted after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"pg-{uuid.uuid4().hex}")
        return names[-1]

    yield make
    existing = set(optuna.get_all_study_names(pg))
    for name in names:
        if name in existing:
            optuna.delete_study(study_name=name, storage=pg)


def _env() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("OPTUNA_STORAGE", None)
    return env


def run_args(name: str, *args: str, url: str = PG_URL) -> list[str]:
    return [sys.executable, "-m", "search", "run", "--study-name", name, "--storage", url, "-q", *args]


def search(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def start(cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
    """A worker in its own process group, output to a file so it can never block on a pipe."""
    log = (cwd / f"worker-{uuid.uuid4().hex[:8]}.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    proc.log_path = Path(log.name)  # type: ignore[attr-defined]
    log.close()
    return proc


def output_of(proc: subprocess.Popen[str]) -> str:
    return proc.log_path.read_text()  # type: ignore[attr-defined]


def finish(proc: subprocess.Popen[str], timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise SetupError(f"worker still running after {timeout:.0f} s:\n{output_of(proc)}") from None


def kill(proc: subprocess.Popen[str]) -> None:
    """kill -9, the whole process group: nothing of the worker survives to send a heartbeat."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def trials_of(pg: optuna.storages.RDBStorage, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=pg).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def wait_for(
    condition: Callable[[], Any], procs: list[subprocess.Popen[str]], timeout: float, what: str
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                raise SetupError(f"worker exited ({proc.returncode}) before {what}:\n{output_of(proc)}")
        time.sleep(0.2)
    for proc in procs:
        kill(proc)
    raise SetupError(f"no {what} within {timeout:.0f} s")


def training(pg: optuna.storages.RDBStorage, name: str) -> Callable[[], list[optuna.trial.FrozenTrial]]:
    """RUNNING trials that have reported an epoch: their workers are mid-training."""
    return lambda: [t for t in trials_of(pg, name) if t.state == TrialState.RUNNING and t.intermediate_values]


def states(trials: list[optuna.trial.FrozenTrial]) -> dict[int, str]:
    return {t.number: t.state.name for t in trials}


def test_three_processes_fill_one_study_exactly(
    pg: optuna.storages.RDBStorage, new_name: Callable[[], str], tmp_path: Path
) -> None:
    """Three ``search run --n-trials 4`` started at once on a study none of them finds: they
    create it together (no DuplicatedStudyError) and add 12 trials, none lost, none doubled.
    One of them gives its URL with a password (trust auth ignores it): it is never printed."""
    name = new_name()
    secret_url = PG_URL.replace("postgres@", "postgres:s3cret@", 1)
    assert "s3cret" in secret_url
    urls = [PG_URL, PG_URL, secret_url]
    procs = [start(run_args(name, "--n-trials", "4", "--max-epochs", "2", url=url), tmp_path) for url in urls]
    codes = [finish(p, timeout=240) for p in procs]
    outputs = [output_of(p) for p in procs]
    assert codes == [0, 0, 0], "\n----\n".join(outputs)
    assert not any("DuplicatedStudyError" in out or "s3cret" in out for out in outputs), outputs
    trials = trials_of(pg, name)
    assert len(trials) == 12, states(trials)
    assert sorted(t.number for t in trials) == list(range(12))
    assert len({t._trial_id for t in trials}) == 12
    assert all(t.state in FINISHED for t in trials), states(trials)
    assert all(t.user_attrs.get("architecture") for t in trials)


_ASK_ONCE = """
import json, sys
from search.config import build_config
from search.study import open_study, prepare
from spaces import suggest_architecture
config = build_config(None, {"study_name": sys.argv[1], "storage": sys.argv[2], "max_epochs": "2"})
data, pruner = prepare(config)
study = open_study(config, pruner, data)
print("opened", flush=True)
sys.stdin.readline()  # every machine has opened the study before any asks
trial = study.ask()
suggest_architecture(trial, config.space(), data.input_shape, data.n_classes)
study.tell(trial, 0.5)
print(json.dumps(trial.params), flush=True)
"""


def test_processes_that_join_together_propose_different_candidates(
    pg: optuna.storages.RDBStorage, new_name: Callable[[], str]
) -> None:
    """Three machines start the same command at the same moment: each opens the study while
    it is still empty (so all see the same trial count), then each asks for a candidate."""
    name = new_name()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ASK_ONCE, name, PG_URL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "opened"
    proposed = [json.loads(proc.communicate("go\n", timeout=120)[0].strip()) for proc in procs]
    assert proposed[0] != proposed[1] and proposed[1] != proposed[2] and proposed[0] != proposed[2], (
        f"identical candidates: {proposed}"
    )


def test_a_killed_workers_trial_is_failed_then_retried(
    pg: optuna.storages.RDBStorage, new_name: Callable[[], str], tmp_path: Path
) -> None:
    name = new_name()
    doomed = start(
        run_args(name, "--n-trials", "1", "--max-epochs", "200", "--pruner", "none", *HEARTBEAT), tmp_path
    )
    (victim,) = wait_for(training(pg, name), [doomed], 120, "trial in training")
    kill(doomed)
    assert states(trials_of(pg, name)) == {victim.number: "RUNNING"}

    time.sleep(GRACE + 1.5)  # stale now; with no worker alive nobody has noticed yet
    assert states(trials_of(pg, name)) == {victim.number: "RUNNING"}

    proc = search(
        run_args(name, "--n-trials", "2", "--max-epochs", "2", "--pruner", "none", *HEARTBEAT), tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(pg, name)
    by_number = {t.number: t for t in trials}
    assert by_number[victim.number].state == TrialState.FAIL, states(trials)
    retries = [t for t in trials if Retry.retried_trial_number(t) == victim.number]
    assert len(retries) == 1, states(trials)
    retry = retries[0]
    assert retry.params == victim.params
    assert Retry.retry_history(retry) == [victim.number]
    assert retry.state == TrialState.COMPLETE and retry.value is not None
    assert retry.datetime_start > victim.datetime_start
    assert len(trials) == 3 and sum(t.state == TrialState.COMPLETE for t in trials) == 2, states(trials)


def test_total_trials_is_reached_after_a_worker_is_killed_and_restarted(
    pg: optuna.storages.RDBStorage, new_name: Callable[[], str], tmp_path: Path
) -> None:
    """Two machines run ``--total-trials 5``; one is killed mid-trial and restarted at once.
    The study ends with exactly 5 finished trials and the killed one FAIL (it was retried)."""
    name = new_name()
    # Trials long enough (10 epochs) that the survivor is still working when the grace period
    # has passed; see the xfail test below for what happens otherwise.
    cmd = run_args(
        name, "--total-trials", "5", "--n-trials", "10", "--max-epochs", "10", "--pruner", "none", *HEARTBEAT
    )
    first, second = start(cmd, tmp_path), start(cmd, tmp_path)
    wait_for(lambda: len(training(pg, name)()) >= 2, [first, second], 180, "both workers training")
    kill(second)
    restarted = start(cmd, tmp_path)
    codes = [finish(first, 240), finish(restarted, 240)]
    assert codes == [0, 0], output_of(first) + "\n----\n" + output_of(restarted)

    trials = trials_of(pg, name)
    finished = [t for t in trials if t.state in FINISHED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == 5 and len(failed) == 1 and len(trials) == 6, states(trials)
    (retry,) = [t for t in trials if Retry.retried_trial_number(t) == failed[0].number]
    assert retry.state in FINISHED and retry.params == failed[0].params


def test_total_trials_fails_and_retries_a_dead_workers_trial(
    pg: optuna.storages.RDBStorage, new_name: Callable[[], str], tmp_path: Path
) -> None:
    """A worker was killed mid-trial, so the study holds 1 stale RUNNING trial; the next worker,
    with ``--total-trials 1``, should fail the stale trial, retry it and end with 1 finished."""
    name = new_name()
    doomed = start(
        run_args(name, "--n-trials", "1", "--max-epochs", "200", "--pruner", "none", *HEARTBEAT), tmp_path
    )
    wait_for(training(pg, name), [doomed], 120, "trial in training")
    kill(doomed)
    time.sleep(GRACE + 1.5)
    proc = search(
        run_args(name, "--total-trials", "1", "--n-trials", "3", "--max-epochs", "2", *HEARTBEAT), tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(pg, name)
    assert not any(t.state == TrialState.RUNNING for t in trials), states(trials)
    assert sum(t.state in FINISHED for t in trials) == 1, states(trials)


def test_unreachable_server_is_one_line_and_hides_the_password(tmp_path: Path) -> None:
    """Port 1 refuses at once; the bound is the command's own start-up (torch, data) plus that."""
    for url in (
        "postgresql+psycopg://postgres@127.0.0.1:1/test",
        "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test",
    ):
        began = time.monotonic()
        try:
            proc = search(
                run_args(f"pg-{uuid.uuid4().hex}", "--n-trials", "1", url=url), tmp_path, timeout=30
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{url}: no answer within 30 s from a refused connection") from None
        took = time.monotonic() - began
        assert proc.returncode in (1, 2), (url, proc.returncode, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (url, proc.stderr)
        assert "127.0.0.1" in lines[0] and "Traceback" not in proc.stderr
        assert "s3cret" not in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)
        assert took < 30, took
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())
