"""Specs -> ``nn.Module``: the builder reads a frozen spec and never asks a trial anything."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from spaces.spec import ArchitectureSpec, BlockSpec
from trainers.layers import create_act, create_dropout, create_norm


def build_block(block: BlockSpec, in_width: int, conv_dims: int) -> nn.Sequential:
    """Linear/Conv, then BN, activation and dropout in the block's order. Names are stable
    (``layer``, ``bn``, ``act``, ``drop``) so variance-shift reports read ``blocks.1.bn``."""
    layers: list[tuple[str, nn.Module]] = []
    if conv_dims == 0:
        layers.append(("layer", nn.Linear(in_width, block.width, bias=not block.bn)))
    else:
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[conv_dims]
        layers.append(("layer", conv(in_width, block.width, 3, padding=1, bias=not block.bn)))
    for component in block.order:
        if component == "bn":
            layers.append(("bn", create_norm(block.width, conv_dims)))
        elif component == "act":
            layers.append(("act", create_act(block.activation)))
        else:
            drop = create_dropout(block.dropout, block.dropout_rate, conv_dims)
            if drop is not None:
                layers.append(("drop", drop))
    return nn.Sequential(OrderedDict(layers))


class CandidateNet(nn.Module):
    """Blocks, then (for conv nets) pooling, then an optional head dropout and the classifier."""

    def __init__(self, spec: ArchitectureSpec) -> None:
        super().__init__()
        self.spec = spec
        conv_dims = spec.conv_dims
        in_width = spec.input_shape[0] if conv_dims else math.prod(spec.input_shape)
        blocks = []
        for block in spec.blocks:
            blocks.append(build_block(block, in_width, conv_dims))
            in_width = block.width
        self.blocks = nn.Sequential(*blocks)
        # Global average pooling keeps the head size independent of the input's spatial size.
        pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
        self.pool = pool[conv_dims](1) if conv_dims else nn.Identity()
        self.head_drop = create_dropout(spec.head_dropout, spec.head_dropout_rate) or nn.Identity()
        self.head = nn.Linear(in_width, spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.conv_dims == 0:
            x = x.flatten(1)  # (N, *input_shape) -> (N, features)
        x = self.blocks(x)  # (N, width) or (N, C, *spatial)
        x = self.pool(x).flatten(1)  # (N, width)
        return self.head(self.head_drop(x))  # (N, n_classes)


def build_model(spec: ArchitectureSpec) -> CandidateNet:
    return CandidateNet(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(model: CandidateNet, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors, with the spec in the file's metadata: one file loads anywhere."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"spec": json.dumps(model.spec.to_dict()), **(metadata or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_model(path: str | Path) -> CandidateNet:
    """Rebuild a saved or exported candidate: ``load_model("best.safetensors").eval()``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "spec" not in meta:
        raise ValueError(f"{path}: no varshift spec in the file's metadata")
    model = CandidateNet(ArchitectureSpec.from_dict(json.loads(meta["spec"])))
    model.load_state_dict(load_file(str(path)))
    return model
