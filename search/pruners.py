"""Prune candidates whose measured variance shift stays high, alone or ahead of another pruner."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, Trial

log = logging.getLogger(__name__)

__all__ = [
    "PRUNER_CHOICES",
    "PruneDecision",
    "PrunedBy",
    "ShiftStatistic",
    "VarianceShiftPruner",
    "explain_prune",
    "make_pruner",
    "pruner_name",
]


class ShiftStatistic(Enum):
    """Which per-epoch shift curve the guard reads from the trial's user attrs."""

    DROPOUT = "dropout"  # dropout on vs off at the same weights: isolates dropout (default)
    PAPER = "paper"  # running vs real variance (Li et al. 2019): includes BN running-stat lag

    @classmethod
    def parse(cls, value: str | ShiftStatistic) -> ShiftStatistic:
        if isinstance(value, ShiftStatistic):
            return value
        key = str(value).strip().lower().replace("-", "_")
        if key not in _STATISTIC_ALIASES:
            choices = ", ".join(sorted(_STATISTIC_ALIASES))
            raise ValueError(f"statistic must be one of {choices} but got {value=}.")
        return _STATISTIC_ALIASES[key]


_STATISTIC_ALIASES = {
    **dict.fromkeys(("dropout", "dropout_induced", "dropout_shift"), ShiftStatistic.DROPOUT),
    **dict.fromkeys(("paper", "variance", "variance_shift"), ShiftStatistic.PAPER),
}
# statistic -> (per-epoch curve attr, per-layer latest-epoch attr, words for the reason)
_READS = {
    ShiftStatistic.DROPOUT: ("dropout_shift_by_epoch", "dropout_shift", "dropout-induced shift"),
    ShiftStatistic.PAPER: ("variance_shift_by_epoch", "variance_shift", "variance shift"),
}


class PrunedBy(Enum):
    """Short names stored in the ``pruned_by`` user attr."""

    VARIANCE_SHIFT = "variance_shift"
    MEDIAN = "median"
    PERCENTILE = "percentile"
    HYPERBAND = "hyperband"
    SUCCESSIVE_HALVING = "successive_halving"
    THRESHOLD = "threshold"
    PATIENT = "patient"
    WILCOXON = "wilcoxon"
    NOP = "nop"


@dataclass(frozen=True)
class PruneDecision:
    """Who pruned a trial and why, as stored in ``pruned_by`` / ``prune_reason``."""

    pruned_by: str  # a PrunedBy value, or a foreign pruner's class name lowercased
    reason: str  # one sentence for people, e.g. shown in optuna-dashboard


