"""The builder: every arrangement the space can produce builds and runs; layer factories; the
multiplicative-noise dropouts against their closed-form mean and variance."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import pytest
import torch
from optuna.trial import FixedTrial
from torch import nn

from spaces import (
    ACTIVATIONS,
    ORDERS,
    ArchitectureSpec,
    BlockSpec,
    SpaceConfig,
    SpecError,
    suggest_architecture,
)
from trainers.layers import GaussianDropout, Uout, create_act, create_dropout, is_dropout
from trainers.model import CandidateNet, build_model, count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCH = 4
WIDTH = 4
N_CLASSES = 10

# (family, input shape, dropout kinds the family's space offers, conv/BN module types)
FAMILY_INPUTS = [
    ("mlp", (1, 8, 8), ("none", "bernoulli", "gaussian", "uout"), nn.Linear, nn.BatchNorm1d),
    ("mlp", (64,), ("none", "bernoulli", "gaussian", "uout"), nn.Linear, nn.BatchNorm1d),
    ("cnn", (1, 8, 8), ("none", "bernoulli", "channel", "gaussian", "uout"), nn.Conv2d, nn.BatchNorm2d),
    ("cnn", (1, 40), ("none", "bernoulli", "channel", "gaussian", "uout"), nn.Conv1d, nn.BatchNorm1d),
]
_CHANNEL = {1: nn.Dropout1d, 2: nn.Dropout2d}
_KIND_TYPE = {"bernoulli": nn.Dropout, "gaussian": GaussianDropout, "uout": Uout}

ARRANGEMENTS = [
    pytest.param(
        family,
        shape,
        order,
        kind,
        act,
        bn,
        layer,
        norm,
        id=f"{family}-{'x'.join(map(str, shape))}-{order}-{kind}-{act}-bn{int(bn)}",
    )
    for family, shape, kinds, layer, norm in FAMILY_INPUTS
    for order, kind, act, bn in itertools.product(ORDERS, kinds, ACTIVATIONS, (True, False))
]


@functools.cache
def _space(family: str) -> SpaceConfig:
    return SpaceConfig.for_family(family, depth=(2, 2), widths=(WIDTH,))


def _trial_params(order: str, kind: str, act: str, bn: bool, placement: str = "blocks") -> dict[str, Any]:
    """What a shared-block trial answers; extra names are simply not asked for."""
    return {
        "depth": 2,
        "width": WIDTH,
        "placement": placement,
        "block.activation": act,
        "block.bn": bn,
        "block.dropout": kind,
        "block.dropout_rate": 0.3,
        "block.order": order,
        "head.dropout": "gaussian",
        "head.dropout_rate": 0.3,
        "lr": 1e-3,
        "weight_decay": 1e-4,
    }


def _spec(family: str, shape: tuple[int, ...], **params: Any) -> ArchitectureSpec:
    return suggest_architecture(FixedTrial(_trial_params(**params)), _space(family), shape, N_CLASSES)


@pytest.mark.parametrize(("family", "shape", "order", "kind", "act", "bn", "layer", "norm"), ARRANGEMENTS)
def test_every_arrangement_builds_and_runs(
    family: str,
    shape: tuple[int, ...],
    order: str,
    kind: str,
    act: str,
    bn: bool,
    layer: type[nn.Module],
    norm: type[nn.Module],
) -> None:
    spec = _spec(family, shape, order=order, kind=kind, act=act, bn=bn)
    model = build_model(spec)
    x = torch.randn(BATCH, *shape)
    with torch.no_grad():
        out = model.train()(x)
        assert out.shape == (BATCH, N_CLASSES)
        assert torch.isfinite(out).all()
        assert model.eval()(x).shape == (BATCH, N_CLASSES)
    # The block's modules are exactly the spec's components, in the spec's order.
    present = [c for c in order.split("-") if c != "drop" or kind != "none"]
    present = [c for c in present if c != "bn" or bn]
    for block in model.blocks:
        assert [name for name, _ in block.named_children()] == ["layer", *present]
        assert type(block.layer) is layer
        assert (block.layer.bias is None) == bn  # BN's shift makes the bias redundant
        if bn:
            assert type(block.bn) is norm
        if kind != "none":
            expected = _CHANNEL[len(shape) - 1] if kind == "channel" else _KIND_TYPE[kind]
            assert type(block.drop) is expected
            assert block.drop.p == 0.3


@pytest.mark.parametrize(("family", "shape"), [("mlp", (64,)), ("cnn", (1, 8, 8)), ("cnn", (1, 40))])
def test_head_placement_builds_head_dropout_only(family: str, shape: tuple[int, ...]) -> None:
    spec = _spec(family, shape, order="drop-bn-act", kind="bernoulli", act="relu", bn=True, placement="head")
    model = build_model(spec)
    assert spec.head_dropout == "gaussian"
    assert isinstance(model.head_drop, GaussianDropout)
    assert [n for n, m in model.named_modules() if is_dropout(m)] == ["head_drop"]
    assert model(torch.randn(BATCH, *shape)).shape == (BATCH, N_CLASSES)


@pytest.mark.parametrize(
    ("bns", "names"),
    [
        ((True, True, True), ["blocks.0.bn", "blocks.1.bn", "blocks.2.bn"]),
        ((False, True, False), ["blocks.1.bn"]),
        ((True, False, True), ["blocks.0.bn", "blocks.2.bn"]),
        ((False, False, False), []),
    ],
)
def test_bn_layer_names_exactly_where_bn_is(bns: tuple[bool, ...], names: list[str]) -> None:
    spec = ArchitectureSpec(
        "mlp", (64,), N_CLASSES, tuple(BlockSpec(8, bn=b, dropout="bernoulli", dropout_rate=0.2) for b in bns)
    )
    model = build_model(spec)
    found = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert found == names
    assert [n for n, _ in model.named_modules() if n.endswith(".bn")] == names


@pytest.mark.parametrize("kind", ["bernoulli", "channel", "gaussian", "uout"])
def test_eval_turns_every_dropout_off(kind: str) -> None:
    block = BlockSpec(8, "relu", True, kind, 0.5, ("drop", "bn", "act"))
    spec = ArchitectureSpec(
        "cnn", (1, 8, 8), N_CLASSES, (block, block), head_dropout="uout", head_dropout_rate=0.5
    )
    model = build_model(spec)
    x = torch.randn(16, 1, 8, 8)
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))  # dropout active: masks differ
        model.eval()
        assert torch.equal(model(x), model(x))


def test_count_parameters_oracle() -> None:
    spec = ArchitectureSpec("mlp", (64,), N_CLASSES, (BlockSpec(16, bn=True), BlockSpec(8, bn=False)))
    # Linear without bias + BN (weight, bias); Linear with bias; head.
    expected = 64 * 16 + 2 * 16 + (16 * 8 + 8) + (8 * N_CLASSES + N_CLASSES)
    assert count_parameters(build_model(spec)) == expected


def test_build_model_is_a_candidate_net_holding_its_spec() -> None:
    spec = ArchitectureSpec("mlp", (64,), N_CLASSES, (BlockSpec(8),))
    model = build_model(spec)
    assert isinstance(model, CandidateNet)
    assert model.spec is spec


# ---------------------------------------------------------------- factories


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("relu", nn.ReLU),
        ("leaky_relu", nn.LeakyReLU),
        ("LeakyReLU", nn.LeakyReLU),
        ("leaky-relu", nn.LeakyReLU),
        ("elu", nn.ELU),
        ("GELU", nn.GELU),
        ("silu", nn.SiLU),
        ("Tanh", nn.Tanh),
        ("sigmoid", nn.Sigmoid),
    ],
)
def test_create_act(name: str, cls: type[nn.Module]) -> None:
    act = create_act(name)
    assert type(act) is cls
    if isinstance(act, nn.LeakyReLU):
        assert act.negative_slope == 0.01


def test_create_act_covers_every_activation_and_rejects_others() -> None:
    assert len({type(create_act(a)) for a in ACTIVATIONS}) == len(ACTIVATIONS)
    with pytest.raises(SpecError, match="'swish'"):
        create_act("swish")


@pytest.mark.parametrize(
    ("kind", "rate", "conv_dims", "cls"),
    [
        (None, 0.3, 0, None),
        ("none", 0.3, 0, None),
        ("none", 0.3, 2, None),
        ("bernoulli", 0.0, 0, None),
        ("bernoulli", 0.3, 0, nn.Dropout),
        ("bernoulli", 0.3, 2, nn.Dropout),
        ("channel", 0.3, 1, nn.Dropout1d),
        ("channel", 0.3, 2, nn.Dropout2d),
        ("channel", 0.3, 3, nn.Dropout3d),
        ("gaussian", 0.3, 0, GaussianDropout),
        ("uout", 0.3, 2, Uout),
    ],
)
def test_create_dropout(kind: str | None, rate: float, conv_dims: int, cls: type[nn.Module] | None) -> None:
    layer = create_dropout(kind, rate, conv_dims)
    if cls is None:
        assert layer is None
    else:
        assert type(layer) is cls
        assert layer is not None and layer.p == rate
        assert is_dropout(layer)


@pytest.mark.parametrize(
    ("kind", "conv_dims", "named"),
    [("channel", 0, "conv_dims=0"), ("channel", 4, "conv_dims=4"), ("spike", 0, "'spike'")],
)
def test_create_dropout_rejects(kind: str, conv_dims: int, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        create_dropout(kind, 0.3, conv_dims)


# ---------------------------------------------------------------- noise oracles


def _noise_var(rate: float, kind: str) -> float:
    """Variance of the multiplier: Gaussian N(1, q/(1-q)), Uout U(1-b, 1+b)."""
    return rate / (1 - rate) if kind == "gaussian" else rate**2 / 3


@pytest.mark.parametrize(
    ("kind", "rate"), [("gaussian", 0.1), ("gaussian", 0.5), ("uout", 0.3), ("uout", 0.5), ("uout", 0.9)]
)
@pytest.mark.parametrize(("mean", "var"), [(3.0, 0.0), (0.0, 1.0), (1.5, 4.0)])
def test_noise_is_mean_preserving_with_the_documented_variance(
    kind: str, rate: float, mean: float, var: float
) -> None:
    layer = create_dropout(kind, rate)
    assert layer is not None
    gen = torch.Generator().manual_seed(0)
    x = (mean + var**0.5 * torch.randn(400_000, generator=gen)).double()
    torch.manual_seed(1)
    y = layer.train()(x)
    s2 = _noise_var(rate, kind)
    # x * (1 + n), n independent of x with E n = 0: E y = E x and
    # Var y = Var x + s2 * E[x^2] = v + s2 * (c^2 + v).
    expected_var = var + s2 * (mean**2 + var)
    assert float(y.mean()) == pytest.approx(float(x.mean()), abs=0.01 * (1 + expected_var**0.5))
    assert float(y.var()) == pytest.approx(expected_var, rel=0.02)
    # The paper's ratio for zero-mean input: (3 + b^2)/3 for Uout, 1/(1-q) for Gaussian.
    if mean == 0.0:
        ratio = (3 + rate**2) / 3 if kind == "uout" else 1 / (1 - rate)
        assert float(y.var() / x.var()) == pytest.approx(ratio, rel=0.02)


@pytest.mark.parametrize("cls", [GaussianDropout, Uout])
def test_noise_is_identity_in_eval_and_at_rate_zero(cls: type[nn.Module]) -> None:
    x = torch.randn(64, 8)
    assert torch.equal(cls(0.5).eval()(x), x)
    assert torch.equal(cls(0.0).train()(x), x)
    assert not torch.equal(cls(0.5).train()(x), x)


def test_uout_noise_stays_within_its_bounds() -> None:
    x = torch.ones(100_000)
    y = Uout(0.4).train()(x)
    assert float(y.min()) >= 0.6 - 1e-6
    assert float(y.max()) <= 1.4 + 1e-6
