"""Per-epoch measurement and reporting: the variance shift and the stop decision.

``ShiftReporter`` measures both variance-shift statistics during the validation pass the
trainer runs anyway, then hands an :class:`EpochReport` to a plain function. That function
(written by ``search``, which owns the Optuna trial) returns a reason to stop, or None.
Under DDP only rank 0 calls it and the decision is broadcast, so every rank stops together
and nothing but rank 0 ever talks to the storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from trainers.variance_shift import BNInputStats, LayerShift, measure_dropout_shift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """What one validation epoch measured."""

    epoch: int  # 0-based, the step reported to Optuna
    val_acc: float
    variance_shift: dict[str, LayerShift] = field(default_factory=dict)  # the paper's statistic
    dropout_shift: dict[str, float] = field(default_factory=dict)  # dropout on vs off, same weights

    @property
    def variance_shift_max(self) -> float:
        return max((s.shift for s in self.variance_shift.values()), default=1.0)

    @property
    def dropout_shift_max(self) -> float:
        return max(self.dropout_shift.values(), default=1.0)


Reporter = Callable[[EpochReport], "str | None"]


class ShiftReporter(Callback):
    """Measures the variance shift each validation epoch and asks ``reporter`` whether to stop.

    ``dropout_batches`` bounds the extra dropout-on pass (the only extra work per epoch).
    """

    def __init__(
        self, reporter: Reporter | None = None, dropout_batches: int = 4, measure: bool = True
    ) -> None:
        self.reporter = reporter
        self.dropout_batches = dropout_batches
        self.measure = measure
        self.stats = BNInputStats()
        self._first: BNInputStats | None = None  # self.stats after the first dropout_batches
        self.reports: list[EpochReport] = []
        self.stop_reason: str | None = None

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.measure:
            return
        self.stats.attach(_net(pl_module))
        self._first = None

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        # The validation pass is the dropout-off pass of the probe's batches (eval mode, same
        # weights, same batches in the same order): keep its sums, so the probe runs only the
        # dropout-on pass.
        if not trainer.sanity_checking and self.measure and batch_idx + 1 == self.dropout_batches:
            self._first = self.stats.snapshot()

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stats.detach()

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        history: list[float] = getattr(pl_module, "val_acc_history", [])
        if not history:
            return
        reduce = _sum_across_ranks(trainer) if trainer.world_size > 1 else None
        if self._first is None and self.measure:  # fewer validation batches than the probe takes
            self._first = self.stats.snapshot()
        self.stats.all_reduce(reduce)
        report = EpochReport(
            epoch=trainer.current_epoch,
            val_acc=history[-1],
            variance_shift=self.stats.layer_shifts(_net(pl_module)) if self.measure else {},
            dropout_shift=self._dropout_shift(trainer, pl_module, reduce),
        )
        self.reports.append(report)
        if trainer.logger is not None:  # self.log is not allowed in on_validation_end
            metrics = {
                "variance_shift_max": report.variance_shift_max,
                "dropout_shift_max": report.dropout_shift_max,
            }
            trainer.logger.log_metrics(metrics, step=trainer.current_epoch)
        reason = self.reporter(report) if self.reporter and trainer.is_global_zero else None
        reason = trainer.strategy.broadcast(reason, src=0)
        if reason is not None:
            self.stop_reason = reason
            trainer.should_stop = True

    def _dropout_shift(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> dict[str, float]:
        batches = trainer.val_dataloaders
        if batches is None or not self.dropout_batches or not self.stats.variances():
            return {}
        # Each rank measures its own shard; the sums are added across ranks before the ratio.
        net = _net(pl_module)
        return measure_dropout_shift(
            net, batches, max_batches=self.dropout_batches, reduce=reduce, off=self._first
        )


def _net(pl_module: pl.LightningModule) -> torch.nn.Module:
    """The candidate network itself, so layer names read ``blocks.0.bn``, not ``model.blocks.0.bn``."""
    net = getattr(pl_module, "model", pl_module)
    return net if isinstance(net, torch.nn.Module) else pl_module


def _sum_across_ranks(trainer: pl.Trainer) -> Callable[[torch.Tensor], torch.Tensor]:
    def reduce(t: torch.Tensor) -> torch.Tensor:
        return trainer.strategy.reduce(t, reduce_op="sum")

    return reduce
