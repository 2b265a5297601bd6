"""BN recalibration: re-estimate running statistics with dropout off and weights frozen.

After training with dropout, a BN layer's running variance describes its input *with*
dropout; at inference dropout is off, the variance differs, and accuracy pays (the
variance shift). Re-estimating the statistics on training data in eval mode, as a
cumulative average over the whole pass (``momentum=None``) rather than the training EMA,
removes that shift. ``torch.optim.swa_utils.update_bn`` is not this: it leaves dropout on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainers.layers import is_batchnorm
from trainers.variance_shift import _inputs, _module_device, measure_variance_shift

log = logging.getLogger(__name__)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable[Any], max_batches: int | None = None, *, dropout: bool = False
) -> int:
    """Reset and re-estimate every BN layer's running mean/var in place; returns the layer count.

    Dropout layers (and everything else) run in eval mode; only BN layers are in train
    mode, so they update their buffers. ``dropout=True`` runs the whole model in train mode
    instead: the statistics training would leave (``search lint`` uses it to stand in for an
    untrained model's). Parameters are never touched; modes and momenta are restored.
    """
    bns = [m for m in model.modules() if is_batchnorm(m) and m.track_running_stats]
    if not bns:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [bn.momentum for bn in bns]
    try:
        model.train(dropout)
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average: every batch weighs the same
            bn.train()
        for x in _inputs(batches, max_batches, _module_device(model)):
            model(x)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for module, mode in modes:
            module.training = mode
    return len(bns)


@dataclass(frozen=True)
class Recalibration:
    """Accuracy and shift before and after recalibrating a trained model."""

    val_acc_before: float
    val_acc_after: float
    shift_before: float
    shift_after: float  # ≈ 1.0 when recalibration removed the shift

    @property
    def helped(self) -> bool:
        return self.val_acc_after > self.val_acc_before


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Eval-mode accuracy; modes are restored."""
    was_training = model.training
    model.eval()
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    model.train(was_training)
    return correct / max(1, len(x))


def recalibrate_and_score(
    model: nn.Module,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    batch_size: int = 256,
) -> Recalibration:
    """Recalibrate ``model`` in place on ``x_train`` and score it on the validation split."""
    val_batches = [x_val[i : i + 512] for i in range(0, len(x_val), 512)]
    before_acc = accuracy(model, x_val, y_val)
    before_shift = max(measure_variance_shift(model, val_batches).values(), default=1.0)
    recalibrate_bn(model, (x_train[i : i + batch_size] for i in range(0, len(x_train), batch_size)))
    after_shift = max(measure_variance_shift(model, val_batches).values(), default=1.0)
    return Recalibration(before_acc, accuracy(model, x_val, y_val), before_shift, after_shift)
