"""DDP on the CPU with 2 gloo processes: the variance-shift sums reduced across ranks equal
the single-process statistic on the same data, to float64 rounding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from torch import nn

from trainers.ddp import free_port
from trainers.variance_shift import BNInputStats

pytestmark = pytest.mark.slow


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.Dropout(0.3), nn.BatchNorm1d(32), nn.ReLU(), nn.BatchNorm1d(32)
    )
    model.train()
    with torch.no_grad():
        for chunk in torch.randn(2048, 16).split(128):
            model(chunk)
    return model.eval()


def _data() -> torch.Tensor:
    return torch.randn(1000, 16, generator=torch.Generator().manual_seed(1)) * 2 + 0.5


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, x = _model(), _data()
        shard = x[rank * len(x) // world : (rank + 1) * len(x) // world]
        stats = BNInputStats().attach(model)
        with torch.no_grad():
            for chunk in shard.split(100):
                model(chunk)
        stats.detach()
        stats.all_reduce()  # torch.distributed sum, one collective
        if rank == 0:
            torch.save({k: (v.moving_var, v.real_var) for k, v in stats.layer_shifts(model).items()}, out)
    finally:
        dist.destroy_process_group()


def test_reduced_shift_equals_single_process(tmp_path: Path) -> None:
    out = str(tmp_path / "ddp.pt")
    tmp.spawn(_rank, args=(2, free_port(), out), nprocs=2, join=True)
    reduced = torch.load(out, weights_only=True)
    model, x = _model(), _data()
    stats = BNInputStats().attach(model)
    with torch.no_grad():
        model(x)
    single = stats.layer_shifts(model)
    assert set(reduced) == set(single) == {"2", "4"}
    for name, (moving, real) in reduced.items():
        # Sums of float64 values in another order: equal to ~1e-12 relative, not bit for bit.
        assert moving == single[name].moving_var
        assert real == pytest.approx(single[name].real_var, rel=1e-9)
