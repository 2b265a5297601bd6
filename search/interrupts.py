"""Ctrl-C and SIGTERM: stop cleanly, never leave a trial RUNNING.

The first signal raises KeyboardInterrupt where the process is (Optuna then marks the
running trial FAIL) and sets the trainer's stop flag. Python can swallow an exception
raised inside a finaliser or weakref callback, so the flag is checked again at every
training and validation batch, where raising is safe. Later signals only set the flag,
so they cannot cut short the cleanup of the first.

What the user sees is the one line the CLI prints: an interrupt that Python swallowed in a
finaliser is not reported as "Exception ignored in ...", and Optuna's "Trial N failed"
warning for the interrupted trial comes without its traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import optuna  # noqa: F401  # sets up the handler of Optuna's logger that install() filters

from trainers.stop import interrupts_are_deferred, request_stop, stop_requested


def install() -> None:
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    if sys.unraisablehook is not _unraisable:
        _previous_hook[:] = [sys.unraisablehook]
        sys.unraisablehook = _unraisable
    # Optuna logs through a handler on its library root logger ("optuna"); records from its
    # child loggers pass that handler's filters, not the parent logger's.
    for handler in logging.getLogger("optuna").handlers:
        if _no_interrupt_traceback not in handler.filters:
            handler.addFilter(_no_interrupt_traceback)


_previous_hook: list[Any] = []


def _unraisable(info: Any) -> None:
    """An interrupt raised inside a finaliser or weakref callback, where Python cannot raise:
    the stop flag is set and stops the trial at its next batch, so there is nothing to report."""
    if isinstance(info.exc_value, KeyboardInterrupt) and stop_requested():
        return
    (_previous_hook[0] if _previous_hook else sys.__unraisablehook__)(info)


def _no_interrupt_traceback(record: logging.LogRecord) -> bool:
    """Keep Optuna's "Trial N failed ... KeyboardInterrupt()" line, drop its traceback."""
    if (
        record.exc_info
        and record.exc_info[0] is not None
        and issubclass(record.exc_info[0], KeyboardInterrupt)
    ):
        record.exc_info = None
        record.exc_text = None
    return True


def _handle(signum: int, frame: Any) -> None:
    first = not stop_requested()
    request_stop()
    if first and not interrupts_are_deferred():
        raise KeyboardInterrupt
