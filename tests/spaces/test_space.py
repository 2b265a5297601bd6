"""SpaceConfig validation and ``suggest_architecture``: readable, conditional parameter names."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FixedTrial

from spaces import (
    ACTIVATIONS,
    DROPOUT_KINDS,
    ORDERS,
    PLACEMENTS,
    ArchitectureSpec,
    SpaceConfig,
    SpecError,
    suggest_architecture,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("search", "spaces", "trainers")
IMAGE = (1, 8, 8)

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---------------------------------------------------------------- SpaceConfig validation

BAD_SPACES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown family", dict(family="rnn"), "'rnn'"),
    ("empty widths", dict(widths=()), "'widths'"),
    ("empty activations", dict(activations=()), "'activations'"),
    ("empty orders", dict(orders=()), "'orders'"),
    ("empty bn choices", dict(bn_choices=()), "'bn_choices'"),
    ("empty placements", dict(placements=()), "'placements'"),
    ("nothing to choose for dropout", dict(dropout_kinds=(), allow_no_dropout=False), "dropout_kinds"),
    ("width 0", dict(widths=(0, 32)), "[0, 32]"),
    ("unknown activation", dict(activations=("relu", "swish")), "'swish'"),
    ("unknown dropout kind", dict(dropout_kinds=("spike",)), "'spike'"),
    ("channel kind for mlp", dict(dropout_kinds=("bernoulli", "channel")), "'channel'"),
    ("unknown order", dict(orders=("bn-bn-act",)), "'bn-bn-act'"),
    ("unknown placement", dict(placements=("tail",)), "'tail'"),
    ("rate range from 0", dict(dropout_rate=(0.0, 0.5)), "[0.0, 0.5]"),
    ("rate range to 1", dict(dropout_rate=(0.1, 1.0)), "[0.1, 1.0]"),
    ("rate range negative", dict(dropout_rate=(-0.1, 0.2)), "[-0.1, 0.2]"),
    ("rate range above 1", dict(dropout_rate=(0.5, 1.5)), "[0.5, 1.5]"),
    ("rate range reversed", dict(dropout_rate=(0.5, 0.1)), "[0.5, 0.1]"),
    ("depth from 0", dict(depth=(0, 2)), "[0, 2]"),
    ("depth reversed", dict(depth=(3, 1)), "[3, 1]"),
    ("lr from 0", dict(lr=(0.0, 1e-2)), "[0.0, 0.01]"),
    ("lr reversed", dict(lr=(1e-2, 1e-4)), "[0.01, 0.0001]"),
    ("lr negative", dict(lr=(-1e-3, 1e-2)), "[-0.001, 0.01]"),
    ("weight decay from 0 (log scale)", dict(weight_decay=(0.0, 1e-2)), "[0.0, 0.01]"),
    ("weight decay reversed", dict(weight_decay=(1e-2, 1e-6)), "[0.01, 1e-06]"),
]


@pytest.mark.parametrize(("overrides", "named"), [pytest.param(o, n, id=i) for i, o, n in BAD_SPACES])
def test_space_validation_rejects_with_the_bad_value_named(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(SpecError, match=re.escape(named)) as info:
        SpaceConfig(**overrides)
    assert "\n" not in str(info.value)


def test_space_defaults_are_valid_for_both_families() -> None:
    mlp, cnn = SpaceConfig.for_family("mlp"), SpaceConfig.for_family("cnn")
    assert mlp == SpaceConfig()
    assert "channel" not in mlp.dropout_kinds
    assert cnn.family == "cnn"
    assert set(cnn.dropout_kinds) == set(DROPOUT_KINDS)
    assert set(mlp.orders) == set(cnn.orders) == set(ORDERS)
    assert SpaceConfig.for_family("cnn", widths=(4,)).widths == (4,)
    with pytest.raises(SpecError, match="'channel'"):
        SpaceConfig.for_family("mlp", dropout_kinds=("channel",))


def test_space_normalises_names() -> None:
    space = SpaceConfig(activations=("LeakyReLU", "GELU"), dropout_kinds=("Dropout", "Uout"))
    assert space.activations == ("leaky_relu", "gelu")
    assert space.dropout_kinds == ("bernoulli", "uout")


@pytest.mark.parametrize(
    ("overrides", "field", "canonical"),
    [
        pytest.param(dict(orders=("bn_act_drop",)), "orders", ("bn-act-drop",), id="order with underscores"),
        pytest.param(dict(orders=("BN-act-drop",)), "orders", ("bn-act-drop",), id="order in capitals"),
        pytest.param(dict(placements=("Blocks",)), "placements", ("blocks",), id="placement in capitals"),
    ],
)
def test_space_keeps_canonical_spellings(
    overrides: dict[str, Any], field: str, canonical: tuple[str, ...]
) -> None:
    space = SpaceConfig(bn_choices=(True,), **overrides)
    assert getattr(space, field) == canonical
    # The canonical value is what the trial is asked for, so the spec builds as chosen.
    params = {"placement": "blocks"} if field == "placements" else {}
    trial = FixedTrial(_shared(bn=True, dropout="bernoulli", order="bn-act-drop") | params)
    spec = suggest_architecture(trial, space, (64,), 10)
    assert spec.blocks[0].order == ("bn", "act", "drop")
    assert spec.head_dropout is None


# ---------------------------------------------------------------- suggest_architecture


def _shared(
    *,
    depth: int = 2,
    bn: bool = True,
    dropout: str = "none",
    order: str | None = None,
    activation: str = "relu",
    placement: str = "blocks",
) -> dict[str, Any]:
    """The exact parameters a shared-block trial must be asked for."""
    params: dict[str, Any] = {
        "depth": depth,
        "width": 32,
        "placement": placement,
        "block.activation": activation,
        "block.bn": bn,
        "lr": 1e-3,
        "weight_decay": 1e-4,
    }
    if placement == "blocks":
        params["block.dropout"] = dropout
        if dropout != "none":
            params["block.dropout_rate"] = 0.25
    else:
        params |= {"head.dropout": dropout, "head.dropout_rate": 0.25}
    if order is not None:
        params["block.order"] = order
    return params


@pytest.mark.parametrize(
    ("params", "arrangement", "head"),
    [
        pytest.param(_shared(bn=False), "act", None, id="nothing to order: no order, no rate"),
        pytest.param(_shared(bn=True, order="act-bn-drop"), "act-BN", None, id="bn only: order, no rate"),
        pytest.param(
            _shared(bn=False, dropout="uout", order="drop-bn-act"), "Drop-act", None, id="dropout: rate"
        ),
        pytest.param(
            _shared(bn=True, dropout="gaussian", order="bn-drop-act"), "BN-Drop-act", None, id="both"
        ),
        pytest.param(
            _shared(bn=True, dropout="bernoulli", order="drop-bn-act", placement="head"),
            "BN-act",
            "bernoulli",
            id="head placement: no block dropout",
        ),
        pytest.param(
            _shared(bn=False, dropout="uout", placement="head"), "act", "uout", id="head placement, no bn"
        ),
    ],
)
def test_conditional_parameters_shared(params: dict[str, Any], arrangement: str, head: str | None) -> None:
    trial = FixedTrial(params)
    spec = suggest_architecture(trial, SpaceConfig(), (64,), 10)
    # FixedTrial refuses any name it was not given, and records what was asked: the two
    # together pin the exact parameter set.
    assert trial.params == params
    assert len(spec.blocks) == params["depth"]
    assert {b.arrangement for b in spec.blocks} == {arrangement}
    assert spec.head_dropout == head
    if head is None:
        assert spec.head_dropout_rate == 0.0
    else:
        assert spec.head_dropout_rate == 0.25
        assert all(b.dropout is None and b.dropout_rate == 0.0 for b in spec.blocks)


def test_per_block_parameters_are_named_by_block() -> None:
    params = {
        "depth": 2,
        "width": 32,
        "placement": "blocks",
        "block1.activation": "tanh",
        "block1.bn": False,
        "block1.dropout": "none",
        "block2.activation": "leaky_relu",
        "block2.bn": True,
        "block2.dropout": "uout",
        "block2.dropout_rate": 0.3,
        "block2.order": "drop-bn-act",
        "lr": 1e-3,
        "weight_decay": 1e-5,
    }
    trial = FixedTrial(params)
    spec = suggest_architecture(trial, SpaceConfig(share_blocks=False), (64,), 10)
    assert trial.params == params
    assert spec.describe() == "Linear(32)-Tanh | Linear(32)-Uout(0.30)-BN-LeakyReLU | Linear(10)"
    assert (spec.lr, spec.weight_decay) == (1e-3, 1e-5)


def test_shared_mode_gives_identical_blocks() -> None:
    params = _shared(depth=3, bn=True, dropout="gaussian", order="drop-act-bn", activation="elu")
    spec = suggest_architecture(FixedTrial(params), SpaceConfig(), (64,), 10)
    assert len(spec.blocks) == 3
    assert len(set(spec.blocks)) == 1
    assert spec.blocks[0].arrangement == "Drop-act-BN"


def test_spec_carries_family_shape_and_classes() -> None:
    spec = suggest_architecture(
        FixedTrial(_shared(dropout="channel", order="bn-act-drop")), SpaceConfig.for_family("cnn"), IMAGE, 7
    )
    assert isinstance(spec, ArchitectureSpec)
    assert (spec.family, spec.input_shape, spec.n_classes) == ("cnn", IMAGE, 7)
    assert spec.describe().startswith("Conv(32)-BN-ReLU-Dropout2d(0.25) | ")


# ---------------------------------------------------------------- random trials


def _random_specs(space: SpaceConfig, n: int, shape: tuple[int, ...]) -> list[tuple[dict, ArchitectureSpec]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    out = []
    for _ in range(n):
        trial = study.ask()
        spec = suggest_architecture(trial, space, shape, 10)
        out.append((dict(trial.params), spec))
        study.tell(trial, 0.0)
    return out


PARAM_NAME = re.compile(
    r"^(depth|width|placement|lr|weight_decay|head\.(dropout|dropout_rate)"
    r"|block\d*\.(activation|bn|dropout|dropout_rate|order))$"
)


@pytest.mark.parametrize("share", [True, False], ids=["shared", "per-block"])
def test_random_trials_ask_readable_conditional_parameters(share: bool) -> None:
    space = SpaceConfig.for_family("cnn", share_blocks=share, depth=(1, 3))
    for params, spec in _random_specs(space, 60, IMAGE):
        assert all(PARAM_NAME.match(name) for name in params), params
        prefixes = ["block."] if share else [f"block{i + 1}." for i in range(params["depth"])]
        assert {n.split(".")[0] + "." for n in params if n.startswith("block")} == set(prefixes)
        in_blocks = params["placement"] == "blocks"
        for prefix in prefixes:
            has_dropout = in_blocks and params[f"{prefix}dropout"] != "none"
            assert (f"{prefix}dropout" in params) == in_blocks
            assert (f"{prefix}dropout_rate" in params) == has_dropout
            assert (f"{prefix}order" in params) == (params[f"{prefix}bn"] or has_dropout)
        assert ("head.dropout" in params) == ("head.dropout_rate" in params) == (not in_blocks)
        assert params.get("head.dropout") != "channel"
        if share:
            assert len(set(spec.blocks)) == 1
        assert len(spec.blocks) == params["depth"]


def test_random_trials_reach_every_choice() -> None:
    space = SpaceConfig.for_family("cnn", share_blocks=False, depth=(1, 3))
    seen: Counter[tuple[str, Any]] = Counter()
    for params, spec in _random_specs(space, 200, IMAGE):
        seen[("placement", params["placement"])] += 1
        seen[("depth", params["depth"])] += 1
        seen[("head", spec.head_dropout)] += 1
        for block in spec.blocks:
            seen[("activation", block.activation)] += 1
            seen[("kind", block.dropout)] += 1
            seen[("bn", block.bn)] += 1
            seen[("arrangement", block.arrangement)] += 1
        for name, value in params.items():
            if name.endswith(".order"):
                seen[("order", value)] += 1
            if name.endswith("dropout_rate"):
                assert space.dropout_rate[0] <= value <= space.dropout_rate[1]
        assert space.lr[0] <= spec.lr <= space.lr[1]
        assert space.weight_decay[0] <= spec.weight_decay <= space.weight_decay[1]
    for key, values in [
        ("placement", PLACEMENTS),
        ("depth", (1, 2, 3)),
        ("activation", ACTIVATIONS),
        ("kind", (*DROPOUT_KINDS, None)),
        ("bn", (True, False)),
        ("order", ORDERS),
        ("head", ("bernoulli", "gaussian", "uout", None)),
    ]:
        missing = [v for v in values if not seen[(key, v)]]
        assert not missing, f"{key} never produced: {missing}"
    # Every full arrangement of BN, act and Drop, the harmful ones included.
    full = {a for (k, a) in seen if k == "arrangement" and len(a.split("-")) == 3}
    assert len(full) == 6


# ---------------------------------------------------------------- only spaces/ asks the trial


def _suggest_calls(path: Path) -> list[str]:
    """``x.suggest_*(...)`` calls in one file: any object's method, so aliases are caught too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} .{node.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.startswith("suggest_")
    ]


def test_only_spaces_calls_trial_suggest() -> None:
    calls = {
        pkg: [c for f in sorted((REPO / pkg).rglob("*.py")) for c in _suggest_calls(f)] for pkg in PACKAGES
    }
    outside = calls["search"] + calls["trainers"]
    assert not outside, f"trial.suggest_* called outside spaces/: {outside}"
    assert calls["spaces"], "the scan found no suggest_* calls in spaces/ at all: is it looking?"
