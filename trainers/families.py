"""The built-in families, registered as entry points (``varshift.families``) like any plugin.

Each takes a spec from the built-in space its ``space`` attribute names. Another package
registers its own the same way, e.g. in its pyproject.toml::

    [project.entry-points."varshift.families"]
    tiny-vgg = "mypkg.nets:tiny_vgg"      # def tiny_vgg(trial) -> nn.Module
"""

from __future__ import annotations

from torch import nn

from spaces.spec import ArchitectureSpec
from trainers.model import CandidateNet


def mlp(spec: ArchitectureSpec) -> nn.Module:
    """Dense blocks: Linear, then BN, activation and dropout in the searched order."""
    return CandidateNet(spec)


def cnn(spec: ArchitectureSpec) -> nn.Module:
    """Conv blocks on (C, L) signals or (C, H, W) images, global pooling, dense head."""
    return CandidateNet(spec)


def resnet(spec: ArchitectureSpec) -> nn.Module:
    """Pre-activation residual blocks in 3 stages; dropout before the last BN or the last conv."""
    return CandidateNet(spec)


mlp.space = "mlp"  # type: ignore[attr-defined]
cnn.space = "cnn"  # type: ignore[attr-defined]
resnet.space = "resnet"  # type: ignore[attr-defined]
