"""The LightningModule that trains one candidate: cross-entropy, AdamW, torchmetrics accuracy.

Small candidates take about a millisecond per step, so per-step framework work shows.
Profiled on digits (``benchmarks/trainer_overhead.py``), three things cost most and are
avoided here: ``self.log`` (about 5 ms a call, in Lightning's result collection), the
automatic-optimisation closure, and Lightning's per-batch loop bookkeeping (about 0.8 ms a
batch). The step uses manual optimisation on the raw optimiser, over several minibatches
per Lightning batch (``micro_batch_size``); every minibatch is still its own optimizer step,
and gradients are still synchronised by DDP's autograd hooks under ``strategy="ddp"``.
Epoch metrics go straight to the logger, when there is one.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from spaces.spec import ArchitectureSpec
from trainers.model import build_model


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the candidate cannot go on."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"non-finite loss at epoch {epoch}")
        self.epoch = epoch


class CandidateModule(pl.LightningModule):
    """Trains ``build_model(spec)``; keeps one validation accuracy per epoch in ``val_acc_history``."""

    def __init__(self, spec: ArchitectureSpec, micro_batch_size: int | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.micro_batch_size = micro_batch_size  # optimizer-step size within a training batch
        self.spec = spec
        self.model = build_model(spec)
        self.val_accuracy = MulticlassAccuracy(num_classes=spec.n_classes, average="micro")
        self.val_acc_history: list[float] = []
        # Summed on the device and read once per epoch, so the hot loop never syncs.
        self._loss_sum = torch.zeros((), dtype=torch.float64)
        self._loss_steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        optimizer = self.trainer.optimizers[0]
        size = self.micro_batch_size or len(x)
        # One optimizer step per minibatch, exactly as a plain loop over the same order.
        for xb, yb in zip(x.split(size), y.split(size), strict=True):
            loss = F.cross_entropy(self.model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self._loss_sum = self._loss_sum.to(loss.device) + loss.detach()
            self._loss_steps += 1

    def transfer_batch_to_device(
        self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Batches are sliced from tensors already on the device; skip the generic traversal.
        x, y = batch
        return (x, y) if x.device == device else (x.to(device), y.to(device))

    def on_validation_epoch_start(self) -> None:
        # Validation runs at the end of each training epoch: check the epoch's loss before
        # anything is measured or reported on a diverged model.
        if self.trainer.sanity_checking:
            return
        mean = self._loss_sum / max(1, self._loss_steps)
        if self.trainer.world_size > 1:  # every rank must take the same decision
            mean = self.trainer.strategy.reduce(mean, reduce_op="mean")
        mean_loss = float(mean)
        self._loss_sum.zero_()
        self._loss_steps = 0
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(self.current_epoch)
        self._log_metrics({"train_loss": mean_loss})

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_accuracy.update(self.model(x), y)

    def on_validation_epoch_end(self) -> None:
        acc = float(self.val_accuracy.compute())  # synced across DDP ranks by torchmetrics
        self.val_accuracy.reset()
        if not self.trainer.sanity_checking:
            self.val_acc_history.append(acc)
            self._log_metrics({"val_acc": acc})

    def _log_metrics(self, metrics: dict[str, float]) -> None:
        if self.trainer.logger is not None:
            self.trainer.logger.log_metrics(metrics, step=self.current_epoch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.spec.lr, weight_decay=self.spec.weight_decay)
