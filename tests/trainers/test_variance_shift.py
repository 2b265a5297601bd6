"""Oracle tests: the measured shifts against the closed forms in DESIGN.md (Li et al. 2019)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

from trainers.layers import GaussianDropout, Uout
from trainers.variance_shift import (
    BNInputStats,
    LayerShift,
    measure_dropout_shift,
    measure_variance_shift,
    measure_variance_stats,
    symmetric_ratio,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEATURES = 64
SAMPLES = 20_000


def _data(mean: float = 0.0, var: float = 1.0, shape: tuple[int, ...] = (FEATURES,)) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    return mean + var**0.5 * torch.randn(SAMPLES, *shape, generator=gen)


def _fit_bn_stats(model: nn.Module, x: Tensor, batch: int = 500) -> None:
    """'Train' only the BN running stats: train-mode forwards, no optimiser.

    With ``momentum=None`` BN keeps a cumulative average, so running_var ends up the
    training-mode variance of its input, as the formulas assume.
    """
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for chunk in x.split(batch):
            model(chunk)


def _bn(features: int = FEATURES) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(features, momentum=None)


def _only(shifts: dict[str, float]) -> float:
    assert len(shifts) == 1, shifts
    return next(iter(shifts.values()))


@pytest.mark.parametrize(
    ("noise", "expected"),
    [
        (nn.Dropout(0.1), 1 / 0.9),
        (nn.Dropout(0.3), 1 / 0.7),
        (nn.Dropout(0.5), 2.0),
        (Uout(0.3), (3 + 0.3**2) / 3),
        (Uout(0.5), (3 + 0.5**2) / 3),
        (GaussianDropout(0.2), 1 + 0.2 / 0.8),
        (GaussianDropout(0.5), 1 + 0.5 / 0.5),
    ],
    ids=str,
)
def test_noise_directly_before_bn_matches_formula(noise: nn.Module, expected: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, FEATURES, bias=False), noise, _bn())
    x = _data()
    _fit_bn_stats(model, x)
    batches = list(x.split(1000))
    assert _only(measure_variance_shift(model, batches)) == pytest.approx(expected, rel=0.03)
    # Untouched BN stats aside, the dropout-induced statistic sees the same ratio.
    assert _only(measure_dropout_shift(model, batches)) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(
    ("mean", "var", "q"),
    [(1.0, 1.0, 0.3), (2.0, 0.5, 0.5), (-1.5, 2.0, 0.1)],
)
def test_mean_shifted_input_matches_formula(mean: float, var: float, q: float) -> None:
    p = 1 - q
    expected = 1 / p + (mean**2 / var) * (1 / p - 1)
    model = nn.Sequential(nn.Dropout(q), _bn())
    x = _data(mean, var)
    _fit_bn_stats(model, x)
    assert _only(measure_variance_shift(model, x.split(1000))) == pytest.approx(expected, rel=0.03)


def test_dropout_after_last_bn_is_shift_free() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, FEATURES), _bn(), nn.ReLU(), nn.Dropout(0.5))
    x = _data()
    _fit_bn_stats(model, x)
    assert _only(measure_variance_shift(model, x.split(1000))) == pytest.approx(1.0, rel=0.02)
    assert _only(measure_dropout_shift(model, x.split(1000))) == 1.0


@pytest.mark.parametrize("q", [0.2, 0.5])
@pytest.mark.parametrize(
    ("shape", "noise", "norm"),
    [
        ((8, 16), nn.Dropout1d, nn.BatchNorm1d),  # (N, C, L)
        ((8, 4, 4), nn.Dropout2d, nn.BatchNorm2d),  # (N, C, H, W)
    ],
)
def test_channel_dropout_on_feature_maps(
    shape: tuple[int, ...], noise: type[nn.Module], norm: type[nn.Module], q: float
) -> None:
    model = nn.Sequential(noise(q), norm(shape[0], momentum=None))
    x = _data(shape=shape)[:4000]
    _fit_bn_stats(model, x, batch=250)
    assert _only(measure_variance_shift(model, x.split(500))) == pytest.approx(1 / (1 - q), rel=0.03)
    assert _only(measure_dropout_shift(model, x.split(500))) == pytest.approx(1 / (1 - q), rel=0.03)


def test_model_without_bn_gives_empty() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    batches = [torch.randn(8, 4)]
    assert measure_variance_shift(model, batches) == {}
    assert measure_variance_stats(model, batches) == {}
    assert measure_dropout_shift(model, batches) == {}


def test_bn_without_dropout_has_dropout_shift_exactly_one() -> None:
    model = nn.Sequential(nn.Linear(8, 8), _bn(8), nn.ReLU(), nn.Linear(8, 8), _bn(8))
    shifts = measure_dropout_shift(model, [torch.randn(64, 8) for _ in range(3)])
    assert shifts == {"1": 1.0, "4": 1.0}


def test_dropout_shift_does_not_depend_on_bn_lag() -> None:
    # Untrained BN: running_var is still 1 while its input has variance 4.
    model = nn.Sequential(nn.Dropout(0.5), _bn())
    batches = list(_data(var=4.0).split(1000))
    paper = _only(measure_variance_shift(model, batches))
    induced = _only(measure_dropout_shift(model, batches))
    assert paper == pytest.approx(4.0, rel=0.03)  # the lag, not the dropout
    assert induced == pytest.approx(2.0, rel=0.03)


def _mixed_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 8), nn.Dropout(0.3), _bn(8), nn.ReLU(), nn.Linear(8, 8), Uout(0.5), _bn(8)
    )


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("measure", [measure_variance_shift, measure_dropout_shift])
def test_state_is_left_as_found(mode: str, measure: Callable[..., dict[str, float]]) -> None:
    model = _mixed_model()
    _fit_bn_stats(model, torch.randn(256, 8), batch=64)
    model.train(mode == "train")
    if mode == "mixed":
        model[2].eval()
        model[5].eval()
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    modes = [m.training for m in model.modules()]
    buffers = [b.clone() for b in model.buffers()]
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    batches = [torch.randn(32, 8) for _ in range(4)]
    rng = torch.get_rng_state()

    measure(model, batches)

    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers, strict=True))
    now = [p.grad for p in model.parameters()]
    assert all(a is not None and torch.equal(a, g) for a, g in zip(now, grads, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)


def test_pairs_and_bare_tensors_agree() -> None:
    model = _mixed_model()
    _fit_bn_stats(model, torch.randn(512, 8), batch=64)
    xs = [torch.randn(64, 8) for _ in range(4)]
    pairs = [(x, torch.zeros(64, dtype=torch.long)) for x in xs]
    assert measure_variance_shift(model, pairs) == measure_variance_shift(model, xs)
    torch.manual_seed(3)
    on_pairs = measure_dropout_shift(model, pairs)
    torch.manual_seed(3)
    assert measure_dropout_shift(model, xs) == on_pairs


@pytest.mark.parametrize("measure", [measure_variance_shift, measure_dropout_shift])
def test_max_batches_is_honoured(measure: Callable[..., dict[str, float]]) -> None:
    pulled = 0

    def batches() -> Iterator[Tensor]:
        nonlocal pulled
        for _ in range(10):
            pulled += 1
            yield torch.randn(16, 8)

    measure(_mixed_model(), batches(), max_batches=3)
    assert pulled == 3


@pytest.mark.parametrize("measure", [measure_variance_shift, measure_dropout_shift])
def test_bad_batches_fail_clearly(measure: Callable[..., dict[str, float]]) -> None:
    with pytest.raises(ValueError, match="empty"):
        measure(_mixed_model(), [])
    with pytest.raises(ValueError, match="max_batches=0"):
        measure(_mixed_model(), [torch.randn(4, 8)], max_batches=0)


class _SkipsOneBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = _bn(4)
        self.unused = _bn(4)

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x)


def test_bn_never_reached_is_left_out() -> None:
    model = _SkipsOneBN()
    batches = [torch.randn(32, 4)]
    assert set(measure_variance_shift(model, batches)) == {"used"}
    assert set(measure_dropout_shift(model, batches)) == {"used"}


def test_stats_match_direct_variance() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3)).eval()
    x = torch.randn(20, 3, 5, 5) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 1.0
    stats = BNInputStats().attach(model)
    with torch.no_grad():
        for chunk in x.split(7):
            model(chunk)
    stats.detach()
    per_channel = x.transpose(0, 1).reshape(3, -1).double().var(dim=1)  # unbiased
    assert stats.variances()["0"] == pytest.approx(float(per_channel.mean()), rel=1e-9)
    shift = stats.layer_shifts(model)["0"]
    assert shift == LayerShift(1.0, stats.variances()["0"], stats.variances()["0"])


def test_all_reduce_packs_one_call_and_keeps_variances() -> None:
    model = _mixed_model().eval()
    stats = BNInputStats().attach(model)
    with torch.no_grad():
        model(torch.randn(2000, 8))
    before = stats.variances()
    calls: list[Tensor] = []

    def doubling(packed: Tensor) -> Tensor:
        calls.append(packed)
        return packed * 2

    stats.all_reduce(doubling)
    assert len(calls) == 1 and calls[0].dtype == torch.float64
    assert calls[0].numel() == 2 * 3 * 8  # two BN layers, (count, sum, sumsq) x 8 channels
    # Doubling every sum only moves the n/(n-1) correction, negligible at n = 2000.
    assert stats.variances() == pytest.approx(before, rel=1e-3)
    stats.all_reduce(None)  # no process group: a no-op
    stats.reset()
    assert stats.variances() == {}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (2.0, 1.0, 2.0),
        (1.0, 4.0, 4.0),
        (3.0, 3.0, 1.0),
        (0.0, 0.0, 1.0),  # nothing to shift
        (1e-15, 0.0, 1.0),  # both ~0
        (0.0, 1.0, float("inf")),  # exactly one side 0
        (2.0, 0.0, float("inf")),
    ],
)
def test_symmetric_ratio(a: float, b: float, expected: float) -> None:
    assert symmetric_ratio(a, b) == expected
