"""Ctrl-C and SIGTERM: stop cleanly, never leave a trial RUNNING.

The first signal raises KeyboardInterrupt where the process is (Optuna then marks the
running trial FAIL) and sets the trainer's stop flag. Python can swallow an exception
raised inside a finaliser or weakref callback, so the flag is checked again at every
training and validation batch, where raising is safe. Later signals only set the flag,
so they cannot cut short the cleanup of the first.
"""

from __future__ import annotations

import signal
from typing import Any

from trainers.stop import request_stop, stop_requested


def install() -> None:
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def _handle(signum: int, frame: Any) -> None:
    first = not stop_requested()
    request_stop()
    if first:
        raise KeyboardInterrupt
