"""BN recalibration against the formulas: after it, the paper's statistic is ~1 even for
Dropout -> BN, parameters are untouched, and swa_utils.update_bn (dropout left on) is not it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from spaces import ArchitectureSpec, BlockSpec
from trainers.model import build_model, load_model, save_model
from trainers.recalibrate import accuracy, recalibrate_and_score, recalibrate_bn
from trainers.variance_shift import measure_variance_shift

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shifted_model(q: float) -> tuple[nn.Module, torch.Tensor]:
    """Linear -> Dropout(q) -> BN whose running stats were learned with dropout on."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Dropout(q), nn.BatchNorm1d(64, momentum=None), nn.ReLU())
    x = torch.randn(8192, 32)
    model.train()
    with torch.no_grad():
        for chunk in x.split(256):
            model(chunk)
    return model, x


@pytest.mark.parametrize("q", [0.1, 0.3, 0.5])
def test_recalibration_removes_the_shift(q: float) -> None:
    model, x = _shifted_model(q)
    batches = list(x.split(512))
    before = measure_variance_shift(model, batches)["2"]
    assert before == pytest.approx(1 / (1 - q), rel=0.03)
    params = copy.deepcopy(model.state_dict())
    model.train()
    momentum = model[2].momentum
    recalibrate_bn(model, batches)
    assert measure_variance_shift(model, batches)["2"] == pytest.approx(1.0, abs=0.01)
    assert model.training and model[1].training and model[2].momentum == momentum
    assert torch.equal(model[0].weight, params["0.weight"]) and torch.equal(
        model[2].weight, params["2.weight"]
    )


def test_swa_update_bn_is_not_recalibration() -> None:
    """update_bn leaves dropout on: the shift it leaves is the one we remove."""
    model, x = _shifted_model(0.5)
    batches = list(x.split(512))
    swa = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, swa)
    assert measure_variance_shift(swa, batches)["2"] == pytest.approx(2.0, rel=0.05)
    recalibrate_bn(model, batches)
    assert measure_variance_shift(model, batches)["2"] == pytest.approx(1.0, abs=0.01)


def test_recalibrate_model_without_bn_is_a_no_op() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert recalibrate_bn(model, [torch.randn(8, 4)]) == 0


def test_recalibrate_and_score_reports_before_and_after() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.Dropout(0.5), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 3))
    x = torch.randn(2000, 20)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        model.train()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rec = recalibrate_and_score(model, x, x, y)
    assert rec.shift_before > 1.5 and rec.shift_after == pytest.approx(1.0, abs=0.02)
    assert rec.val_acc_after == accuracy(model, x, y)
    assert rec.helped == (rec.val_acc_after > rec.val_acc_before)


def test_saved_model_reloads_with_its_spec(tmp_path: Path) -> None:
    spec = ArchitectureSpec(
        "cnn", (1, 8, 8), 10, (BlockSpec(8, "gelu", True, "channel", 0.2, ("drop", "bn", "act")),)
    )
    model = build_model(spec).eval()
    save_model(model, tmp_path / "m.safetensors", {"value": "0.9"})
    again = load_model(tmp_path / "m.safetensors").eval()
    assert again.spec == spec
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x), again(x))
