"""Specs -> ``nn.Module``: the builder reads a frozen spec and never asks a trial anything."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from spaces.plugins import call_family, load_object
from spaces.spec import ArchitectureSpec, BlockSpec
from trainers.layers import create_act, create_dropout, create_norm


def _ordered(block: BlockSpec, conv_dims: int) -> list[tuple[str, nn.Module]]:
    """BN, activation and dropout in the block's order; stable names (``bn``, ``act``, ``drop``)
    so variance-shift reports read ``blocks.1.bn``."""
    layers: list[tuple[str, nn.Module]] = []
    for component in block.order:
        if component == "bn":
            layers.append(("bn", create_norm(block.width, conv_dims)))
        elif component == "act":
            layers.append(("act", create_act(block.activation)))
        else:
            drop = create_dropout(block.dropout, block.dropout_rate, conv_dims)
            if drop is not None:
                layers.append(("drop", drop))
    return layers


def _conv(conv_dims: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[conv_dims]


def build_block(block: BlockSpec, in_width: int, conv_dims: int) -> nn.Sequential:
    """Linear/Conv, then BN, activation and dropout in the block's order."""
    if conv_dims == 0:
        layer: nn.Module = nn.Linear(in_width, block.width, bias=not block.bn)
    else:
        layer = _conv(conv_dims)(in_width, block.width, 3, padding=1, bias=not block.bn)
    return nn.Sequential(OrderedDict([("layer", layer), *_ordered(block, conv_dims)]))


class PreActBlock(nn.Module):
    """Pre-activation residual block: [BN-]act-Conv, then the block's order of BN, act and
    dropout, then Conv, plus the shortcut. A width change halves the resolution (stride 2)."""

    def __init__(self, block: BlockSpec, in_width: int, conv_dims: int) -> None:
        super().__init__()
        conv, stride = _conv(conv_dims), 1 if in_width == block.width else 2
        self.bn1 = create_norm(in_width, conv_dims) if block.bn else nn.Identity()
        self.act1 = create_act(block.activation)
        self.conv1 = conv(in_width, block.width, 3, stride=stride, padding=1, bias=not block.bn)
        self.mid = nn.Sequential(OrderedDict(_ordered(block, conv_dims)))
        self.conv2 = conv(block.width, block.width, 3, padding=1, bias=not block.bn)
        same = stride == 1 and in_width == block.width
        self.shortcut = nn.Identity() if same else conv(in_width, block.width, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))  # (N, width, *spatial / stride)
        return self.conv2(self.mid(out)) + self.shortcut(x)


class CandidateNet(nn.Module):
    """Blocks, then (for conv nets) pooling, then an optional head dropout and the classifier."""

    def __init__(self, spec: ArchitectureSpec) -> None:
        super().__init__()
        self.spec = spec
        conv_dims = spec.conv_dims
        in_width = spec.input_shape[0] if conv_dims else math.prod(spec.input_shape)
        self.stem: nn.Module = nn.Identity()
        blocks: list[nn.Module] = []
        if spec.family == "resnet":
            first = spec.blocks[0]
            self.stem = _conv(conv_dims)(in_width, first.width, 3, padding=1, bias=False)
            in_width = first.width
        for block in spec.blocks:
            make = PreActBlock if spec.family == "resnet" else build_block
            blocks.append(make(block, in_width, conv_dims))
            in_width = block.width
        if spec.family == "resnet":  # pre-activation nets end with the last BN and activation
            last = spec.blocks[-1]
            blocks += [
                create_norm(in_width, conv_dims) if last.bn else nn.Identity(),
                create_act(last.activation),
            ]
        self.blocks = nn.Sequential(*blocks)
        # Global average pooling keeps the head size independent of the input's spatial size.
        pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
        self.pool = pool[conv_dims](1) if conv_dims else nn.Identity()
        self.head_drop = create_dropout(spec.head_dropout, spec.head_dropout_rate) or nn.Identity()
        self.head = nn.Linear(in_width, spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.conv_dims == 0:
            x = x.flatten(1)  # (N, *input_shape) -> (N, features)
        x = self.blocks(self.stem(x))  # (N, width) or (N, C, *spatial)
        x = self.pool(x).flatten(1)  # (N, width)
        return self.head(self.head_drop(x))  # (N, n_classes)


class PluginNet(nn.Module):
    """A plugin family's own network, with the spec it was built from (``net`` holds it)."""

    def __init__(self, spec: ArchitectureSpec) -> None:
        super().__init__()
        from optuna.trial import FixedTrial

        self.spec = spec
        function = load_object(spec.extra["plugin"], "family")
        # A trial-taking family is replayed with the parameters it chose: the same network.
        arg = FixedTrial(spec.extra.get("params", {})) if spec.family == "plugin" else spec
        net = call_family(function, arg, spec.input_shape, spec.n_classes)
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"family {spec.extra['plugin']!r} returned {type(net).__name__}, not an nn.Module"
            )
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(spec: ArchitectureSpec) -> nn.Module:
    """The network of ``spec``: a built-in family, or the plugin family it names."""
    if "plugin" in spec.extra:
        return PluginNet(spec)
    return CandidateNet(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors, with the spec in the file's metadata: one file loads anywhere."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    spec: ArchitectureSpec = model.spec  # type: ignore[assignment]
    meta = {"spec": json.dumps(spec.to_dict()), **(metadata or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a saved or exported candidate: ``load_model("best.safetensors").eval()``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "spec" not in meta:
        raise ValueError(f"{path}: no varshift spec in the file's metadata")
    model = build_model(ArchitectureSpec.from_dict(json.loads(meta["spec"])))
    model.load_state_dict(load_file(str(path)))
    return model
