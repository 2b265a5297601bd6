"""VarianceShiftPruner the Optuna way: ask, set user attrs, report, should_prune; no training."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, Literal

import optuna
import pytest
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial, TrialState

from search.pruners import (
    PRUNER_CHOICES,
    PruneDecision,
    ShiftStatistic,
    VarianceShiftPruner,
    explain_prune,
    make_pruner,
    pruner_name,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
NAN = float("nan")


def _run(
    study: Study,
    accs: Sequence[float],
    shifts: Sequence[float] = (),
    attr: str = "dropout_shift_by_epoch",
    **attrs: Any,
) -> tuple[Trial, int | None]:
    """Report one epoch at a time as the trainer does; return the trial and its prune step."""
    trial = study.ask()
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    for step, acc in enumerate(accs):
        if shifts:
            trial.set_user_attr(attr, list(shifts[: step + 1]))
        trial.report(acc, step)
        if trial.should_prune():
            return trial, step
    study.tell(trial, accs[-1])
    return trial, None


Direction = Literal["minimize", "maximize"]


def _study(pruner: BasePruner, direction: Direction = "maximize", name: str | None = None) -> Study:
    return optuna.create_study(direction=direction, pruner=pruner, study_name=name)


@pytest.mark.parametrize(
    "shifts,threshold,warmup,patience,expected",
    [
        ([1.0, 1.1, 1.2], 1.5, 1, 1, None),  # never high
        ([2.0, 1.2, 1.1], 1.5, 1, 1, None),  # high only during the warm-up
        ([2.0, 1.9, 1.8], 1.5, 1, 1, 1),
        ([2.0, 1.9, 1.8], 1.5, 0, 1, 0),
        ([1.0, 1.2, 1.6, 1.7], 1.5, 1, 1, 2),
        ([1.5, 1.5, 1.5], 1.5, 0, 1, None),  # equal is not above
        ([1.0, NAN, 3.0], 1.5, 1, 1, 2),  # a failed measurement never prunes
        ([1.0, 3.0, 3.0, 3.0], 2.5, 2, 1, 2),
        ([1.0, 1.6, 1.2, 1.7, 1.8], 1.5, 1, 2, 4),  # a dip restarts the patience count
        ([2.0, 2.0, 2.0], 1.5, 1, 3, None),  # patience would reach into the warm-up
        ([2.0, 2.0, 2.0, 2.0], 1.5, 1, 3, 3),
    ],
)
def test_prune_step_follows_shift_curve(
    shifts: list[float], threshold: float, warmup: int, patience: int, expected: int | None
) -> None:
    pruner = VarianceShiftPruner(threshold=threshold, n_warmup_steps=warmup, patience=patience)
    _, step = _run(_study(pruner), [0.5] * len(shifts), shifts)
    assert step == expected


def test_no_intermediate_value_or_no_shift_recorded_does_not_prune() -> None:
    study = _study(VarianceShiftPruner(n_warmup_steps=0))
    trial = study.ask()
    trial.set_user_attr("dropout_shift_by_epoch", [9.0, 9.0])
    assert not trial.should_prune()  # nothing reported yet
    trial.report(0.5, 0)
    trial.report(0.5, 1)
    trial.report(0.5, 2)
    assert not trial.should_prune()  # the list has no entry for epoch 2
    _, step = _run(study, [0.5, 0.5])  # no shift attr at all
    assert step is None
    _, step = _run(study, [0.5], dropout_shift_by_epoch="high")
    assert step is None


def test_reason_names_value_epoch_and_worst_layer() -> None:
    pruner = VarianceShiftPruner(threshold=1.5, n_warmup_steps=1)
    study = _study(pruner)
    layers = {"blocks.0.bn": 1.2, "blocks.1.bn": 2.31, "blocks.2.bn": NAN}
    trial, step = _run(study, [0.3, 0.4, 0.5], [1.0, 1.2, 2.31], dropout_shift=layers)
    assert step == 2
    expected = PruneDecision(
        "variance_shift", "dropout-induced shift 2.31 > 1.50 at epoch 2 (layer blocks.1.bn)"
    )
    assert explain_prune(pruner, study, trial) == expected


def test_reason_mentions_patience() -> None:
    pruner = VarianceShiftPruner(threshold=1.5, n_warmup_steps=1, patience=2)
    study = _study(pruner)
    trial, step = _run(study, [0.5] * 3, [1.0, 1.6, 1.7])
    assert step == 2
    reason = explain_prune(pruner, study, trial).reason
    assert reason == "dropout-induced shift 1.70 > 1.50 at epoch 2 for 2 epochs in a row"


def test_paper_statistic_reads_variance_shift_by_epoch_only() -> None:
    pruner = VarianceShiftPruner(n_warmup_steps=1, statistic="paper")
    assert pruner.statistic is ShiftStatistic.PAPER
    study = _study(pruner)
    _, step = _run(study, [0.5] * 3, [3.0, 3.0, 3.0], attr="dropout_shift_by_epoch")
    assert step is None
    trial, step = _run(study, [0.5] * 3, [3.0, 3.0, 3.0], attr="variance_shift_by_epoch")
    assert step == 1
    assert explain_prune(pruner, study, trial).reason.startswith(
        "variance shift 3.00 > 2.00"
    )  # the default threshold


@pytest.mark.parametrize(
    "alias,expected",
    [
        ("dropout", ShiftStatistic.DROPOUT),
        ("Dropout-Induced", ShiftStatistic.DROPOUT),
        ("paper", ShiftStatistic.PAPER),
        (" variance_shift ", ShiftStatistic.PAPER),
        (ShiftStatistic.PAPER, ShiftStatistic.PAPER),
    ],
)
def test_statistic_aliases(alias: str | ShiftStatistic, expected: ShiftStatistic) -> None:
    assert VarianceShiftPruner(statistic=alias).statistic is expected


def _median_study(direction: Direction = "maximize") -> tuple[Study, VarianceShiftPruner]:
    median = MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    pruner = VarianceShiftPruner(threshold=1.5, n_warmup_steps=1, wrapped_pruner=median)
    study = _study(pruner, direction)
    for _ in range(2):
        _run(study, [0.8, 0.9, 0.95], [1.0, 1.0, 1.0])
    return study, pruner


def test_wrapped_median_prunes_a_bad_curve_with_low_shift() -> None:
    study, pruner = _median_study()
    trial, step = _run(study, [0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    assert step == 0
    decision = explain_prune(pruner, study, trial)
    assert decision.pruned_by == "median"
    assert decision.reason == (
        "median pruner: validation accuracy 0.100 at epoch 0 is below the median of earlier trials"
    )


def test_wrapped_median_reason_follows_direction() -> None:
    study, pruner = _median_study("minimize")
    trial, step = _run(study, [0.99, 0.99, 0.99], [1.0, 1.0, 1.0])
    assert step == 0
    assert "is above the median" in explain_prune(pruner, study, trial).reason


class _CountingPruner(BasePruner):
    def __init__(self) -> None:
        self.calls = 0

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        self.calls += 1
        return True


def test_shift_is_checked_before_wrapped_pruner() -> None:
    wrapped = _CountingPruner()
    pruner = VarianceShiftPruner(n_warmup_steps=0, wrapped_pruner=wrapped)
    study = _study(pruner)
    trial, step = _run(study, [0.5], [3.0])
    assert (step, wrapped.calls) == (0, 0)
    assert explain_prune(pruner, study, trial).pruned_by == "variance_shift"
    trial, step = _run(study, [0.5], [1.0])
    assert (step, wrapped.calls) == (0, 1)
    assert explain_prune(pruner, study, trial) == PruneDecision(
        "_countingpruner", "_countingpruner pruner at epoch 0 (validation accuracy 0.500)"
    )


def _hyperband() -> HyperbandPruner:
    return HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)


def _curve(number: int) -> list[float]:
    return [(number * 7 % 10) / 10 + 0.01 * step for step in range(9)]


def test_wrapped_hyperband_decides_as_bare_hyperband() -> None:
    # The bracket of a trial depends on the study name and trial number only.
    pruner = VarianceShiftPruner(wrapped_pruner=_hyperband())
    bare, wrapped = _study(_hyperband(), name="hb"), _study(pruner, name="hb")
    n_pruned = 0
    for number in range(12):
        bare_trial, bare_step = _run(bare, _curve(number))
        trial, step = _run(wrapped, _curve(number), [1.1] * 9)
        assert step == bare_step
        if step is None:
            continue
        n_pruned += 1
        before = wrapped.trials[trial.number].system_attrs
        assert explain_prune(pruner, wrapped, trial).pruned_by == "hyperband"
        assert wrapped.trials[trial.number].system_attrs == before  # wrote no rung record
        wrapped.tell(trial, state=TrialState.PRUNED)
        bare.tell(bare_trial, state=TrialState.PRUNED)
    assert 0 < n_pruned < 12


def test_prune_works_on_frozen_trial_and_bracket_proxy() -> None:
    pruner = VarianceShiftPruner(threshold=1.5, n_warmup_steps=1)
    study = _study(NopPruner())  # let the trial finish, then judge it afterwards
    _run(study, [0.5, 0.6, 0.7], [1.0, 1.2, 2.0])
    frozen = study.trials[0]
    assert isinstance(frozen, FrozenTrial)
    assert pruner.prune(study, frozen)
    # Hyperband's proxy refuses most Study attributes; the guard needs none of them.
    bracket = _hyperband()._create_bracket_study(study, 0)
    decision = pruner.decide(bracket, frozen)
    assert decision is not None
    assert decision.reason == "dropout-induced shift 2.00 > 1.50 at epoch 2"


def test_explain_prune_names_any_pruner() -> None:
    study = _study(optuna.pruners.ThresholdPruner(lower=0.5))
    trial, step = _run(study, [0.1])
    assert step == 0
    assert explain_prune(study.pruner, study, trial) == PruneDecision(
        "threshold",
        "threshold pruner: validation accuracy 0.100 at epoch 0 is outside the allowed range",
    )


def test_explain_prune_uses_decide_when_a_pruner_has_one() -> None:
    class _Deciding(_CountingPruner):
        def decide(self, study: Study, trial: FrozenTrial) -> PruneDecision:
            return PruneDecision("custom", "because")

    study = _study(_Deciding())
    trial, _ = _run(study, [0.1])
    assert explain_prune(study.pruner, study, trial) == PruneDecision("custom", "because")


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize(
    "make,name",
    [
        (MedianPruner, "median"),
        (lambda: optuna.pruners.PercentilePruner(25.0), "percentile"),
        (_hyperband, "hyperband"),
        (optuna.pruners.SuccessiveHalvingPruner, "successive_halving"),
        (lambda: optuna.pruners.ThresholdPruner(upper=1.0), "threshold"),
        (lambda: optuna.pruners.PatientPruner(None, 1), "patient"),
        (optuna.pruners.WilcoxonPruner, "wilcoxon"),
        (VarianceShiftPruner, "variance_shift"),
        (_CountingPruner, "_countingpruner"),
    ],
)
def test_pruner_name(make: Callable[[], BasePruner], name: str) -> None:
    assert pruner_name(make()) == name


@pytest.mark.parametrize(
    "kwargs,error,shown",
    [
        ({"threshold": 1.0}, ValueError, "threshold=1.0"),
        ({"threshold": 0.5}, ValueError, "threshold=0.5"),
        ({"threshold": math.inf}, ValueError, "threshold=inf"),
        ({"threshold": NAN}, ValueError, "threshold=nan"),
        ({"n_warmup_steps": -1}, ValueError, "n_warmup_steps=-1"),
        ({"patience": 0}, ValueError, "patience=0"),
        ({"statistic": "bogus"}, ValueError, "'bogus'"),
        ({"wrapped_pruner": "median"}, TypeError, "'median'"),
    ],
)
def test_invalid_arguments_fail_eagerly(kwargs: dict[str, Any], error: type[Exception], shown: str) -> None:
    with pytest.raises(error) as info:
        VarianceShiftPruner(**kwargs)
    assert shown in str(info.value)
    if "statistic" in kwargs:
        assert "dropout" in str(info.value) and "paper" in str(info.value)


_SETTINGS: dict[str, Any] = dict(
    threshold=1.8, warmup=2, statistic="paper", curve_warmup=3, n_startup_trials=4, max_epochs=12
)


@pytest.mark.parametrize(
    "spec,outer,inner",
    [
        ("none", NopPruner, None),
        ("median", MedianPruner, None),
        ("hyperband", HyperbandPruner, None),
        ("varshift", VarianceShiftPruner, None),
        ("varshift+median", VarianceShiftPruner, MedianPruner),
        (" VarShift+Hyperband ", VarianceShiftPruner, HyperbandPruner),
    ],
)
def test_make_pruner_wiring(spec: str, outer: type, inner: type | None) -> None:
    pruner = make_pruner(spec, **_SETTINGS)
    assert type(pruner) is outer
    if isinstance(pruner, VarianceShiftPruner):
        assert (pruner._threshold, pruner._n_warmup_steps) == (1.8, 2)
        assert pruner.statistic is ShiftStatistic.PAPER
        assert type(pruner.wrapped_pruner) is inner if inner else pruner.wrapped_pruner is None
    base = pruner.wrapped_pruner if isinstance(pruner, VarianceShiftPruner) else pruner
    if isinstance(base, MedianPruner):
        assert (base._n_startup_trials, base._n_warmup_steps) == (4, 3)
    if isinstance(base, HyperbandPruner):
        assert (base._min_resource, base._max_resource) == (3, 12)


@pytest.mark.parametrize("curve_warmup,max_epochs,expected", [(0, 5, 1), (9, 5, 5), (2, 5, 2)])
def test_make_pruner_hyperband_min_resource(curve_warmup: int, max_epochs: int, expected: int) -> None:
    pruner = make_pruner("hyperband", curve_warmup=curve_warmup, max_epochs=max_epochs)
    assert isinstance(pruner, HyperbandPruner)
    assert pruner._min_resource == expected


@pytest.mark.parametrize(
    "spec", ["median+hyperband", "varshift+", "+median", "foo", "", "varshift+none", "median+"]
)
def test_make_pruner_rejects_bad_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="choose one of") as info:
        make_pruner(spec)
    message = str(info.value)
    assert repr(spec) in message and "\n" not in message
    assert all(choice in message for choice in PRUNER_CHOICES)


def test_docstring_example_runs() -> None:
    doc = VarianceShiftPruner.__doc__ or ""
    example = textwrap.dedent(doc.split(".. testcode::", 1)[1].split("\n    Args:", 1)[0])
    assert "trial.should_prune()" in example and "assert step == 1" in example
    exec(example, {})
