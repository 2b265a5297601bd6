"""A process-wide stop request, set by signal handlers; importable without torch."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_STOP = threading.Event()
_DEFERRED = False


def request_stop() -> None:
    """Ask any running ``train_candidate`` to stop at its next batch (it raises KeyboardInterrupt)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


@contextlib.contextmanager
def interrupts_deferred(deferred: bool = True) -> Iterator[None]:
    """While active, a stop signal only sets the flag; it does not raise KeyboardInterrupt
    wherever the process happens to be.

    ``run_trials`` defers interrupts around Optuna's trial bookkeeping: an exception between
    ``study.ask()`` and the objective, or inside ``tell``, would leave a trial RUNNING. The
    objective turns them back on (``deferred=False``), raising at once if a stop came in
    between, so Optuna marks the trial FAIL."""
    global _DEFERRED
    previous = _DEFERRED
    _DEFERRED = deferred
    try:
        if not deferred and _STOP.is_set():
            raise KeyboardInterrupt
        yield
    finally:
        _DEFERRED = previous


def interrupts_are_deferred() -> bool:
    return _DEFERRED
