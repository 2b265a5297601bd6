"""BlockSpec / ArchitectureSpec: validation, name normalisation, readable strings, round trips."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from spaces.spec import ACTIVATIONS, DROPOUT_KINDS, ORDERS, ArchitectureSpec, BlockSpec, SpecError

MLP_INPUT = (64,)
IMAGE = (1, 8, 8)


def _arch(**overrides: Any) -> ArchitectureSpec:
    kwargs: dict[str, Any] = dict(family="mlp", input_shape=MLP_INPUT, n_classes=10, blocks=(BlockSpec(16),))
    kwargs.update(overrides)
    return ArchitectureSpec(**kwargs)


def _block(**overrides: Any) -> BlockSpec:
    return BlockSpec(**{"width": 16, **overrides})


# (id, constructor, text the message must contain: the bad value)
BAD_SPECS: list[tuple[str, Any, str]] = [
    ("width 0", lambda: _block(width=0), "0"),
    ("width negative", lambda: _block(width=-3), "-3"),
    ("unknown activation", lambda: _block(activation="swish"), "'swish'"),
    ("unknown dropout kind", lambda: _block(dropout="spike", dropout_rate=0.3), "'spike'"),
    ("rate 0 with a kind", lambda: _block(dropout="bernoulli", dropout_rate=0.0), "0.0"),
    ("rate 1", lambda: _block(dropout="bernoulli", dropout_rate=1.0), "1.0"),
    ("rate negative", lambda: _block(dropout="gaussian", dropout_rate=-0.1), "-0.1"),
    ("rate above 1", lambda: _block(dropout="uout", dropout_rate=1.5), "1.5"),
    ("rate without kind", lambda: _block(dropout=None, dropout_rate=0.3), "0.3"),
    ("order repeats", lambda: _block(order=("bn", "act", "act")), "('bn', 'act', 'act')"),
    ("order unknown part", lambda: _block(order=("bn", "act", "pool")), "pool"),
    ("order misses bn", lambda: _block(bn=True, order=("act",)), "bn"),
    (
        "order misses drop",
        lambda: _block(bn=False, dropout="bernoulli", dropout_rate=0.2, order=("act", "bn")),
        "drop",
    ),
    ("order misses act", lambda: _block(bn=False, order=("bn", "drop")), "act"),
    (
        "channel dropout on mlp",
        lambda: _arch(blocks=(_block(dropout="channel", dropout_rate=0.2),)),
        "channel",
    ),
    ("cnn on 1-D features", lambda: _arch(family="cnn", input_shape=(64,)), "(64,)"),
    ("cnn on 4-D samples", lambda: _arch(family="cnn", input_shape=(1, 2, 8, 8)), "(1, 2, 8, 8)"),
    ("unknown family", lambda: _arch(family="rnn"), "'rnn'"),
    ("empty blocks", lambda: _arch(blocks=()), "at least one block"),
    ("n_classes 1", lambda: _arch(n_classes=1), "1"),
    ("n_classes 0", lambda: _arch(n_classes=0), "0"),
    ("zero-sized input", lambda: _arch(input_shape=(0,)), "(0,)"),
    ("lr 0", lambda: _arch(lr=0.0), "0.0"),
    ("lr negative", lambda: _arch(lr=-1e-3), "-0.001"),
    ("weight decay negative", lambda: _arch(weight_decay=-1e-4), "-0.0001"),
    ("head channel dropout", lambda: _arch(head_dropout="channel", head_dropout_rate=0.2), "channel"),
    ("head unknown kind", lambda: _arch(head_dropout="spike", head_dropout_rate=0.2), "'spike'"),
    ("head rate 0", lambda: _arch(head_dropout="bernoulli", head_dropout_rate=0.0), "0.0"),
    ("head rate 1", lambda: _arch(head_dropout="uout", head_dropout_rate=1.0), "1.0"),
]


@pytest.mark.parametrize(("make", "named"), [pytest.param(m, n, id=i) for i, m, n in BAD_SPECS])
def test_validation_rejects_with_the_bad_value_named(make: Any, named: str) -> None:
    with pytest.raises(SpecError, match=re.escape(named)) as info:
        make()
    assert "\n" not in str(info.value)  # one clear line


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_head_rate_without_kind_is_rejected() -> None:
    with pytest.raises(SpecError, match=re.escape("0.3")):
        _arch(head_dropout=None, head_dropout_rate=0.3)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("relu", "relu"),
        ("ReLU", "relu"),
        (" ReLU ", "relu"),
        ("LeakyReLU", "leaky_relu"),
        ("leaky-relu", "leaky_relu"),
        ("Leaky_ReLU", "leaky_relu"),
        ("GELU", "gelu"),
        ("SiLU", "silu"),
        ("Sigmoid", "sigmoid"),
    ],
)
def test_activation_names_are_normalised(given: str, canonical: str) -> None:
    assert _block(activation=given).activation == canonical


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("bernoulli", "bernoulli"), ("Dropout", "bernoulli"), ("Gaussian", "gaussian"), ("UOUT", "uout")],
)
def test_dropout_kinds_are_normalised(given: str, canonical: str) -> None:
    assert _block(dropout=given, dropout_rate=0.2).dropout == canonical
    assert _arch(head_dropout=given, head_dropout_rate=0.2).head_dropout == canonical


def test_family_name_is_normalised() -> None:
    assert _arch(family="MLP").family == "mlp"
    assert _arch(family=" Cnn", input_shape=IMAGE).family == "cnn"


def test_constants_cover_the_issue() -> None:
    assert set(ACTIVATIONS) >= {"relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"}
    assert set(DROPOUT_KINDS) == {"bernoulli", "channel", "gaussian", "uout"}
    assert len(ORDERS) == len(set(ORDERS)) == 6
    assert all(sorted(o.split("-")) == ["act", "bn", "drop"] for o in ORDERS)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            _arch(
                input_shape=IMAGE,
                blocks=(
                    BlockSpec(128, "relu", True, "bernoulli", 0.3, ("bn", "act", "drop")),
                    BlockSpec(64, "relu", True),
                ),
            ),
            "Linear(128)-BN-ReLU-Dropout(0.30) | Linear(64)-BN-ReLU | Linear(10)",
            id="mlp from DESIGN",
        ),
        pytest.param(
            _arch(
                family="cnn",
                input_shape=IMAGE,
                blocks=(BlockSpec(8, "relu", True, "channel", 0.1, ("drop", "bn", "act")),),
            ),
            "Conv(8)-Dropout2d(0.10)-BN-ReLU | Pool-Linear(10)",
            id="cnn 2-D channel dropout before BN",
        ),
        pytest.param(
            _arch(
                family="cnn",
                input_shape=(1, 40),
                blocks=(BlockSpec(4, "tanh", False, "channel", 0.25, ("act", "drop", "bn")),),
            ),
            "Conv(4)-Tanh-Dropout1d(0.25) | Pool-Linear(10)",
            id="cnn 1-D without BN",
        ),
        pytest.param(
            _arch(blocks=(BlockSpec(32, "gelu", True),), head_dropout="uout", head_dropout_rate=0.5),
            "Linear(32)-BN-GELU | Uout(0.50)-Linear(10)",
            id="mlp head dropout",
        ),
        pytest.param(
            _arch(
                family="cnn",
                input_shape=IMAGE,
                n_classes=3,
                blocks=(BlockSpec(8, "silu", True, order=("act", "bn", "drop")),),
                head_dropout="gaussian",
                head_dropout_rate=0.25,
            ),
            "Conv(8)-SiLU-BN | Pool-GaussianDropout(0.25)-Linear(3)",
            id="cnn head dropout",
        ),
        pytest.param(
            _arch(
                blocks=(
                    BlockSpec(16, "leaky_relu", False, "gaussian", 0.125, ("drop", "act", "bn")),
                    BlockSpec(8, "elu", True, "uout", 0.5, ("act", "drop", "bn")),
                    BlockSpec(4, "sigmoid", False),
                ),
            ),
            "Linear(16)-GaussianDropout(0.12)-LeakyReLU | Linear(8)-ELU-Uout(0.50)-BN"
            " | Linear(4)-Sigmoid | Linear(10)",
            id="mlp mixed blocks",
        ),
    ],
)
def test_describe(spec: ArchitectureSpec, expected: str) -> None:
    assert spec.describe() == expected


@pytest.mark.parametrize(
    ("bn", "dropout", "order", "arrangement"),
    [
        (True, "bernoulli", ("bn", "act", "drop"), "BN-act-Drop"),
        (True, "bernoulli", ("drop", "bn", "act"), "Drop-BN-act"),
        (True, "uout", ("act", "drop", "bn"), "act-Drop-BN"),
        (False, "bernoulli", ("drop", "bn", "act"), "Drop-act"),
        (True, None, ("act", "drop", "bn"), "act-BN"),
        (True, None, ("bn", "act"), "BN-act"),
        (False, None, ("drop", "act", "bn"), "act"),
        (False, None, ("act",), "act"),
    ],
)
def test_arrangement_keeps_only_present_components(
    bn: bool, dropout: str | None, order: tuple[str, ...], arrangement: str
) -> None:
    block = BlockSpec(8, bn=bn, dropout=dropout, dropout_rate=0.2 if dropout else 0.0, order=order)
    assert block.arrangement == arrangement
    assert len(block.order) == 1 + bn + (dropout is not None)


def test_specs_are_frozen() -> None:
    spec = _arch()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.blocks[0].width = 3  # type: ignore[misc]


ROUND_TRIP = [
    _arch(),
    _arch(
        family="cnn",
        input_shape=IMAGE,
        blocks=(
            BlockSpec(8, "elu", True, "channel", 0.1, ("drop", "bn", "act")),
            BlockSpec(16, "leaky_relu", False, "uout", 0.4, ("act", "drop", "bn")),
        ),
        head_dropout="gaussian",
        head_dropout_rate=0.3,
        lr=3e-3,
        weight_decay=0.0,
    ),
]


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_dict_round_trip(spec: ArchitectureSpec) -> None:
    assert ArchitectureSpec.from_dict(spec.to_dict()) == spec
    # Through JSON (tuples become lists), as a stored user attr would be.
    again = ArchitectureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.describe() == spec.describe()
    assert isinstance(again.blocks[0], BlockSpec)
    assert isinstance(again.blocks[0].order, tuple)


def test_from_dict_validates() -> None:
    data = _arch().to_dict()
    data["blocks"][0]["width"] = 0
    with pytest.raises(SpecError, match="0"):
        ArchitectureSpec.from_dict(data)


@pytest.mark.parametrize(
    ("family", "shape", "conv_dims"),
    [("mlp", (64,), 0), ("mlp", IMAGE, 0), ("cnn", (1, 40), 1), ("cnn", IMAGE, 2)],
)
def test_conv_dims(family: str, shape: tuple[int, ...], conv_dims: int) -> None:
    assert _arch(family=family, input_shape=shape).conv_dims == conv_dims


def test_has_bn() -> None:
    assert _arch(blocks=(BlockSpec(8, bn=False), BlockSpec(8, bn=True))).has_bn
    assert not _arch(blocks=(BlockSpec(8, bn=False),)).has_bn
