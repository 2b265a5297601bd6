"""What each layer is to the lint rules: name/type -> kind tables, timm-style.

Kinds decide how far a rule walks through the graph. For the variance shift (VS001) the
transparent kinds are those that carry a dropout's extra variance on to the next BN:
Linear/Conv (same ratio for independent inputs, DESIGN.md), pooling, flatten/reshape/
identity, and activations (ReLU-like ones commute with dropout's mask and scale; the shift
survives the others too, by another ratio). Every normalisation resets it (another BN, or
LayerNorm/GroupNorm's per-sample statistics); a merge (residual add, concat) or an unknown
module or call stops every walk, so the rules err toward silence there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.pooling import _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd, _MaxPoolNd

from trainers.layers import GaussianDropout, Uout, is_batchnorm, is_dropout


class LayerKind(Enum):
    LINEAR = "linear"
    CONV = "conv"
    BN = "bn"
    NORM = "norm"  # LayerNorm, GroupNorm, InstanceNorm, ...: per-sample statistics
    DROPOUT = "dropout"
    ACT = "act"
    SATURATING = "saturating"  # sigmoid, tanh and kin: bounded, flat at both ends
    POOL = "pool"
    RESHAPE = "reshape"  # flatten, view, identity: values unchanged
    OTHER = "other"  # merges and anything unknown: every walk stops here


@dataclass(frozen=True)
class DropoutInfo:
    kind: str  # bernoulli, channel, gaussian, uout, alpha, feature_alpha
    rate: float  # the layer's p: drop probability q (Bernoulli), b (Uout)

    @property
    def elementwise(self) -> bool:
        return self.kind not in ("channel", "feature_alpha")


_MODULE_KINDS: tuple[tuple[tuple[type[nn.Module], ...], LayerKind], ...] = (
    ((nn.Linear, nn.Bilinear), LayerKind.LINEAR),
    ((_ConvNd,), LayerKind.CONV),
    ((nn.ReLU6,), LayerKind.ACT),  # a Hardtanh subclass, but nobody's outputs sit near 6
    (
        (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign, nn.LogSigmoid),
        LayerKind.SATURATING,
    ),
    (
        (
            nn.ReLU,
            nn.LeakyReLU,
            nn.PReLU,
            nn.RReLU,
            nn.ELU,
            nn.SELU,
            nn.CELU,
            nn.GELU,
            nn.SiLU,
            nn.Mish,
            nn.Softplus,
            nn.Hardswish,
        ),
        LayerKind.ACT,
    ),
    (
        (_MaxPoolNd, _AvgPoolNd, _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, nn.LPPool1d, nn.LPPool2d),
        LayerKind.POOL,
    ),
    ((nn.Flatten, nn.Unflatten, nn.Identity), LayerKind.RESHAPE),
    ((nn.LayerNorm, nn.GroupNorm, _InstanceNorm, nn.LocalResponseNorm, nn.RMSNorm), LayerKind.NORM),
)

_CALL_NAMES: dict[LayerKind, str] = {
    LayerKind.LINEAR: "linear bilinear",
    LayerKind.CONV: "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d",
    LayerKind.ACT: "relu relu6 leaky_relu prelu rrelu elu selu celu gelu silu mish softplus hardswish",
    LayerKind.SATURATING: "sigmoid tanh hardtanh hardsigmoid softsign logsigmoid",
    LayerKind.POOL: " ".join(
        f"{op}_pool{d}d" for op in ("max", "avg", "adaptive_max", "adaptive_avg") for d in (1, 2, 3)
    )
    + " mean amax",
    LayerKind.RESHAPE: "flatten view reshape contiguous squeeze unsqueeze permute transpose clone identity",
    LayerKind.NORM: "layer_norm group_norm instance_norm rms_norm",
    LayerKind.DROPOUT: "dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout",
}
_CALL_KINDS = {name: kind for kind, names in _CALL_NAMES.items() for name in names.split()}


def module_kind(module: nn.Module) -> LayerKind:
    if is_batchnorm(module):
        return LayerKind.BN
    if is_dropout(module):
        return LayerKind.DROPOUT
    for types, kind in _MODULE_KINDS:
        if isinstance(module, types):
            return kind
    return LayerKind.OTHER


def call_kind(name: str) -> LayerKind:
    """A functional call or tensor method by name; ``relu_`` counts as ``relu``."""
    return _CALL_KINDS.get(name.lower().rstrip("_"), LayerKind.OTHER)


def dropout_info(module: nn.Module) -> DropoutInfo | None:
    """Kind and rate of a dropout module; ``None`` for anything else."""
    if not is_dropout(module):
        return None
    rate = float(getattr(module, "p", 0.0))
    # Subclasses before their bases: GaussianDropout and Uout are _DropoutNd too.
    if isinstance(module, Uout):
        return DropoutInfo("uout", rate)
    if isinstance(module, GaussianDropout):
        return DropoutInfo("gaussian", rate)
    if isinstance(module, nn.FeatureAlphaDropout):
        return DropoutInfo("feature_alpha", rate)
    if isinstance(module, nn.AlphaDropout):
        return DropoutInfo("alpha", rate)
    if isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        return DropoutInfo("channel", rate)
    return DropoutInfo("bernoulli", rate)  # nn.Dropout, or a user's subclass: assumed Bernoulli
