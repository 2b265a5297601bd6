"""Optuna search spaces that turn a trial into a frozen architecture spec (no training here)."""

from __future__ import annotations

from spaces.space import PLACEMENTS, SpaceConfig, suggest_architecture
from spaces.spec import (
    ACTIVATIONS,
    DROPOUT_KINDS,
    FAMILIES,
    ORDERS,
    ArchitectureSpec,
    BlockSpec,
    SpecError,
)

__all__ = [
    "ACTIVATIONS",
    "DROPOUT_KINDS",
    "FAMILIES",
    "ORDERS",
    "PLACEMENTS",
    "ArchitectureSpec",
    "BlockSpec",
    "SpaceConfig",
    "SpecError",
    "suggest_architecture",
]
