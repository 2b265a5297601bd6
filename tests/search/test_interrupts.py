"""What a user sees after Ctrl-C: the CLI's one line, no tracebacks from where the interrupt
happened to land (a finaliser, or the trial Optuna marks FAIL)."""

from __future__ import annotations

import gc
import io
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class _SignalsWhileAsking(optuna.samplers.RandomSampler):
    """Delivers Ctrl-C inside ``study.ask()``: the trial exists (RUNNING), the objective has
    not started: the window where an exception would leave the trial RUNNING for good."""

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().before_trial(study, trial)
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_while_optuna_creates_the_trial_fails_it(seen: Seen, tiny_data: Any, tmp_path: Path) -> None:
    from search.objective import Objective
    from spaces import SpaceConfig
    from trainers.fit import TrainConfig

    study = optuna.create_study(direction="maximize", sampler=_SignalsWhileAsking(seed=0))
    objective = Objective(
        data=tiny_data,
        space=SpaceConfig(depth=(1, 1), widths=(8,)),
        train=TrainConfig(max_epochs=1, accelerator="cpu", root_dir=str(tmp_path)),
    )
    with pytest.raises(KeyboardInterrupt), stop.interrupts_deferred():  # as run_trials does
        study.optimize(objective, n_trials=1)
    assert stop.stop_requested()
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


def test_outside_optuna_bookkeeping_an_interrupt_raises_where_it_lands(seen: Seen) -> None:
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert stop.stop_requested()
