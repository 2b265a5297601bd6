"""The objective: one trial = ask the space, train the candidate, record what it measured.

Everything a trial stores is the public record DESIGN.md lists (user attrs and
intermediate values), so optuna-dashboard and ``optuna trials`` show it as is.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, replace

import optuna
from optuna.trial import TrialState

from search.explain import TrialExplainer
from search.pruners import explain_prune
from search.weights import WeightStore
from spaces import SpaceConfig, suggest_architecture
from trainers.callbacks import EpochReport
from trainers.data import TensorData
from trainers.fit import TrainConfig, TrainResult, train_candidate
from trainers.model import save_model
from trainers.module import NonFiniteLossError
from trainers.recalibrate import recalibrate_and_score
from trainers.stop import interrupts_deferred

log = logging.getLogger(__name__)

RECALIBRATE_ABOVE = 1.05  # "auto" recalibrates a finished candidate whose shift exceeds this


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
        t.set_user_attr(
            "variance_shift_layers",  # what the trial note's table shows: [moving_var, real_var, shift]
            {
                k: [round(v.moving_var, 6), round(v.real_var, 6), round(v.shift, 6)]
                for k, v in report.variance_shift.items()
            },
        )
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
    recalibrate: str = "auto"  # "auto": when the final shift exceeds RECALIBRATE_ABOVE
    weights: WeightStore | None = None  # keeps the best trials' weights
    explainer: TrialExplainer | None = None  # writes the trial note and plots once it ends

    def __call__(self, trial: optuna.Trial) -> float:
        # Interrupts raise at once in here (and at once on entry, for one that came while
        # Optuna was creating the trial): Optuna then marks the trial FAIL.
        with interrupts_deferred(False):
            try:
                value = self._evaluate(trial)
            except optuna.TrialPruned:
                self._explain(trial, TrialState.PRUNED, None)
                raise
            except CandidateError:
                self._explain(trial, TrialState.FAIL, None)
                raise
            self._explain(trial, TrialState.COMPLETE, value)
            return value

    def _explain(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        if self.explainer is not None:
            self.explainer.explain(trial, state, value)

    def _evaluate(self, trial: optuna.Trial) -> float:
        spec = suggest_architecture(trial, self.space, self.data.input_shape, self.data.n_classes)
        trial.set_user_attr("architecture", spec.describe())
        # Which process on which machine ran it: workers of one study share its storage.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        config = replace(self.train, seed=trial_seed(self.study_seed, trial.number))
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
        value = max(result.best_val_acc, self._recalibrate(trial, result))
        if self.weights is not None:
            self._keep_weights(trial, result, value)
        return value

    def _recalibrate(self, trial: optuna.Trial, result: TrainResult) -> float:
        """Re-estimate BN statistics of the finished model when its shift says it pays.

        Returns the recalibrated accuracy when it beats the final epoch's, else 0.0; the
        model keeps its recalibrated statistics only in that case."""
        net = result.module.model
        final_shift = result.reports[-1].variance_shift_max if result.reports else 1.0
        wanted = self.recalibrate == "always" or (
            self.recalibrate == "auto" and final_shift > RECALIBRATE_ABOVE
        )
        if not (result.module.spec.has_bn and wanted and self.recalibrate != "never"):
            return 0.0
        saved = {k: v.clone() for k, v in net.state_dict().items()}
        device = next(net.parameters()).device
        d = self.data.to(device)
        rec = recalibrate_and_score(net, d.x_train, d.x_val, d.y_val)
        trial.set_user_attr("val_acc_recalibrated", round(rec.val_acc_after, 6))
        trial.set_user_attr("val_acc_final", round(rec.val_acc_before, 6))
        trial.set_user_attr("variance_shift_recalibrated", round(rec.shift_after, 6))
        if not rec.helped:
            net.load_state_dict(saved)
            return 0.0
        return rec.val_acc_after

    def _keep_weights(self, trial: optuna.Trial, result: TrainResult, value: float) -> None:
        assert self.weights is not None
        try:
            save_model(result.module.model, self.weights.path(trial.number), {"value": f"{value:.6f}"})
            self.weights.prune(trial.study, pending={trial.number: value})
        except OSError as err:  # a full disk must not fail a finished trial
            log.warning("could not save weights of trial %d: %s", trial.number, err)
