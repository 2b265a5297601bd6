"""Define-by-run search spaces over BN and Dropout placement, dropout kind and rate,
activation, depth, width and the optimiser.

Only this module calls ``trial.suggest_*``. Parameter names are what the dashboard
shows, so they read as ``block1.order`` or ``block1.dropout_rate`` (``block.order`` when
the choices are shared by all blocks). Conditional parameters are only asked when they
matter: ``dropout_rate`` only for a block that has dropout, ``order`` only when the
block has something to order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from spaces.plugins import call_family, describe_module, load_object, takes_trial
from spaces.spec import (
    ACTIVATIONS,
    DROPOUT_KINDS,
    FAMILIES,
    ORDERS,
    ArchitectureSpec,
    BlockSpec,
    SpecError,
    check_choice,
)

PLACEMENTS: tuple[str, ...] = ("blocks", "head")  # "head": dropout only after the last BN


class TrialLike(Protocol):
    """The part of ``optuna.Trial`` a space needs; anything with these methods will do."""

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class SpaceConfig:
    """What the search may choose from. Every field has a default that makes a real search."""

    family: str = "mlp"  # "mlp" or "cnn"
    depth: tuple[int, int] = (1, 3)  # inclusive range of block counts
    widths: tuple[int, ...] = (32, 64, 128, 256)  # units (mlp) or channels (cnn) per block
    activations: tuple[str, ...] = ACTIVATIONS
    dropout_kinds: tuple[str, ...] = ("bernoulli", "gaussian", "uout")  # "channel" for cnn too
    allow_no_dropout: bool = True  # a block may go without dropout
    dropout_rate: tuple[float, float] = (0.05, 0.5)  # range of q (or the noise level)
    orders: tuple[str, ...] = ORDERS  # e.g. "bn-act-drop"; all six by default
    bn_choices: tuple[bool, ...] = (True, False)  # (True,) forces BN in every block
    placements: tuple[str, ...] = PLACEMENTS
    share_blocks: bool = True  # one set of block choices for all blocks (small space)
    plugin: str | None = None  # module:function of a family plugin that builds the network
    lr: tuple[float, float] = (1e-4, 1e-2)  # log-uniform
    weight_decay: tuple[float, float] = (1e-6, 1e-2)  # log-uniform
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_choice("family", self.family, FAMILIES)
        _check_range("depth", self.depth, low=1)
        for name in ("widths", "activations", "orders", "bn_choices", "placements"):
            if not getattr(self, name):
                raise SpecError(f"the choice list {name!r} is empty")
        if not self.dropout_kinds and not self.allow_no_dropout:
            raise SpecError("dropout_kinds is empty and allow_no_dropout is false: nothing to choose")
        if any(w < 1 for w in self.widths):
            raise SpecError(f"widths must be >= 1, but got {list(self.widths)}")
        object.__setattr__(
            self,
            "activations",
            tuple(check_choice("activation", a, ACTIVATIONS) for a in self.activations),
        )
        kinds = tuple(check_choice("dropout kind", k, DROPOUT_KINDS) for k in self.dropout_kinds)
        if "channel" in kinds and self.family == "mlp":
            raise SpecError("dropout kind 'channel' needs conv maps; drop it for family 'mlp'")
        object.__setattr__(self, "dropout_kinds", kinds)
        object.__setattr__(self, "orders", tuple(check_choice("order", o, ORDERS) for o in self.orders))
        object.__setattr__(
            self, "placements", tuple(check_choice("placement", p, PLACEMENTS) for p in self.placements)
        )
        low, high = self.dropout_rate
        if not 0.0 < low <= high < 1.0:
            raise SpecError(f"dropout rate range must lie in (0, 1), but got [{low}, {high}]")
        _check_range("lr", self.lr, low=0.0, log=True)
        _check_range("weight_decay", self.weight_decay, low=0.0, log=True)

    @classmethod
    def for_family(cls, family: str, **overrides: Any) -> SpaceConfig:
        """Defaults that suit ``family``: conv widths are channels, channel dropout allowed."""
        family = check_choice("family", family, FAMILIES)
        if family in ("cnn", "resnet"):
            base = cls(
                family=family,
                # resnet: base channels of its first stage, doubled at each of its 3 stages;
                # depth: residual blocks per stage.
                depth=(1, 3) if family == "cnn" else (1, 2),
                widths=(8, 16, 32),
                dropout_kinds=("bernoulli", "channel", "gaussian", "uout"),
            )
        else:
            base = cls()
        return replace(base, **overrides)


def _check_range(name: str, rng: tuple[float, float], *, low: float, log: bool = False) -> None:
    a, b = rng
    if a > b or a < low or (log and a <= 0):
        raise SpecError(f"{name} range must be low <= high{' and > 0' if log else ''}, but got [{a}, {b}]")


def suggest_architecture(
    trial: TrialLike, space: SpaceConfig, input_shape: tuple[int, ...], n_classes: int
) -> ArchitectureSpec:
    """Ask ``trial`` for a whole candidate and return it as a frozen, validated spec."""
    if space.plugin is not None:
        return _suggest_plugin(trial, space, space.plugin, input_shape, n_classes)
    depth = trial.suggest_int("depth", space.depth[0], space.depth[1])
    width = int(trial.suggest_categorical("width", list(space.widths)))
    placement = trial.suggest_categorical("placement", list(space.placements))
    in_blocks = placement == "blocks"
    widths = _block_widths(space.family, depth, width)
    shared = _suggest_block(trial, "block.", space, width, in_blocks) if space.share_blocks else None
    blocks = tuple(
        replace(shared, width=w) if shared else _suggest_block(trial, f"block{i + 1}.", space, w, in_blocks)
        for i, w in enumerate(widths)
    )
    head_kind: str | None = None
    head_rate = 0.0
    if not in_blocks:
        kinds = [k for k in space.dropout_kinds if k != "channel"] or ["bernoulli"]
        head_kind = trial.suggest_categorical("head.dropout", kinds)
        head_rate = trial.suggest_float("head.dropout_rate", *space.dropout_rate)
    return ArchitectureSpec(
        family=space.family,
        input_shape=tuple(input_shape),
        n_classes=n_classes,
        blocks=blocks,
        head_dropout=head_kind,
        head_dropout_rate=head_rate,
        lr=trial.suggest_float("lr", *space.lr, log=True),
        weight_decay=trial.suggest_float("weight_decay", *space.weight_decay, log=True),
    )


def _suggest_plugin(
    trial: TrialLike, space: SpaceConfig, reference: str, input_shape: tuple[int, ...], n_classes: int
) -> ArchitectureSpec:
    """A plugin family: a trial-taking function asks its own parameters (replayed later with
    ``optuna.trial.FixedTrial`` to build the same network anywhere, e.g. on every DDP rank);
    a spec-taking one gets a spec from our space and builds it its own way."""
    function = load_object(reference, "family")
    if not takes_trial(function):
        spec = suggest_architecture(trial, replace(space, plugin=None), input_shape, n_classes)
        return replace(spec, extra={"plugin": reference})
    params_before = set(trial.params) if hasattr(trial, "params") else set()
    module = call_family(function, trial, tuple(input_shape), n_classes)
    params = {k: v for k, v in getattr(trial, "params", {}).items() if k not in params_before}
    return ArchitectureSpec(
        family="plugin",
        input_shape=tuple(input_shape),
        n_classes=n_classes,
        blocks=(),
        lr=trial.suggest_float("lr", *space.lr, log=True),
        weight_decay=trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        extra={"plugin": reference, "params": params, "architecture": describe_module(module)},
    )


RESNET_STAGES = 3


def _block_widths(family: str, depth: int, width: int) -> list[int]:
    """mlp/cnn: ``depth`` blocks of ``width``; resnet: 3 stages of ``depth`` blocks, the width
    doubling (and the resolution halving) from one stage to the next."""
    if family != "resnet":
        return [width] * depth
    return [width * 2**stage for stage in range(RESNET_STAGES) for _ in range(depth)]


def _suggest_block(
    trial: TrialLike, prefix: str, space: SpaceConfig, width: int, with_dropout: bool
) -> BlockSpec:
    activation = trial.suggest_categorical(f"{prefix}activation", list(space.activations))
    bn = bool(trial.suggest_categorical(f"{prefix}bn", list(space.bn_choices)))
    dropout: str | None = None
    rate = 0.0
    if with_dropout:
        kinds = [*space.dropout_kinds, *(["none"] if space.allow_no_dropout else [])]
        kind = trial.suggest_categorical(f"{prefix}dropout", kinds)
        if kind != "none":
            dropout = kind
            rate = trial.suggest_float(f"{prefix}dropout_rate", *space.dropout_rate)
    order = ("bn", "act", "drop")
    if bn or dropout is not None:
        order = tuple(trial.suggest_categorical(f"{prefix}order", list(space.orders)).split("-"))
    return BlockSpec(width, activation, bn, dropout, rate, order)
