"""The objective: one trial = ask the space, train the candidate, record what it measured.

Everything a trial stores is the public record DESIGN.md lists (user attrs and
intermediate values), so optuna-dashboard and ``optuna trials`` show it as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from search.pruners import explain_prune
from spaces import SpaceConfig, suggest_architecture
from trainers.callbacks import EpochReport
from trainers.data import TensorData
from trainers.fit import TrainConfig, TrainResult, train_candidate
from trainers.module import NonFiniteLossError

log = logging.getLogger(__name__)


class CandidateError(RuntimeError):
    """A candidate that cannot be trained (e.g. its forward pass raises); its trial FAILs and the
    study goes on."""


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Each trial's seed follows from the study seed and its number, so it can be re-run."""
    return (study_seed * 1_000_003 + trial_number) % (2**31 - 1)


class TrialRecorder:
    """Writes each epoch's measurements to the trial, then asks the pruner. Returns a stop reason."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.variance_by_epoch: list[float] = []
        self.dropout_by_epoch: list[float] = []

    def __call__(self, report: EpochReport) -> str | None:
        t = self.trial
        self.variance_by_epoch.append(round(report.variance_shift_max, 6))
        self.dropout_by_epoch.append(round(report.dropout_shift_max, 6))
        t.set_user_attr("variance_shift", {k: round(v.shift, 6) for k, v in report.variance_shift.items()})
        t.set_user_attr("variance_shift_max", self.variance_by_epoch[-1])
        t.set_user_attr("dropout_shift", {k: round(v, 6) for k, v in report.dropout_shift.items()})
        t.set_user_attr("variance_shift_by_epoch", self.variance_by_epoch)
        t.set_user_attr("dropout_shift_by_epoch", self.dropout_by_epoch)
        t.report(report.val_acc, report.epoch)
        if not t.should_prune():
            return None
        decision = explain_prune(t.study.pruner, t.study, _frozen(t))
        t.set_user_attr("pruned_by", decision.pruned_by)
        t.set_user_attr("prune_reason", decision.reason)
        return decision.reason


def _frozen(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    # The same snapshot ``Trial.should_prune`` hands the pruner (Optuna caches it locally).
    latest: optuna.trial.FrozenTrial = trial._get_latest_trial()
    return latest


@dataclass(frozen=True)
class Objective:
    """A picklable objective for ``study.optimize``."""

    data: TensorData
    space: SpaceConfig
    train: TrainConfig
    study_seed: int = 0
    # Called on every finished candidate (e.g. BN recalibration); may return a better value.
    on_result: Callable[[optuna.Trial, TrainResult], float | None] | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        spec = suggest_architecture(trial, self.space, self.data.input_shape, self.data.n_classes)
        trial.set_user_attr("architecture", spec.describe())
        config = TrainConfig(**{**self.train.__dict__, "seed": trial_seed(self.study_seed, trial.number)})
        try:
            result = train_candidate(spec, self.data, config, TrialRecorder(trial))
        except NonFiniteLossError as err:
            trial.set_user_attr("pruned_by", "non_finite_loss")
            trial.set_user_attr("prune_reason", str(err))
            raise optuna.TrialPruned(str(err)) from None
        except (RuntimeError, ValueError) as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:1000])
            raise CandidateError(f"trial {trial.number} failed: {err}") from err
        trial.set_user_attr("n_params", result.n_params)
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
        trial.set_user_attr("device", result.device)
        if result.stop_reason is not None:
            raise optuna.TrialPruned(result.stop_reason)
        better = self.on_result(trial, result) if self.on_result is not None else None
        return float(better if better is not None else result.best_val_acc)