class VarianceShiftPruner(BasePruner):
    """Prune a trial whose variance shift stays above ``threshold`` after a warm-up.

    A BatchNorm layer behind Dropout learns a running variance that differs from the one it
    sees at inference (Li et al., CVPR 2019). The trainer measures that shift every
    validation epoch and records it in the trial's user attrs; this pruner reads only those
    attrs and the intermediate values, never the storage, so it is cheap, works on a
    :class:`~optuna.trial.FrozenTrial` and behind Hyperband's bracket proxy.

    The default ``statistic="dropout"`` reads ``dropout_shift_by_epoch``: the ratio between a
    BN layer's input variance with dropout on and off at the same weights. The paper's own
    statistic (``"paper"``, ``variance_shift_by_epoch``) early in training mostly measures
    BN running statistics that have not caught up yet, so a threshold on it can kill the best
    candidate; the dropout-induced one isolates what dropout does (see DESIGN.md).

    The shift is checked first and ``wrapped_pruner`` is asked only when the shift does not
    prune, so the guard is cheap and ``pruned_by`` names the shift whenever both would prune.
    Wrapped here, Hyperband still prunes bracket by bracket, but samplers see all trials:
    Optuna filters them by bracket only when the study's pruner *is* a HyperbandPruner.

    Example:
        .. testcode::

            import optuna
            from search.pruners import VarianceShiftPruner, explain_prune

            pruner = VarianceShiftPruner(threshold=1.5, n_warmup_steps=1)
            study = optuna.create_study(direction="maximize", pruner=pruner)
            trial = study.ask()
            accuracies, shifts = [0.52, 0.61, 0.64], [2.4, 1.9, 1.8]
            for step, acc in enumerate(accuracies):
                trial.set_user_attr("dropout_shift_by_epoch", shifts[: step + 1])
                trial.report(acc, step)
                if trial.should_prune():
                    decision = explain_prune(study.pruner, study, trial)
                    trial.set_user_attr("prune_reason", decision.reason)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            assert step == 1  # epoch 0 is warm-up; 1.9 > 1.5 at epoch 1
            assert decision.pruned_by == "variance_shift"

    Args:
        threshold: Prune above this shift; must be finite and above 1.0 (1.0 means none).
        n_warmup_steps: Epochs (steps) below this are never judged on the shift.
        wrapped_pruner: Consulted when the shift does not prune, e.g. ``MedianPruner()``.
        statistic: ``"dropout"`` (default) or ``"paper"``, or an alias of either.
        patience: The shift must exceed ``threshold`` for this many recorded epochs in a row.
    """

    def __init__(
        self,
        threshold: float = 2.0,
        n_warmup_steps: int = 1,
        wrapped_pruner: BasePruner | None = None,
        statistic: str | ShiftStatistic = "dropout",
        patience: int = 1,
    ) -> None:
        if not (math.isfinite(threshold) and threshold > 1.0):
            raise ValueError(f"threshold must be finite and above 1.0 but got {threshold=}.")
        if n_warmup_steps < 0:
            raise ValueError(f"n_warmup_steps cannot be negative but got {n_warmup_steps=}.")
        if patience < 1:
            raise ValueError(f"patience must be at least 1 but got {patience=}.")
        if wrapped_pruner is not None and not isinstance(wrapped_pruner, BasePruner):
            raise TypeError(f"wrapped_pruner must be a BasePruner or None but got {wrapped_pruner=}.")
        self._threshold = float(threshold)
        self._n_warmup_steps = n_warmup_steps
        self._wrapped_pruner = wrapped_pruner
        self._statistic = ShiftStatistic.parse(statistic)
        self._patience = patience

    @property
    def statistic(self) -> ShiftStatistic:
        return self._statistic

    @property
    def wrapped_pruner(self) -> BasePruner | None:
        return self._wrapped_pruner

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        return self.decide(study, trial) is not None

    def decide(self, study: Study, trial: FrozenTrial) -> PruneDecision | None:
        """Return why ``trial`` should be pruned now, or ``None`` to let it go on."""
        decision = self.check_shift(trial)
        if decision is not None or self._wrapped_pruner is None:
            return decision
        if not self._wrapped_pruner.prune(study, trial):
            return None
        decision = _describe(self._wrapped_pruner, study, trial)
        log.debug("trial %d pruned: %s", trial.number, decision.reason)
        return decision

    def check_shift(self, trial: FrozenTrial) -> PruneDecision | None:
        """The shift guard alone: reads the trial's user attrs and intermediate values only."""
        step = trial.last_step
        if step is None:
            return None
        curve = trial.user_attrs.get(_READS[self._statistic][0])
        if not isinstance(curve, (list, tuple)):
            return None
        # The last `patience` reported epochs, up to and including the latest one.
        steps = sorted(s for s in trial.intermediate_values if s <= step)[-self._patience :]
        if len(steps) < self._patience or steps[0] < self._n_warmup_steps:
            return None
        if steps[-1] >= len(curve):
            return None  # the shift for this epoch was not recorded
        values = [_as_float(curve[s]) for s in steps]
        if not all(v > self._threshold for v in values):  # NaN never prunes
            return None
        reason = self._shift_reason(trial, values[-1])
        log.debug("trial %d pruned: %s", trial.number, reason)
        return PruneDecision(PrunedBy.VARIANCE_SHIFT.value, reason)

    def _shift_reason(self, trial: FrozenTrial, value: float) -> str:
        _, layer_attr, words = _READS[self._statistic]
        reason = f"{words} {value:.2f} > {self._threshold:.2f} at epoch {trial.last_step}"
        if self._patience > 1:
            reason += f" for {self._patience} epochs in a row"
        layer = _worst_layer(trial.user_attrs.get(layer_attr))
        return f"{reason} (layer {layer})" if layer is not None else reason


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # a null stored for a failed measurement


def _worst_layer(per_layer: Any) -> str | None:
    if not isinstance(per_layer, dict):
        return None
    finite = {name: _as_float(v) for name, v in per_layer.items() if math.isfinite(_as_float(v))}
    return max(finite, key=finite.__getitem__) if finite else None


