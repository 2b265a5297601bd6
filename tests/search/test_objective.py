"""The objective in plain in-memory Optuna studies: records, BN recalibration policy,
kept weights and export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from search.objective import CandidateError, Objective, trial_seed
from search.weights import WeightStore, artifact_root
from spaces import SpaceConfig
from trainers.data import TensorData
from trainers.fit import TrainConfig
from trainers.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def space(shifty_space: Callable[[int], SpaceConfig]) -> SpaceConfig:
    return shifty_space(1)  # Dropout before BN: a shift to recalibrate


def _run(
    space: SpaceConfig, data: TensorData, recalibrate: str, tmp_path: Path, n_trials: int = 1
) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    objective = Objective(
        data=data,
        space=space,
        train=TrainConfig(max_epochs=2, batch_size=32, accelerator="cpu", root_dir=str(tmp_path)),
        recalibrate=recalibrate,
        weights=WeightStore(tmp_path, "s", keep=2),
    )
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.mark.parametrize("policy", ["always", "auto"])
def test_recalibration_records_and_value(
    space: SpaceConfig, tiny_data: TensorData, tmp_path: Path, policy: str
) -> None:
    trial = _run(space, tiny_data, policy, tmp_path).trials[0]
    attrs = trial.user_attrs
    assert attrs["variance_shift_recalibrated"] == pytest.approx(1.0, abs=0.05)
    best = max(trial.intermediate_values.values())
    helped = attrs["val_acc_recalibrated"] > attrs["val_acc_final"]
    assert trial.value == pytest.approx(max(best, attrs["val_acc_recalibrated"]) if helped else best)


def test_never_recalibrates(space: SpaceConfig, tiny_data: TensorData, tmp_path: Path) -> None:
    trial = _run(space, tiny_data, "never", tmp_path).trials[0]
    assert "val_acc_recalibrated" not in trial.user_attrs
    assert trial.value == max(trial.intermediate_values.values())


def test_only_the_best_weights_are_kept_and_export(
    space: SpaceConfig, tiny_data: TensorData, tmp_path: Path
) -> None:
    study = _run(space, tiny_data, "never", tmp_path, n_trials=4)
    store = WeightStore(tmp_path, "s", keep=2)
    kept = sorted(p.name for p in store.folder.iterdir())
    ranked = sorted(study.trials, key=lambda t: t.value or 0.0, reverse=True)
    assert len(kept) == 2
    assert {f"trial-{t.number}.safetensors" for t in ranked[:2]} >= set(kept) or ranked[1].value == ranked[
        2
    ].value
    target = store.export(int(kept[0].split("-")[1].split(".")[0]), tmp_path / "out")
    model = load_model(target)
    assert model.spec.blocks[0].arrangement == "Drop-BN-act"
    with pytest.raises(FileNotFoundError, match="best 2 trials"):
        store.export(999, tmp_path / "x.safetensors")


def test_trial_seed_depends_on_study_seed_and_number() -> None:
    seeds = {trial_seed(s, n) for s in range(3) for n in range(50)}
    assert len(seeds) == 150


def test_artifact_root_sits_beside_the_sqlite_file(tmp_path: Path) -> None:
    assert artifact_root(f"sqlite:///{tmp_path / 'a.db'}", None) == tmp_path / "artifacts"
    assert artifact_root("postgresql+psycopg://u@h/db", "/x/y") == Path("/x/y")


def test_out_of_memory_fails_the_trial_with_a_clear_reason_and_the_study_goes_on(
    tiny_data: TensorData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "oom_family.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "class Hungry(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__(); self.fc = nn.Linear(64, n)\n"
        "    def forward(self, x):\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')\n"
        "def net(trial, input_shape, n_classes):\n"
        "    if trial.suggest_categorical('oom.hungry', [True, False]):\n"
        "        return Hungry(n_classes)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    objective = Objective(
        data=tiny_data,
        space=SpaceConfig(plugin="oom_family:net"),
        train=TrainConfig(max_epochs=1, batch_size=32, accelerator="cpu", root_dir=str(tmp_path)),
    )
    study.optimize(objective, n_trials=6, catch=(CandidateError,))
    states = {t.params["oom.hungry"]: t for t in study.trials}
    assert set(states) == {True, False}
    for trial in study.trials:
        if trial.params["oom.hungry"]:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert trial.user_attrs["error"].startswith("OutOfMemoryError: CUDA out of memory")
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
