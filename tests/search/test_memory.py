"""Memory does not grow across trials in one process: each trial's model, optimizer and
Trainer are released by ``release_memory`` (a collection over a heap frozen after the first
trial, and torch.cuda.empty_cache() where a GPU is), exactly as ``run_trials`` calls it."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import optuna
import pytest

from search.objective import Objective
from search.study import release_memory
from spaces import SpaceConfig
from trainers.data import TensorData
from trainers.fit import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_is_flat_over_20_trials(tiny_data: TensorData, tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    # The widest candidates every time, so a leak of one model per trial would show.
    space = SpaceConfig(widths=(256,), depth=(3, 3))
    objective = Objective(
        data=tiny_data,
        space=space,
        train=TrainConfig(max_epochs=1, batch_size=32, accelerator="cpu", root_dir=str(tmp_path)),
    )
    rss = []
    for i in range(20):
        study.optimize(objective, n_trials=1)
        release_memory(freeze=i == 0)
        rss.append(_rss_mb())
    gc.unfreeze()  # the rest of the test session collects as usual
    # One such model with its AdamW state is ~1.7 MB; 15 leaked would be ~25 MB. Allow
    # allocator noise, not a per-trial leak.
    growth = rss[-1] - rss[4]
    assert growth < 15, f"RSS grew {growth:.1f} MB from trial 5 to 20: {[round(r) for r in rss]}"
