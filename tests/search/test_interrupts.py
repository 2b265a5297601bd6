"""What a user sees after Ctrl-C: the CLI's one line, no tracebacks from where the interrupt
happened to land (a finaliser, or the trial Optuna marks FAIL)."""

from __future__ import annotations

import gc
import io
import logging
import signal
import sys
from collections.abc import Iterator

import optuna
import pytest

from search import interrupts
from trainers import stop


class Seen:
    """What reaches the user: unraisable errors passed on, and Optuna's log lines."""

    def __init__(self) -> None:
        self.unraisable: list[BaseException | None] = []
        self.log = io.StringIO()


@pytest.fixture
def seen() -> Iterator[Seen]:
    """``interrupts.install()`` over a recording unraisable hook and a recording Optuna handler."""
    out = Seen()
    signals = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    hook = sys.unraisablehook
    sys.unraisablehook = lambda info: out.unraisable.append(info.exc_value)
    handler = logging.StreamHandler(out.log)
    logging.getLogger("optuna").addHandler(handler)
    interrupts.install()
    yield out
    signal.signal(signal.SIGINT, signals[0])
    signal.signal(signal.SIGTERM, signals[1])
    sys.unraisablehook = hook
    logging.getLogger("optuna").removeHandler(handler)
    for h in logging.getLogger("optuna").handlers:
        h.removeFilter(interrupts._no_interrupt_traceback)
    stop._STOP.clear()


class _RaisesWhenCollected:
    def __del__(self) -> None:
        raise KeyboardInterrupt  # as the signal handler does when the signal lands here


def test_an_interrupt_swallowed_in_a_finaliser_is_not_reported(seen: Seen) -> None:
    stop.request_stop()
    _RaisesWhenCollected()
    gc.collect()
    assert seen.unraisable == []


def test_other_unraisable_errors_are_still_reported(seen: Seen) -> None:
    class Broken:
        def __del__(self) -> None:
            raise ValueError("a real bug")

    stop.request_stop()
    Broken()
    gc.collect()
    assert [type(e) for e in seen.unraisable] == [ValueError]


def test_an_interrupt_before_any_signal_is_still_reported(seen: Seen) -> None:
    _RaisesWhenCollected()  # no stop was requested: this is not ours to hide
    gc.collect()
    assert [type(e) for e in seen.unraisable] == [KeyboardInterrupt]


def test_the_interrupted_trial_is_logged_in_one_line(seen: Seen) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1)
    err = seen.log.getvalue()
    assert "Trial 0 failed" in err and "KeyboardInterrupt" in err
    assert "Traceback" not in err
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
