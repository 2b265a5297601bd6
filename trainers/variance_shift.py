"""Variance shift between Dropout and BatchNorm (Li et al., CVPR 2019), measured two ways.

**Paper statistic** (``measure_variance_shift``, the paper's Fig. 1): for every BN layer,
``moving_var`` is its running variance averaged over channels and ``real_var`` the
channel-averaged variance of its *input* when the whole model runs in eval mode (dropout
off, earlier BNs on their running stats). The shift is ``max(real/moving, moving/real)``.
Early in training it also measures running statistics that have not caught up yet.

**Dropout-induced statistic** (``measure_dropout_shift``): the same symmetric ratio between
a BN layer's input variance with dropout active and with dropout off, at the same weights,
every BN in eval mode. BN statistics play no part, so it isolates what dropout does.

Both rest on :class:`BNInputStats`, forward pre-hooks summing each BN input per channel in
float64, which the trainer can also attach to the validation pass it runs anyway.

Ratios: both variances ~0 gives 1.0 (nothing shifts), exactly one of them 0 gives
``float("inf")``; a BN layer the forward never reaches is left out.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from trainers.layers import is_batchnorm, is_dropout

log = logging.getLogger(__name__)

_TINY_VAR = 1e-12  # below this a variance counts as zero when both sides are


@dataclass(frozen=True)
class LayerShift:
    """One BN layer's paper statistic, as the dashboard shows it."""

    moving_var: float  # running_var averaged over channels
    real_var: float  # eval-mode input variance averaged over channels
    shift: float  # max(real/moving, moving/real), >= 1


def symmetric_ratio(a: float, b: float) -> float:
    """``max(a/b, b/a)``: 1.0 when both are ~0, ``inf`` when exactly one is 0."""
    if a <= _TINY_VAR and b <= _TINY_VAR:
        return 1.0
    if a == 0.0 or b == 0.0:
        return float("inf")
    return max(a / b, b / a)


class BNInputStats:
    """Per-channel float64 count, sum and sum of squares of every BN layer's input.

    Example::

        stats = BNInputStats().attach(model)
        validate(model)  # any forward passes
        stats.all_reduce(None)  # sums over DDP ranks, a no-op in one process
        shifts = stats.layer_shifts(model)
        stats.detach()
    """

    def __init__(self) -> None:
        self.enabled = True  # hooks accumulate only while True
        self._sums: dict[str, Tensor] = {}  # name -> (3, C): count, sum, sum of squares
        self._handles: list[RemovableHandle] = []

    def attach(self, model: nn.Module) -> BNInputStats:
        """Hook every BN layer of ``model``; sums start at zero."""
        self.detach()
        self._sums = {}
        for name, module in model.named_modules():
            if not is_batchnorm(module):
                continue
            # Allocated up front for every BN, reached or not, so that every rank packs
            # the same layout in all_reduce.
            device = _module_device(module, fallback=_module_device(model))
            self._sums[name] = torch.zeros(3, module.num_features, dtype=torch.float64, device=device)
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self) -> None:
        for acc in self._sums.values():
            acc.zero_()

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not self.enabled:
                return
            x = args[0].detach()
            # BN normalises over everything but dim 1, for (N, C) and (N, C, *spatial) alike.
            flat = x.to(torch.float64).transpose(0, 1).reshape(x.shape[1], -1)
            acc = self._sums[name]
            acc[0] += flat.shape[1]
            acc[1] += flat.sum(dim=1).to(acc.device)
            acc[2] += flat.square().sum(dim=1).to(acc.device)

        return hook

    def snapshot(self) -> BNInputStats:
        """A copy of the sums so far, with no hooks: e.g. the dropout-off sums of the first
        validation batches, which :func:`measure_dropout_shift` can then skip recomputing."""
        copy = BNInputStats()
        copy._sums = {name: acc.clone() for name, acc in self._sums.items()}
        return copy

    def all_reduce(self, fn: Callable[[Tensor], Tensor] | None = None) -> None:
        """Sum the raw sums across ranks with one collective call.

        ``fn`` takes and returns the packed float64 tensor (e.g. a DDP sum all-reduce);
        ``None`` uses ``torch.distributed`` when it is initialised, else does nothing.
        """
        if not self._sums:
            return
        if fn is None:
            if not (dist.is_available() and dist.is_initialized()):
                return
            fn = _dist_sum
        names = list(self._sums)  # named_modules order: the same on every rank
        reduced = fn(torch.cat([self._sums[n].flatten() for n in names]))
        offset = 0
        for name in names:
            size = self._sums[name].numel()
            self._sums[name] = reduced[offset : offset + size].view(3, -1).clone()
            offset += size

    def variances(self) -> dict[str, float]:
        """Channel-averaged unbiased input variance per BN layer the forward reached."""
        out: dict[str, float] = {}
        for name, acc in self._sums.items():
            count, total, squares = acc.cpu()
            n = float(count[0])
            if n < 2:
                log.debug("BN layer %r saw %d values per channel; left out", name, int(n))
                continue
            mean = total / n
            # Unbiased, like BN's running_var, so the two compare like for like.
            var = (squares / n - mean.square()).clamp(min=0.0) * (n / (n - 1))
            out[name] = float(var.mean())
        return out

    def layer_shifts(self, model: nn.Module) -> dict[str, LayerShift]:
        """Compare the measured input variances with each BN's running_var."""
        real = self.variances()
        out: dict[str, LayerShift] = {}
        for name, module in model.named_modules():
            if name not in real or not is_batchnorm(module):
                continue
            running_var = module.running_var
            if not isinstance(running_var, Tensor):
                log.debug("BN layer %r tracks no running stats; left out", name)
                continue
            moving = float(running_var.double().mean())
            out[name] = LayerShift(moving, real[name], symmetric_ratio(real[name], moving))
        return out


