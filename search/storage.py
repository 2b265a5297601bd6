"""Optuna RDB storage through SQLAlchemy, tuned for several writers, with passwords masked.

The storage is plain Optuna: ``optuna trials`` and ``optuna-dashboard`` read it as is.
What this module adds is configuration a long-running search needs:

* SQLite: WAL journal (readers never block the writer), a busy timeout so concurrent
  workers wait for the lock instead of failing with "database is locked", and
  ``synchronous=NORMAL`` (safe under WAL, and per-epoch reports stop costing an fsync).
* Server databases: ``pool_pre_ping`` so a connection dropped by the server is replaced.
* Heartbeats, so a trial whose worker died is failed and retried instead of staying RUNNING.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from trainers.stop import stop_requested

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///studies.db"
HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
GRACE_PERIOD = 60  # a trial silent this long is stale: failed, then retried
SQLITE_BUSY_TIMEOUT = 60  # seconds a writer waits for SQLite's lock


class StorageError(ValueError):
    """A storage URL that cannot be used; the message never contains a password."""


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def check_url(url: str) -> sqlalchemy.engine.URL:
    """Parse ``url`` or raise a one-line :class:`StorageError` (nothing is created)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(f"cannot parse storage URL {mask_url(url)!r}") from None
    try:
        parsed.get_dialect()
    except Exception:  # SQLAlchemy raises NoSuchModuleError or ImportError for a missing driver
        raise StorageError(
            f"storage URL {mask_url(url)!r}: no SQLAlchemy driver for {parsed.drivername!r} "
            "(for PostgreSQL, pip install 'varshift[postgres]' and use postgresql+psycopg://)"
        ) from None
    return parsed


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


CREATE_ATTEMPTS = 8  # tries at opening a fresh database whose tables another worker is creating
_CREATION_RACE = re.compile(r"already exists|duplicate key|UniqueViolation|DuplicateTable|UNIQUE constraint")


def _lost_creation_race(err: sqlalchemy.exc.SQLAlchemyError) -> bool:
    """Two workers created the tables (or the version row) of a fresh database at once."""
    return bool(_CREATION_RACE.search(str(getattr(err, "orig", None) or err)))


class StorageUnavailable(RuntimeError):
    """The storage stayed unreachable past the retry budget (exit code 1)."""


def _is_connection_error(err: BaseException) -> bool:
    """A lost or refused connection (worth retrying), not bad data or a bug."""
    cause = err.__cause__ if isinstance(err, optuna.exceptions.StorageInternalError) else err
    if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline: float | None = None
        delay = 0.5
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                if not _is_connection_error(err):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.retry_seconds
                if now >= deadline:
                    reason = mask_url(str(err.__cause__ or err).splitlines()[0])
                    raise StorageUnavailable(
                        f"storage {mask_url(self.url)} unreachable for {self.retry_seconds:.0f} s: {reason}"
                    ) from None
                if stop_requested():  # Ctrl-C while waiting for the database: stop waiting
                    raise StorageUnavailable(
                        f"storage {mask_url(self.url)} unreachable; stopped retrying on interrupt"
                    ) from None
                log.warning("storage unreachable (%s); retrying in %.1f s", type(err).__name__, delay)
                wake = now + min(delay, deadline - now)
                while not stop_requested() and time.monotonic() < wake:  # Ctrl-C ends the wait
                    time.sleep(min(0.2, max(0.0, wake - time.monotonic())))
                delay = min(delay * 2, 10.0)

    return call


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose calls survive a database that goes away for a while: a lost
    connection is retried with exponential backoff for ``retry_seconds``, then
    :class:`StorageUnavailable`. Dropped pooled connections are replaced by ``pool_pre_ping``."""

    retry_seconds: float = 60.0


# Every storage call goes through the retry: the public API, and the private methods Optuna's
# ``_CachedStorage`` (which wraps every RDB storage a study uses) calls on its backend directly.
for _name in (
    *(n for n in vars(optuna.storages.BaseStorage) if not n.startswith("_")),
    "record_heartbeat",
    "_get_stale_trial_ids",
    "_set_trial_param",
    "_create_new_trial",
    "_get_trials",
    "_get_best_trial_id",
):
    if callable(getattr(optuna.storages.RDBStorage, _name, None)):
        setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))


def create_storage(
    url: str,
    *,
    heartbeat: bool = True,
    interval: int = HEARTBEAT_INTERVAL,
    grace: int = GRACE_PERIOD,
    retry_seconds: float = 60.0,
) -> optuna.storages.RDBStorage:
    """An Optuna ``RDBStorage`` for ``url``, configured for several concurrent workers.

    A database that cannot be reached at all now is a user error (:class:`StorageError`);
    one that goes away later is retried for ``retry_seconds``."""
    parsed = check_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        # sqlite3's timeout is SQLite's busy timeout: wait for the lock, don't fail.
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "varshift"}
    with warnings.catch_warnings():
        # Heartbeats are marked experimental; they are exactly what a long search relies on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs: dict[str, Any] = {}
        if heartbeat:
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
            kwargs = dict(
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=retry,
            )
        for attempt in range(CREATE_ATTEMPTS):
            try:
                storage = RetryingRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
                break
            except sqlalchemy.exc.SQLAlchemyError as err:
                if _lost_creation_race(err) and attempt + 1 < CREATE_ATTEMPTS:
                    # Another worker is creating the tables of this fresh database right now
                    # (optuna#1092); the next attempt finds them and skips creation.
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if not isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
                    raise
                reason = mask_url(str(err.orig if err.orig is not None else err).strip().splitlines()[0])
                raise StorageError(f"cannot connect to storage {mask_url(url)}: {reason}") from None
    storage.retry_seconds = retry_seconds
    if is_sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # pooled connections predate the hook; new ones get it
    return storage
