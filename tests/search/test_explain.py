"""Notes and plots written when a trial ends, through the real objective on a tiny data set;
a broken artifact store or storage never fails a trial or a run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna_dashboard import get_note

from search.explain import STUDY_FIGURES, StudyNotes, TrialExplainer
from search.objective import Objective
from spaces import SpaceConfig
from trainers.data import TensorData
from trainers.fit import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def space(shifty_space: Callable[[int], SpaceConfig]) -> SpaceConfig:
    return shifty_space(2)  # two BN layers with dropout before each: a shift to show


def _run(
    space: SpaceConfig,
    data: TensorData,
    tmp_path: Path,
    store: Path,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner or optuna.pruners.NopPruner())
    objective = Objective(
        data=data,
        space=space,
        train=TrainConfig(max_epochs=2, batch_size=32, accelerator="cpu", root_dir=str(tmp_path)),
        recalibrate="never",
        explainer=TrialExplainer(store),
    )
    study.optimize(objective, n_trials=1)
    return study


def _trial_note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    return get_note(optuna.Trial(study, trial._trial_id))


def test_a_finished_trial_gets_its_note_and_two_plots(
    space: SpaceConfig, tiny_data: TensorData, tmp_path: Path
) -> None:
    study = _run(space, tiny_data, tmp_path, tmp_path / "store")
    trial = study.trials[0]
    layers = trial.user_attrs["variance_shift_layers"]
    assert set(layers) == set(trial.user_attrs["variance_shift"]) == {"blocks.0.bn", "blocks.1.bn"}
    for name, (moving, real, shift) in layers.items():
        assert shift == pytest.approx(max(moving / real, real / moving), rel=1e-3)
        assert shift == trial.user_attrs["variance_shift"][name]
    note = _trial_note(study, trial)
    assert trial.user_attrs["architecture"] in note and "| `blocks.1.bn` |" in note
    assert "Dropout feeds a later BN" in note
    metas = get_all_artifact_meta(trial, storage=study._storage)
    assert sorted(m.filename for m in metas) == ["trial-0-epochs.png", "trial-0-layer-shift.png"]
    for meta in metas:
        assert (tmp_path / "store" / meta.artifact_id).read_bytes().startswith(b"\x89PNG")
        assert meta.mimetype == "image/png"


def test_a_pruned_trial_says_why(space: SpaceConfig, tiny_data: TensorData, tmp_path: Path) -> None:
    study = _run(space, tiny_data, tmp_path, tmp_path / "store", optuna.pruners.ThresholdPruner(lower=1.1))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    note = _trial_note(study, trial)
    assert f"pruned by `{trial.user_attrs['pruned_by']}` after 1 epoch(s)" in note
    assert trial.user_attrs["prune_reason"] in note


def test_a_broken_artifact_store_never_fails_the_trial(
    space: SpaceConfig, tiny_data: TensorData, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store should be")
    with caplog.at_level(logging.WARNING, logger="search.explain"):
        study = _run(space, tiny_data, tmp_path, blocked)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None
    assert "could not store the plots of trial 0" in caplog.text
    assert "| `blocks.0.bn` |" in _trial_note(study, trial)  # the note made it anyway


def test_study_note_is_throttled_and_failures_are_logged(
    space: SpaceConfig, tiny_data: TensorData, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = _run(space, tiny_data, tmp_path, tmp_path / "store")
    notes = StudyNotes(interval=3600.0)
    assert notes.refresh(study) and not notes.refresh(study) and notes.refresh(study, force=True)
    assert "Best accuracy per arrangement" in get_note(study)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    figures = {k.split(":")[2] for k in attrs if k.startswith("dashboard:plot_data:")}
    assert figures == set(STUDY_FIGURES)

    def broken(*args: object) -> None:
        raise OSError("database is gone")

    study._storage.set_study_system_attr = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="search.explain"):
        assert not notes.refresh(study, force=True)
    assert "could not write the note of study" in caplog.text and "database is gone" in caplog.text