# Short name and what its "yes" means, completing "<name> pruner: validation accuracy X at epoch N".
_KNOWN: dict[type[BasePruner], tuple[PrunedBy, str]] = {
    VarianceShiftPruner: (PrunedBy.VARIANCE_SHIFT, ""),
    optuna.pruners.MedianPruner: (PrunedBy.MEDIAN, "is {worse} the median of earlier trials"),
    optuna.pruners.PercentilePruner: (PrunedBy.PERCENTILE, "is in the worst percentile of trials"),
    optuna.pruners.HyperbandPruner: (PrunedBy.HYPERBAND, "was not promoted in its bracket"),
    optuna.pruners.SuccessiveHalvingPruner: (PrunedBy.SUCCESSIVE_HALVING, "was not promoted"),
    optuna.pruners.ThresholdPruner: (PrunedBy.THRESHOLD, "is outside the allowed range"),
    optuna.pruners.PatientPruner: (PrunedBy.PATIENT, "has stopped improving"),
    optuna.pruners.WilcoxonPruner: (PrunedBy.WILCOXON, "is significantly worse than the best"),
    optuna.pruners.NopPruner: (PrunedBy.NOP, ""),
}


def pruner_name(pruner: BasePruner) -> str:
    """Short name of a pruner's exact class, e.g. ``"median"``, else the class name lowercased."""
    known = _KNOWN.get(type(pruner))
    return known[0].value if known is not None else type(pruner).__name__.lower()


def _describe(pruner: BasePruner, study: Study, trial: FrozenTrial) -> PruneDecision:
    """Word the decision of a pruner that has already said yes (it is not asked again)."""
    name, step = pruner_name(pruner), trial.last_step
    value = trial.intermediate_values.get(step, math.nan) if step is not None else math.nan
    clause = _KNOWN.get(type(pruner), (None, ""))[1]
    if not clause:
        return PruneDecision(name, f"{name} pruner at epoch {step} (validation accuracy {value:.3f})")
    clause = clause.format(worse="above" if study.direction == StudyDirection.MINIMIZE else "below")
    return PruneDecision(name, f"{name} pruner: validation accuracy {value:.3f} at epoch {step} {clause}")


def explain_prune(pruner: BasePruner, study: Study, trial: FrozenTrial | Trial) -> PruneDecision:
    """Who pruned ``trial`` and why; call it after ``trial.should_prune()`` returned True.

    Stateful pruners (SuccessiveHalving, Hyperband) write rung records while deciding, so
    they are not asked again: a VarianceShiftPruner re-checks only its pure shift guard and
    otherwise names its wrapped pruner; any other pruner is named as it is.
    """
    if isinstance(trial, Trial):
        trial = trial._get_latest_trial()  # the same view should_prune() gave the pruner
    if isinstance(pruner, VarianceShiftPruner):
        decision = pruner.check_shift(trial)
        if decision is not None or pruner.wrapped_pruner is None:
            return decision or _describe(pruner, study, trial)
        return _describe(pruner.wrapped_pruner, study, trial)
    decide = getattr(pruner, "decide", None)
    decision = decide(study, trial) if callable(decide) else None
    return decision if isinstance(decision, PruneDecision) else _describe(pruner, study, trial)


_BASES = ("median", "hyperband")
PRUNER_CHOICES = ("varshift", *_BASES, "none", *(f"varshift+{base}" for base in _BASES))


def make_pruner(
    spec: str,
    *,
    threshold: float = 2.0,
    warmup: int = 1,
    statistic: str | ShiftStatistic = "dropout",
    curve_warmup: int = 3,
    n_startup_trials: int = 5,
    max_epochs: int = 10,
    patience: int = 1,
) -> BasePruner:
    """Build the pruner named by the CLI's ``--pruner`` value (one of ``PRUNER_CHOICES``)."""
    key = spec.strip().lower()
    if key not in PRUNER_CHOICES:
        raise ValueError(f"unknown pruner {spec!r}; choose one of {', '.join(PRUNER_CHOICES)}.")
    if key == "none":
        return optuna.pruners.NopPruner()
    guard, _, base = key.rpartition("+") if "+" in key else (key, "", "")
    if guard != "varshift":  # a plain Optuna pruner
        return _make_base(guard, curve_warmup, n_startup_trials, max_epochs)
    wrapped = _make_base(base, curve_warmup, n_startup_trials, max_epochs) if base else None
    return VarianceShiftPruner(threshold, warmup, wrapped, statistic, patience)


def _make_base(name: str, curve_warmup: int, n_startup_trials: int, max_epochs: int) -> BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=curve_warmup)
    if max_epochs < 1:
        raise ValueError(f"hyperband needs max_epochs >= 1 but got {max_epochs=}.")
    # A warm-up longer than the run would leave Hyperband with no bracket, pruning nothing.
    min_resource = min(max(1, curve_warmup), max_epochs)
    return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_epochs)
