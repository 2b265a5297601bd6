"""A process-wide stop request, set by signal handlers; importable without torch."""

from __future__ import annotations

import threading

_STOP = threading.Event()


def request_stop() -> None:
    """Ask any running ``train_candidate`` to stop at its next batch (it raises KeyboardInterrupt)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()
