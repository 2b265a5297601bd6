"""Storage faults against the real PostgreSQL (127.0.0.1:5432, database test): connections
killed with pg_terminate_backend are replaced; a database that goes away (a TCP proxy we
stop) is retried for --storage-retry seconds, then the run exits 1 in one line, and every
finished trial is intact."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import psycopg
import pytest

pytestmark = pytest.mark.slow
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TrialState = optuna.trial.TrialState


class Proxy:
    """A TCP forwarder 127.0.0.1:<port> -> PostgreSQL that can be cut off at once."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        while not self.stopped.is_set():
            for key, _ in sel.select(timeout=0.1):
                if key.data is None:
                    client, _ = self.listener.accept()
                    upstream = socket.create_connection(self.target)
                    self.sockets += [client, upstream]
                    sel.register(client, selectors.EVENT_READ, upstream)
                    sel.register(upstream, selectors.EVENT_READ, client)
                    continue
                with contextlib.suppress(OSError):
                    chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if chunk:
                        key.data.sendall(chunk)
                        continue
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(key.fileobj)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _start(tmp_path: Path, url: str, name: str, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "search", "run", "--storage", url, "--study-name", name, "-q", *args]
    env = {k: v for k, v in os.environ.items() if k != "OPTUNA_STORAGE"}
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(name: str, done: int, proc: subprocess.Popen[str], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(KeyError):
            study = optuna.load_study(study_name=name, storage=PG)
            if len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= done:
                return
        time.sleep(0.5)
    raise AssertionError(f"study {name} did not reach {done} finished trials")


@pytest.fixture
def study_name() -> str:
    name = f"faults-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=PG)


def test_lost_database_is_retried_then_exit_1(tmp_path: Path, study_name: str) -> None:
    proxy = Proxy()
    url = f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{proxy.port}/test"
    proc = _start(tmp_path, url, study_name, "--n-trials", "200", "--max-epochs", "2", "--storage-retry", "4")
    try:
        _wait_for(study_name, 2, proc)
        finished = {
            t.number: t.value
            for t in optuna.load_study(study_name=study_name, storage=PG).trials
            if t.state.is_finished()
        }
        cut = time.monotonic()
        proxy.stop()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert time.monotonic() - cut < 60  # bounded: the retry budget plus connect timeouts
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "unreachable for 4 s" in last
    assert "s3cret" not in err and "Traceback" not in err
    after = {t.number: t.value for t in optuna.load_study(study_name=study_name, storage=PG).trials}
    assert all(after[n] == v for n, v in finished.items())  # nothing finished was lost


def test_terminated_connections_are_replaced(tmp_path: Path, study_name: str) -> None:
    proc = _start(tmp_path, PG, study_name, "--n-trials", "6", "--max-epochs", "2")
    try:
        _wait_for(study_name, 1, proc)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'varshift' AND pid <> pg_backend_pid()"
            ).fetchone()
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert killed is not None and killed[0] >= 1
    assert proc.returncode == 0, err
    states = [t.state for t in optuna.load_study(study_name=study_name, storage=PG).trials]
    assert len(states) == 6 and all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
