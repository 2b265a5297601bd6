"""Tiny CPU runs of ``train_candidate``: reports per epoch, the shift statistics, stopping,
reproducibility, divergence and a clean working directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from spaces import ArchitectureSpec, BlockSpec
from trainers.callbacks import EpochReport
from trainers.data import TensorData
from trainers.fit import TrainConfig, TrainResult, train_candidate
from trainers.model import count_parameters
from trainers.module import NonFiniteLossError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPOCHS = 3


def _spec(*blocks: BlockSpec, lr: float = 1e-2, **kwargs: object) -> ArchitectureSpec:
    return ArchitectureSpec("mlp", (1, 8, 8), 10, blocks, lr=lr, **kwargs)  # type: ignore[arg-type]


BN_ACT_DROP = BlockSpec(16, "relu", True, "bernoulli", 0.5, ("bn", "act", "drop"))
DROP_BN_ACT = BlockSpec(16, "relu", True, "bernoulli", 0.5, ("drop", "bn", "act"))
NO_BN = BlockSpec(16, "relu", False, "bernoulli", 0.5)


@pytest.fixture
def config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(max_epochs=EPOCHS, batch_size=32, seed=0, accelerator="cpu", root_dir=str(tmp_path))


def _train(spec: ArchitectureSpec, data: TensorData, config: TrainConfig, **kwargs: object) -> TrainResult:
    return train_candidate(spec, data, config, **kwargs)  # type: ignore[arg-type]


def test_one_report_per_epoch(tiny_data: TensorData, config: TrainConfig) -> None:
    seen: list[EpochReport] = []

    def reporter(report: EpochReport) -> None:
        seen.append(report)

    result = _train(_spec(BN_ACT_DROP, BN_ACT_DROP), tiny_data, config, reporter=reporter)
    assert [r.epoch for r in result.reports] == list(range(EPOCHS))
    assert seen == result.reports
    assert all(0.0 <= r.val_acc <= 1.0 for r in result.reports)
    assert [r.val_acc for r in result.reports] == result.module.val_acc_history
    assert result.epochs == EPOCHS
    assert result.best_val_acc == max(r.val_acc for r in result.reports)
    assert result.best_val_acc > 0.2  # learnable data: well above chance (0.1)
    assert result.stop_reason is None
    assert result.device == "cpu"
    assert result.train_seconds > 0
    assert result.n_params == count_parameters(result.module.model)
    for report in result.reports:
        assert set(report.variance_shift) == {"blocks.0.bn", "blocks.1.bn"}
        assert all(s.shift >= 1.0 for s in report.variance_shift.values())
        assert report.variance_shift_max == max(s.shift for s in report.variance_shift.values())


def test_no_bn_means_no_shift(tiny_data: TensorData, config: TrainConfig) -> None:
    result = _train(_spec(NO_BN, NO_BN), tiny_data, config)
    assert len(result.reports) == EPOCHS
    for report in result.reports:
        assert report.variance_shift == {}
        assert report.dropout_shift == {}
        assert report.variance_shift_max == 1.0
        assert report.dropout_shift_max == 1.0


def test_dropout_before_bn_shifts_and_dropout_after_the_last_bn_does_not(
    tiny_data: TensorData, config: TrainConfig
) -> None:
    harmful = _train(_spec(DROP_BN_ACT), tiny_data, config)
    remedy = _train(_spec(BN_ACT_DROP), tiny_data, config)
    # DESIGN.md: dropout right before BN gives 1/p + (c^2/v)(1/p - 1) >= 2 at q = 0.5.
    for report in harmful.reports:
        assert set(report.dropout_shift) == {"blocks.0.bn"}
        assert report.dropout_shift_max > 1.5
    # With the only dropout after the only BN, BN's input is the same with dropout on or off.
    for report in remedy.reports:
        assert report.dropout_shift == {"blocks.0.bn": 1.0}


@pytest.mark.parametrize("stop_at", [0, 1])
def test_reporter_reason_stops_after_that_epoch(
    tiny_data: TensorData, config: TrainConfig, stop_at: int
) -> None:
    calls: list[int] = []

    def reporter(report: EpochReport) -> str | None:
        calls.append(report.epoch)
        return f"shift too high at epoch {report.epoch}" if report.epoch == stop_at else None

    result = _train(
        _spec(DROP_BN_ACT), tiny_data, dataclasses.replace(config, max_epochs=4), reporter=reporter
    )
    assert calls == list(range(stop_at + 1))
    assert result.epochs == stop_at + 1
    assert result.stop_reason == f"shift too high at epoch {stop_at}"
    assert len(result.module.val_acc_history) == stop_at + 1


def test_same_seed_same_trial(tiny_data: TensorData, config: TrainConfig) -> None:
    spec = _spec(DROP_BN_ACT, BlockSpec(8, "tanh", True, "gaussian", 0.3, ("act", "drop", "bn")))
    first = _train(spec, tiny_data, config)
    torch.manual_seed(999)  # whatever ran before must not matter
    torch.rand(10)
    second = _train(spec, tiny_data, config)
    other = _train(spec, tiny_data, dataclasses.replace(config, seed=1))
    assert [r.val_acc for r in first.reports] == [r.val_acc for r in second.reports]
    assert [r.variance_shift for r in first.reports] == [r.variance_shift for r in second.reports]
    assert [r.dropout_shift for r in first.reports] == [r.dropout_shift for r in second.reports]
    weights = [m.module.model.state_dict() for m in (first, second, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_diverging_lr_raises_non_finite_loss(tiny_data: TensorData, config: TrainConfig) -> None:
    reports: list[EpochReport] = []
    with pytest.raises(NonFiniteLossError, match="epoch 0") as info:
        _train(_spec(BN_ACT_DROP, lr=1e30), tiny_data, config, reporter=reports.append)
    assert info.value.epoch == 0
    assert reports == []  # a diverged epoch is never reported


def test_nan_input_raises_non_finite_loss(tiny_data: TensorData, config: TrainConfig) -> None:
    x_train = tiny_data.x_train.clone()
    x_train[3, 0, 2, 2] = float("nan")
    data = dataclasses.replace(tiny_data, x_train=x_train)
    with pytest.raises(NonFiniteLossError) as info:
        _train(_spec(NO_BN), data, config)
    assert info.value.epoch == 0


def test_nothing_is_written_to_the_working_directory(
    tiny_data: TensorData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(max_epochs=2, batch_size=32, accelerator="cpu")  # root_dir: the default
    result = train_candidate(
        _spec(DROP_BN_ACT), tiny_data, config, reporter=lambda r: "stop" if r.epoch else None
    )
    assert result.epochs == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("steps_per_call", [1, 3, 100])
def test_minibatches_per_call_do_not_change_training(
    tiny_data: TensorData, config: TrainConfig, steps_per_call: int
) -> None:
    """Several minibatches per Lightning batch is a speed-up only: the optimizer steps, their
    order and their data are those of one minibatch per batch (compared bit for bit)."""
    spec = _spec(BN_ACT_DROP, DROP_BN_ACT)
    one = _train(spec, tiny_data, dataclasses.replace(config, steps_per_call=1))
    many = _train(spec, tiny_data, dataclasses.replace(config, steps_per_call=steps_per_call))
    assert [r.val_acc for r in many.reports] == [r.val_acc for r in one.reports]
    for (name, a), (_, b) in zip(
        one.module.model.state_dict().items(), many.module.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("probe_batches", [1, 2, 5])
def test_the_dropout_probe_reuses_the_validation_pass_and_measures_the_same(
    config: TrainConfig, probe_batches: int
) -> None:
    """The validation pass is the probe's dropout-off pass; the recorded dropout shift must
    equal a standalone measurement (both passes) on the final weights and the same batches.
    1500 validation samples make 3 batches of 512: the probe takes the first, the first two,
    or all (fewer batches than it asks for)."""
    import numpy as np

    from trainers.data import TensorBatches, split_arrays
    from trainers.variance_shift import measure_dropout_shift

    rng = np.random.default_rng(0)
    y = np.arange(1800) % 10
    x = (rng.normal(size=(1800, 64)) + (np.arange(64)[None] % 10 == y[:, None])).astype(np.float32)
    data = split_arrays("probe", x.reshape(-1, 1, 8, 8), y, val_fraction=1500 / 1800)
    cfg = dataclasses.replace(config, max_epochs=2, dropout_batches=probe_batches)
    spec = _spec(DROP_BN_ACT, BlockSpec(16, "tanh", True, "gaussian", 0.3, ("act", "drop", "bn")))
    result = _train(spec, data, cfg)
    batches = TensorBatches(data.x_val, data.y_val, 512)
    standalone = measure_dropout_shift(result.module.model, batches, max_batches=probe_batches)
    recorded = result.reports[-1].dropout_shift
    assert set(recorded) == {"blocks.0.bn", "blocks.1.bn"}
    assert recorded == pytest.approx(standalone, rel=1e-9)
    # On other batches the estimate differs: the test would see the probe reading the wrong ones.
    if probe_batches == 1:
        other = measure_dropout_shift(result.module.model, batches, max_batches=3)
        assert other != pytest.approx(standalone, rel=1e-9)
