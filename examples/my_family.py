"""A plugin family: your own network and your own define-by-run choices.

    search run --family examples.my_family:tiny_vgg --dataset digits

(run from the repository root, or install your module; a package can register it as an
entry point under ``varshift.families``). varshift measures the variance shift of every BN
layer in whatever this returns, records it and prunes on it exactly as for the built-ins.
"""

from __future__ import annotations

import optuna
from torch import nn


def tiny_vgg(trial: optuna.Trial, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Two conv stages; the trial chooses the width, where Dropout goes and its rate."""
    width = trial.suggest_categorical("vgg.width", [8, 16, 32])
    where = trial.suggest_categorical("vgg.dropout_at", ["before_bn", "after_act", "head"])
    rate = trial.suggest_float("vgg.dropout_rate", 0.05, 0.5)
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for stage in range(2):
        out = width * 2**stage
        layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=False))
        if where == "before_bn":  # the harmful place: Dropout feeds BN (variance shift)
            layers.append(nn.Dropout2d(rate))
        layers += [nn.BatchNorm2d(out), nn.ReLU()]
        if where == "after_act":
            layers.append(nn.Dropout2d(rate))
        layers.append(nn.MaxPool2d(2) if stage == 0 else nn.AdaptiveAvgPool2d(1))
        channels = out
    head: list[nn.Module] = [nn.Flatten()]
    if where == "head":  # the paper's remedy: dropout only after the last BN
        head.append(nn.Dropout(rate))
    return nn.Sequential(*layers, *head, nn.Linear(channels, n_classes))
