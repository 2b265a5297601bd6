"""Unit tests of the retrying storage: which calls retry, how long, and how a lost database
reaches the user even when Optuna's own bookkeeping masks it."""

from __future__ import annotations

import inspect
import multiprocessing as mp
import re
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy

from search import cli
from search.storage import RetryingRDBStorage, StorageUnavailable, _retrying


def _db_calls_of_cached_storage() -> set[str]:
    """Backend methods Optuna's ``_CachedStorage`` calls (it wraps every RDB storage)."""
    from optuna.storages import _cached_storage

    called = set(re.findall(r"_backend\.(\w+)\(", inspect.getsource(_cached_storage)))
    # Heartbeat settings are plain attributes, no database round trip.
    return called - {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}


@pytest.mark.parametrize("name", sorted(_db_calls_of_cached_storage()))
def test_every_call_the_study_makes_is_retried(name: str) -> None:
    assert hasattr(getattr(RetryingRDBStorage, name), "__wrapped__"), name


class _Flaky:
    """Stands in for the storage: fails with a lost connection ``failures`` times."""

    url = "postgresql+psycopg://me:s3cret@db.example/test"

    def __init__(self, failures: int, retry_seconds: float) -> None:
        self.failures = failures
        self.retry_seconds = retry_seconds
        self.calls = 0

    @_retrying
    def call(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            lost = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
            raise optuna.exceptions.StorageInternalError("commit failed") from lost
        return "ok"


def test_lost_connection_is_retried_until_it_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.storage.time.sleep", lambda s: None)
    flaky = _Flaky(failures=3, retry_seconds=60)
    assert flaky.call() == "ok"  # type: ignore[misc]
    assert flaky.calls == 4


def test_retry_budget_ends_in_storage_unavailable_without_the_password() -> None:
    flaky = _Flaky(failures=10**6, retry_seconds=0.2)
    with pytest.raises(StorageUnavailable, match="unreachable for 0 s") as info:
        flaky.call()  # type: ignore[misc]
    assert "s3cret" not in str(info.value) and flaky.calls >= 2


def test_bad_data_is_not_retried() -> None:
    calls = []

    class Bad:
        retry_seconds = 60.0
        url = "sqlite://"

        @_retrying
        def call(self) -> None:
            calls.append(1)
            raise optuna.exceptions.StorageInternalError("too long") from ValueError("value too long")

    with pytest.raises(optuna.exceptions.StorageInternalError):
        Bad().call()  # type: ignore[misc]
    assert calls == [1]


def test_a_lost_database_masked_by_optuna_still_reaches_the_user() -> None:
    # Optuna's _run_trial: tell fails, get_trial in the except fails too, and the finally
    # then reads an unbound local: the UnboundLocalError's context is our error.
    lost = StorageUnavailable("storage postgresql://me:***@db/test unreachable for 4 s: gone")

    def run_trial() -> None:
        try:
            raise lost
        finally:
            raise UnboundLocalError("cannot access local variable 'updated_state'")

    with pytest.raises(UnboundLocalError) as info:
        run_trial()
    assert cli._storage_lost(info.value) is lost
    assert cli._storage_lost(ValueError("other")) is None


def _open_at_once(url: str, barrier: Any, errors: Any) -> None:
    from search.storage import create_storage

    barrier.wait()
    try:
        create_storage(url, heartbeat=False)
    except Exception as err:  # reported to the test, which names it
        errors.put(f"{type(err).__name__}: {err}")


def _race(url: str, n: int = 6) -> list[str]:
    ctx = mp.get_context("spawn")
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_at_once, args=(url, barrier, errors)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert [p.exitcode for p in procs] == [0] * n
    return found


@pytest.mark.slow
def test_workers_opening_a_fresh_sqlite_database_at_once_all_succeed(tmp_path: Path) -> None:
    for i in range(3):  # a race: give it several chances to show
        url = f"sqlite:///{tmp_path / f'fresh-{i}.db'}"
        assert _race(url) == []
        assert optuna.get_all_study_names(url) == []  # tables and version row are in place


@pytest.mark.slow
def test_workers_opening_a_fresh_postgres_database_at_once_all_succeed() -> None:
    psycopg = pytest.importorskip("psycopg")
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    for _ in range(3):
        db = f"varshift_fresh_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
        try:
            assert _race(url) == []
            assert optuna.get_all_study_names(url) == []
        finally:
            sqlalchemy.create_engine(url).dispose()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_an_interrupt_stops_the_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainers import stop

    flaky = _Flaky(failures=10**6, retry_seconds=60)
    stop.request_stop()  # Ctrl-C arrived while Optuna's bookkeeping deferred it
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="stopped retrying on interrupt"):
            flaky.call()  # type: ignore[misc]
        assert time.monotonic() - started < 5 and flaky.calls == 1  # no retry after a stop
    finally:
        stop._STOP.clear()
