"""Frozen, validated architecture specs: what a trial chose, with no torch in sight.

A spec is the single hand-off between ``spaces`` (which asks the trial) and
``trainers`` (which builds and trains). It is immutable and validated on creation,
so a builder never has to second-guess it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid")
# Multiplicative noise kinds: bernoulli = nn.Dropout, channel = Dropout1d/2d on conv maps,
# gaussian = x * N(1, q/(1-q)) (same variance as Bernoulli at rate q), uout = x * U(1-b, 1+b).
DROPOUT_KINDS: tuple[str, ...] = ("bernoulli", "channel", "gaussian", "uout")
# resnet: pre-activation residual blocks, BN-act-Conv then the block's order of BN, act and
# dropout before the second Conv, so "bn-act-drop" is Wide ResNet's dropout (before the last
# conv) and "drop-bn-act" the paper's harmful one (before the last BN).
FAMILIES: tuple[str, ...] = ("mlp", "cnn", "resnet")
CONV_FAMILIES: tuple[str, ...] = ("cnn", "resnet")
# Every order of the three components after the linear/conv layer, harmful ones included:
# measuring them is the point.
ORDERS: tuple[str, ...] = tuple("-".join(p) for p in itertools.permutations(("bn", "act", "drop")))

_ACT_LABELS = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
}


class SpecError(ValueError):
    """An impossible architecture or search space; the message names the bad value."""


def normalize_name(name: str) -> str:
    """timm-style normalisation so that ``LeakyReLU``, ``leaky-relu`` and ``leaky_relu`` agree."""
    return name.strip().lower().replace("-", "_")


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    """Return the canonical spelling of ``value`` in ``allowed`` or raise a one-line error."""
    aliases = {"leakyrelu": "leaky_relu", "dropout": "bernoulli"}
    norm = normalize_name(str(value))
    canonical = {normalize_name(a): a for a in allowed}
    if norm not in canonical:
        norm = aliases.get(norm.replace("_", ""), norm)
    if norm not in canonical:
        raise SpecError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")
    return canonical[norm]


def dropout_label(kind: str, rate: float, conv_dims: int) -> str:
    """Readable layer name, e.g. ``Dropout(0.30)``, ``Dropout2d(0.10)``, ``Uout(0.50)``."""
    if kind == "channel":
        return f"Dropout{conv_dims}d({rate:.2f})"
    names = {"bernoulli": "Dropout", "gaussian": "GaussianDropout", "uout": "Uout"}
    return f"{names[kind]}({rate:.2f})"


@dataclass(frozen=True)
class BlockSpec:
    """One block: a linear/conv layer followed by its BN, activation and dropout in ``order``."""

    width: int  # units of the Linear, or out channels of the Conv
    activation: str = "relu"  # a name from ACTIVATIONS
    bn: bool = True  # BatchNorm after the layer, where ``order`` puts it
    dropout: str | None = None  # a kind from DROPOUT_KINDS, None for no dropout
    dropout_rate: float = 0.0  # drop probability q (Bernoulli), noise level for the others
    order: tuple[str, ...] = ("bn", "act", "drop")  # full or projected permutation

    def __post_init__(self) -> None:
        if self.width < 1:
            raise SpecError(f"block width must be >= 1, but got {self.width}")
        object.__setattr__(self, "activation", check_choice("activation", self.activation, ACTIVATIONS))
        if self.dropout is not None:
            object.__setattr__(self, "dropout", check_choice("dropout kind", self.dropout, DROPOUT_KINDS))
            if not 0.0 < self.dropout_rate < 1.0:
                raise SpecError(f"dropout rate must be in (0, 1), but got {self.dropout_rate}")
        elif self.dropout_rate != 0.0:
            raise SpecError(f"dropout rate {self.dropout_rate} given without a dropout kind")
        order = tuple(self.order)
        if sorted(order) != sorted(set(order)) or not set(order) <= {"bn", "act", "drop"}:
            raise SpecError(f"order must be a permutation of bn, act, drop, but got {order}")
        missing = [c for c in ("bn", "act", "drop") if self._present(c) and c not in order]
        if missing:
            raise SpecError(f"order {'-'.join(order)} does not place {', '.join(missing)}")
        object.__setattr__(self, "order", tuple(c for c in order if self._present(c)))

    def _present(self, component: str) -> bool:
        return {"bn": self.bn, "act": True, "drop": self.dropout is not None}[component]

    @property
    def arrangement(self) -> str:
        """Order of the present components, e.g. ``BN-act-Drop``: the key for 'where does it go'."""
        return "-".join({"bn": "BN", "act": "act", "drop": "Drop"}[c] for c in self.order)

    def describe(self, layer: str, conv_dims: int = 0) -> str:
        if layer == "ResBlock":  # pre-activation: [BN-]act-Conv, then the order, then Conv
            first = ["BN"] * self.bn + [_ACT_LABELS[self.activation], "Conv"]
            inner = BlockSpec.describe(self, "", conv_dims).split("-", 1)[1:]
            return f"ResBlock({self.width})[{'-'.join([*first, *inner, 'Conv'])}]"
        parts = [f"{layer}({self.width})"]
        for c in self.order:
            if c == "bn":
                parts.append("BN")
            elif c == "act":
                parts.append(_ACT_LABELS[self.activation])
            else:
                assert self.dropout is not None
                parts.append(dropout_label(self.dropout, self.dropout_rate, conv_dims))
        return "-".join(parts)


@dataclass(frozen=True)
class ArchitectureSpec:
    """A whole candidate: blocks, a classifier head, and the optimiser settings it trains with."""

    family: str  # "mlp" (dense blocks) or "cnn" (conv blocks, pooled, then a dense head)
    input_shape: tuple[int, ...]  # one sample: (features,), (C, L) or (C, H, W)
    n_classes: int
    blocks: tuple[BlockSpec, ...]
    head_dropout: str | None = None  # dropout before the classifier, after the last BN
    head_dropout_rate: float = 0.0
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form, e.g. plugin info

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", check_choice("family", self.family, (*FAMILIES, "plugin")))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.family == "plugin" and "plugin" not in self.extra:
            raise SpecError("a plugin architecture needs extra['plugin'] = 'module:function'")
        if not self.blocks and self.family != "plugin":
            raise SpecError("an architecture needs at least one block")
        if self.n_classes < 2:
            raise SpecError(f"n_classes must be >= 2, but got {self.n_classes}")
        if any(d < 1 for d in self.input_shape) or not self.input_shape:
            raise SpecError(f"input shape must be positive, but got {self.input_shape}")
        if self.family in CONV_FAMILIES and len(self.input_shape) not in (2, 3):
            raise SpecError(
                f"family {self.family!r} needs (C, L) or (C, H, W) samples, "
                f"but the data set gives {self.input_shape}"
            )
        if self.family == "mlp" and any(b.dropout == "channel" for b in self.blocks):
            raise SpecError("channel dropout needs conv feature maps; family 'mlp' has none")
        if self.head_dropout is None and self.head_dropout_rate != 0.0:
            raise SpecError(f"head dropout rate {self.head_dropout_rate} given without a head dropout kind")
        if self.head_dropout is not None:
            kind = check_choice("head dropout kind", self.head_dropout, DROPOUT_KINDS)
            if kind == "channel":
                raise SpecError("the head is dense: channel dropout does not apply there")
            object.__setattr__(self, "head_dropout", kind)
            if not 0.0 < self.head_dropout_rate < 1.0:
                raise SpecError(f"head dropout rate must be in (0, 1), but got {self.head_dropout_rate}")
        if not self.lr > 0:
            raise SpecError(f"learning rate must be > 0, but got {self.lr}")
        if self.weight_decay < 0:
            raise SpecError(f"weight decay must be >= 0, but got {self.weight_decay}")

    @property
    def conv_dims(self) -> int:
        return len(self.input_shape) - 1 if self.family in CONV_FAMILIES else 0

    @property
    def has_bn(self) -> bool:
        """Whether the network may hold BN layers (a plugin's own network: assume it may)."""
        return self.family == "plugin" or any(b.bn for b in self.blocks)

    def describe(self) -> str:
        """The readable architecture string stored as the ``architecture`` user attr."""
        if self.family == "plugin":
            return str(self.extra.get("architecture", self.extra["plugin"]))
        layer = {"mlp": "Linear", "cnn": "Conv", "resnet": "ResBlock"}[self.family]
        parts = [b.describe(layer, self.conv_dims) for b in self.blocks]
        head = f"Linear({self.n_classes})"
        if self.head_dropout is not None:
            head = f"{dropout_label(self.head_dropout, self.head_dropout_rate, 0)}-{head}"
        if self.family in CONV_FAMILIES:
            head = f"Pool-{head}"
        return " | ".join([*parts, head])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchitectureSpec:
        data = dict(data)
        data["blocks"] = tuple(BlockSpec(**{**b, "order": tuple(b["order"])}) for b in data["blocks"])
        data["input_shape"] = tuple(data["input_shape"])
        return cls(**data)
