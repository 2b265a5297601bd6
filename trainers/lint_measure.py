"""The measured half of ``search lint``: the real variance shift per BN layer on a data set,
and validation accuracy before and after BN recalibration.

Everything runs on a copy, so the caller's model keeps its statistics. A model whose BN
layers never saw a batch (a freshly built class, no ``--weights``) has running variances
of 1.0 that describe nothing; its statistics are first estimated on the training split
with dropout on, at the model's weights, which is what training would have left there.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from trainers.layers import is_batchnorm
from trainers.lint_graph import LintError, _one_line
from trainers.recalibrate import accuracy, recalibrate_bn
from trainers.variance_shift import LayerShift, _measuring, _module_device, measure_variance_stats

if TYPE_CHECKING:
    from trainers.data import TensorData  # imports Lightning: only the CLI's --dataset pays for it

log = logging.getLogger(__name__)

_BATCH = 256
_MAX_BATCHES = 64  # 16k samples: plenty for a variance, bounded time on big npz files


@dataclass(frozen=True)
class Measured:
    layers: dict[str, LayerShift]  # BN module path -> the paper statistic
    accuracy: tuple[float, float] | None  # (before, after BN recalibration) on the val split
    notes: list[str] = field(default_factory=list)


def measure_model(model: nn.Module, data: TensorData) -> Measured:
    """Shift per BN layer on ``data``'s validation split; accuracy where the outputs are classes."""
    model = copy.deepcopy(model)
    data = data.to(_module_device(model))
    out = probe(model, data)
    notes: list[str] = []
    if _untrained_bn(model):
        fit_bn_with_dropout(model, _batches(data.x_train))
        notes.append(
            "BN statistics were untrained (num_batches_tracked = 0): estimated on the training split "
            "with dropout on, as training would leave them, before measuring"
        )
    layers = measure_variance_stats(model, _batches(data.x_val), _MAX_BATCHES)
    if out.ndim != 2 or out.shape[1] != data.n_classes:
        notes.append(
            f"accuracy skipped: the model outputs shape {tuple(out.shape[1:])} per sample, "
            f"{data.name} has {data.n_classes} classes"
        )
        return Measured(layers, None, notes)
    before = accuracy(model, data.x_val, data.y_val)
    recalibrate_bn(model, _batches(data.x_train), _MAX_BATCHES)
    return Measured(layers, (before, accuracy(model, data.x_val, data.y_val)), notes)


def fit_bn_with_dropout(model: nn.Module, batches: Iterator[Tensor]) -> None:
    """Estimate BN running stats as training does (dropout on) without changing any weight."""
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the dropout masks: the same lint twice gives the same numbers
        recalibrate_bn(model, batches, dropout=True)


def probe(model: nn.Module, data: TensorData) -> Tensor:
    """The model's eval output on two validation samples; one clear line if it does not fit."""
    with _measuring(model):
        model.eval()
        try:
            return model(data.x_val[:2])
        except Exception as err:  # shape mismatches surface as RuntimeError, ValueError, ...
            raise LintError(
                f"the model does not accept {data.name} inputs of shape {data.input_shape}: {_one_line(err)}"
            ) from None


def _untrained_bn(model: nn.Module) -> bool:
    counts = [
        int(m.num_batches_tracked)
        for m in model.modules()
        if is_batchnorm(m) and isinstance(m.num_batches_tracked, Tensor)
    ]
    return bool(counts) and not any(counts)


def _batches(x: Tensor) -> Iterator[Tensor]:
    for start in range(0, min(len(x), _BATCH * _MAX_BATCHES), _BATCH):
        if len(x) - start > 1:  # BN in train mode cannot take a batch of one
            yield x[start : start + _BATCH]
