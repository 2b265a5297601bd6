"""Shared fixtures. Heavy imports (torch, Lightning) stay inside the fixtures, so tests that
never ask for them (the CLI's, the pruner's) do not pay for them at collection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from spaces import SpaceConfig
    from trainers.data import TensorData

TINY_SAMPLES = 200
TINY_CLASSES = 10
TINY_SHAPE = (1, 8, 8)


@pytest.fixture(scope="session")
def tiny_data() -> TensorData:
    """200 learnable samples of shape (1, 8, 8) in 10 classes, split 160/40, in memory.

    Each class lights up its own pixels on top of unit noise, so a small net learns
    something within a couple of epochs. Session-scoped: nothing may modify it.
    """
    import numpy as np

    from trainers.data import split_arrays

    rng = np.random.default_rng(1234)
    y = np.arange(TINY_SAMPLES) % TINY_CLASSES
    pixel_class = np.arange(np.prod(TINY_SHAPE)).reshape(TINY_SHAPE) % TINY_CLASSES
    x = rng.normal(size=(TINY_SAMPLES, *TINY_SHAPE)) + 2.0 * (pixel_class[None] == y[:, None, None, None])
    return split_arrays("tiny", x.astype(np.float32), y, val_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tiny models on one intra-op thread, then restore the count.

    On tensors this small a second thread only adds spin-waits, and on a machine shared
    with other work that costs several times the compute (measured here, a tiny MLP's
    train+eval forward pair: about 2 ms on one thread, 8-20 ms on two).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shifty_space() -> Callable[[int], SpaceConfig]:
    """``shifty_space(depth)``: a space whose every candidate has ``depth`` blocks, each with BN
    fed by Bernoulli dropout (q 0.4-0.5): a variance shift to measure, explain and recalibrate."""
    from spaces import SpaceConfig

    def make(depth: int) -> SpaceConfig:
        return SpaceConfig(
            depth=(depth, depth),
            widths=(16,),
            bn_choices=(True,),
            placements=("blocks",),
            dropout_kinds=("bernoulli",),
            allow_no_dropout=False,
            dropout_rate=(0.4, 0.5),
            orders=("drop-bn-act",),
            lr=(1e-2, 1e-2),
        )

    return make