def measure_variance_stats(
    model: nn.Module, batches: Iterable[Any], max_batches: int | None = None
) -> dict[str, LayerShift]:
    """The paper's statistic per BN layer, with the moving and real variances behind it."""
    if not _has_batchnorm(model):
        return {}
    stats = BNInputStats()
    with _measuring(model):
        model.eval()
        stats.attach(model)
        try:
            for x in _inputs(batches, max_batches, _module_device(model)):
                model(x)
        finally:
            stats.detach()
    return stats.layer_shifts(model)


def measure_variance_shift(
    model: nn.Module, batches: Iterable[Any], max_batches: int | None = None
) -> dict[str, float]:
    """``{bn_name: max(real/moving, moving/real)}``; ``{}`` for a model without BN."""
    return {name: s.shift for name, s in measure_variance_stats(model, batches, max_batches).items()}


def measure_dropout_shift(
    model: nn.Module,
    batches: Iterable[Any],
    max_batches: int | None = 8,
    reduce: Callable[[Tensor], Tensor] | None = None,
    off: BNInputStats | None = None,
) -> dict[str, float]:
    """``{bn_name: ratio of input variance with dropout on vs off}``, BN in eval mode.

    ``reduce`` sums the raw sums across ranks (see :meth:`BNInputStats.all_reduce`), so every
    DDP rank measures its own shard and all get the statistic of the whole.

    ``off``, when given, holds the dropout-off sums of exactly these ``max_batches`` batches
    with the model as it is now (e.g. a :meth:`BNInputStats.snapshot` taken during the
    validation pass, which is that pass): only the dropout-on pass then runs."""
    if not _has_batchnorm(model):
        return {}
    dropouts = [m for m in model.modules() if is_dropout(m)]
    measure_off = off is None
    off = BNInputStats() if off is None else off.snapshot()
    on = BNInputStats()
    with _measuring(model):
        model.eval()
        if measure_off:
            off.attach(model)
        on.attach(model)
        try:
            # Both passes per batch, so a one-shot iterator serves both.
            for x in _inputs(batches, max_batches, _module_device(model)):
                if measure_off:
                    _set_training(dropouts, False)
                    off.enabled, on.enabled = True, False
                    model(x)
                if dropouts:
                    _set_training(dropouts, True)
                    off.enabled, on.enabled = False, True
                    model(x)
        finally:
            off.detach()
            on.detach()
    if reduce is not None:
        off.all_reduce(reduce)
        on.all_reduce(reduce)
    var_off = off.variances()
    if not dropouts:
        return dict.fromkeys(var_off, 1.0)
    var_on = on.variances()
    return {n: symmetric_ratio(var_on[n], var_off[n]) for n in var_off if n in var_on}


def _inputs(batches: Iterable[Any], max_batches: int | None, device: torch.device) -> Iterator[Tensor]:
    """Model inputs from bare tensors or ``(x, y, ...)`` batches, at most ``max_batches``."""
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1 or None, but got {max_batches=}")
    # islice stops before pulling one batch too many from a data loader.
    n = 0
    for batch in itertools.islice(batches, max_batches):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x.to(device)
        n += 1
    if n == 0:
        raise ValueError("no batches to measure the variance shift on: the iterable is empty")


@contextmanager
def _measuring(model: nn.Module) -> Iterator[None]:
    """No grad, and leave modes, BN buffers and the global RNG exactly as found."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.clone()) for m in model.modules() if is_batchnorm(m) for b in m.buffers(recurse=False)]
    device = _module_device(model)
    devices = [] if device.type == "cpu" else [_device_index(device)]
    # The dropout pass draws random numbers; a seeded training run must not notice.
    with torch.no_grad(), torch.random.fork_rng(devices=devices, device_type=device.type):
        try:
            yield
        finally:
            # Per-module flags, not .train(): a model may have been left in mixed modes.
            for module, mode in modes:
                module.training = mode
            for buffer, saved in buffers:
                buffer.copy_(saved)


def _set_training(modules: list[nn.Module], mode: bool) -> None:
    for module in modules:
        module.training = mode


def _has_batchnorm(model: nn.Module) -> bool:
    return any(is_batchnorm(m) for m in model.modules())


def _module_device(module: nn.Module, fallback: torch.device | None = None) -> torch.device:
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return fallback or torch.device("cpu")


def _device_index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    return int(torch.get_device_module(device.type).current_device())


def _dist_sum(packed: Tensor) -> Tensor:
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed
