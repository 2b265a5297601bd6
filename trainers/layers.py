"""Layer factories, timm-style: name -> class tables, ``None``/"none" meaning no layer.

The two multiplicative-noise dropouts subclass ``torch.nn.modules.dropout._DropoutNd`` so
that anything looking for "a dropout layer" (the variance-shift probes, BN recalibration,
``model.eval()``) finds them exactly like ``nn.Dropout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from spaces.spec import ACTIVATIONS, check_choice


class GaussianDropout(_DropoutNd):
    """Multiplicative Gaussian noise ``x * (1 + n)``, ``n ~ N(0, q / (1 - q))``.

    The variance q/(1-q) matches Bernoulli dropout at the same rate q, so rates are
    comparable across kinds. Mean-preserving: nothing to rescale at inference.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        std = (self.p / (1.0 - self.p)) ** 0.5
        return x * (1.0 + std * torch.randn_like(x))


class Uout(_DropoutNd):
    """Uout (Li et al. 2019): ``x * (1 + r)``, ``r ~ U(-b, b)`` with ``b = p``.

    Its variance shift for zero-mean input is only (3 + b^2) / 3, e.g. 1.083 at b = 0.5.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * (1.0 + (2.0 * torch.rand_like(x) - 1.0) * self.p)


_ACT_MAP: dict[str, Callable[[], nn.Module]] = dict(
    relu=nn.ReLU,
    leaky_relu=lambda: nn.LeakyReLU(0.01),
    elu=nn.ELU,
    gelu=nn.GELU,
    silu=nn.SiLU,
    tanh=nn.Tanh,
    sigmoid=nn.Sigmoid,
)
assert set(_ACT_MAP) == set(ACTIVATIONS)


def create_act(name: str) -> nn.Module:
    """``create_act("LeakyReLU")`` -> ``nn.LeakyReLU(0.01)``."""
    return _ACT_MAP[check_choice("activation", name, ACTIVATIONS)]()


def create_dropout(kind: str | None, rate: float, conv_dims: int = 0) -> nn.Module | None:
    """A dropout layer of ``kind`` at ``rate``; ``conv_dims`` picks Dropout1d/2d/3d for 'channel'."""
    if kind is None or kind == "none" or rate == 0.0:
        return None
    if kind == "bernoulli":
        return nn.Dropout(rate)
    if kind == "channel":
        channel = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
        if conv_dims not in channel:
            raise ValueError(f"channel dropout needs 1-3 conv dims, but got {conv_dims=}")
        return channel[conv_dims](rate)
    if kind == "gaussian":
        return GaussianDropout(rate)
    if kind == "uout":
        return Uout(rate)
    raise ValueError(f"unknown dropout kind {kind!r}")


def create_norm(width: int, conv_dims: int = 0) -> nn.Module:
    """BatchNorm over ``width`` features (dense) or channels (conv maps of ``conv_dims``)."""
    table: dict[int, type[nn.Module]] = {
        0: nn.BatchNorm1d,
        1: nn.BatchNorm1d,
        2: nn.BatchNorm2d,
        3: nn.BatchNorm3d,
    }
    return table[conv_dims](width)


def is_dropout(module: nn.Module) -> bool:
    return isinstance(module, (_DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout))


def is_batchnorm(module: nn.Module) -> TypeGuard[_BatchNorm]:
    return isinstance(module, _BatchNorm)
