"""Train one candidate: the Trainer factory and the function ``search`` calls per trial."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from spaces.spec import ArchitectureSpec
from trainers.callbacks import EpochReport, Reporter, ShiftReporter
from trainers.data import InMemoryDataModule, TensorData
from trainers.model import count_parameters
from trainers.module import CandidateModule
from trainers.stop import stop_requested

log = logging.getLogger(__name__)

DDP_TIMEOUT = 300  # seconds a collective may wait for the other ranks


class _StopOnRequest(pl.Callback):
    """Raises KeyboardInterrupt at a batch boundary once a stop was requested."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if stop_requested():
            raise KeyboardInterrupt

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if stop_requested():
            raise KeyboardInterrupt


@dataclass(frozen=True)
class TrainConfig:
    """How to train a candidate; the same for every trial of a study."""

    max_epochs: int = 15
    batch_size: int = 64  # 23 steps per epoch on digits: enough for BN statistics to move
    steps_per_call: int = 8  # minibatches per Lightning training batch (amortises its overhead)
    seed: int = 0  # the trial's seed: weights, batch order and dropout masks follow from it
    accelerator: str = "auto"  # "cpu", "gpu", "auto"
    devices: int | str = 1  # devices inside one trial; >1 with strategy "ddp"
    strategy: str = "auto"
    dropout_batches: int = 4  # validation batches for the dropout-on pass; 0 skips that statistic
    measure_shift: bool = True  # False only for benchmarks of the probe's own cost
    root_dir: str | None = None  # where Lightning may write; nothing is written by default


@dataclass
class TrainResult:
    """What a finished (or stopped) training run gives back to the caller."""

    module: CandidateModule
    reports: list[EpochReport] = field(default_factory=list)
    stop_reason: str | None = None  # set when the reporter asked to stop (pruned)
    train_seconds: float = 0.0
    device: str = "cpu"

    @property
    def best_val_acc(self) -> float:
        return max((r.val_acc for r in self.reports), default=0.0)

    @property
    def epochs(self) -> int:
        return len(self.reports)

    @property
    def n_params(self) -> int:
        return count_parameters(self.module.model)


def create_trainer(config: TrainConfig, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    """A quiet Trainer: no logger files, checkpoints, progress bar or sanity pass."""
    strategy: str | pl.strategies.Strategy = config.strategy
    if int(config.devices) > 1 and config.strategy in ("ddp", "auto"):
        # A rank that dies must not leave the others waiting for Lightning's 30-minute default.
        strategy = pl.strategies.DDPStrategy(timeout=timedelta(seconds=DDP_TIMEOUT))
    kwargs: dict[str, Any] = dict(
        max_epochs=config.max_epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=strategy,
        callbacks=callbacks or [],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=config.root_dir or str(Path.cwd()),
    )
    return pl.Trainer(**kwargs)


def uses_ddp(config: TrainConfig) -> bool:
    """Several devices in one trial, launched by us (not already inside a launched rank)."""
    return int(config.devices) > 1 and config.strategy in ("ddp", "auto") and "LOCAL_RANK" not in os.environ


def train_candidate(
    spec: ArchitectureSpec, data: TensorData, config: TrainConfig, reporter: Reporter | None = None
) -> TrainResult:
    """Build, train and measure ``spec`` on ``data``; ``reporter`` may stop it after any epoch.

    With ``config.devices > 1`` the candidate trains with DDP on that many devices; this
    process is rank 0 and the only one that calls ``reporter``."""
    if uses_ddp(config):
        from trainers.ddp import train_distributed

        return train_distributed(spec, data, config, reporter)
    return fit_local(spec, data, config, reporter)


def fit_local(
    spec: ArchitectureSpec, data: TensorData, config: TrainConfig, reporter: Reporter | None = None
) -> TrainResult:
    """One process's share of training: the whole of it, or one DDP rank."""
    torch.manual_seed(config.seed)
    module = CandidateModule(spec, micro_batch_size=config.batch_size)
    datamodule = InMemoryDataModule(
        data, batch_size=config.batch_size, seed=config.seed, steps_per_call=config.steps_per_call
    )
    shift = ShiftReporter(reporter, dropout_batches=config.dropout_batches, measure=config.measure_shift)
    trainer = create_trainer(config, [shift, _StopOnRequest()])
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Our batches are device tensors already; Lightning's DataLoader advice does not apply.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*is an IterableDataset.*")
        warnings.filterwarnings("ignore", ".*overridden `transfer_batch_to_device`.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
        try:
            trainer.fit(module, datamodule=datamodule)
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) after its own cleanup. Give callers
            # (Optuna marks the trial FAIL on KeyboardInterrupt) the interrupt back.
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
    return TrainResult(
        module=module,
        reports=shift.reports,
        stop_reason=shift.stop_reason,
        train_seconds=time.perf_counter() - start,
        device=str(trainer.strategy.root_device),
    )
