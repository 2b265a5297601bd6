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

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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


def create_storage(
    url: str, *, heartbeat: bool = True, interval: int = HEARTBEAT_INTERVAL, grace: int = GRACE_PERIOD
) -> optuna.storages.RDBStorage:
    """An Optuna ``RDBStorage`` for ``url``, configured for several concurrent workers."""
    parsed = check_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        # sqlite3's timeout is SQLite's busy timeout: wait for the lock, don't fail.
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
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
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    if is_sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # pooled connections predate the hook; new ones get it
    return storage
