"""Specs -> trained, measured models: builders, Lightning module and data, the Trainer factory,
variance-shift measurement and BN recalibration.

Names are imported lazily, so ``import trainers.errors`` (the CLI's error types) does not pay
for torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CandidateNet": "trainers.model",
    "build_model": "trainers.model",
    "count_parameters": "trainers.model",
    "CandidateModule": "trainers.module",
    "NonFiniteLossError": "trainers.module",
    "TensorData": "trainers.data",
    "TensorBatches": "trainers.data",
    "InMemoryDataModule": "trainers.data",
    "load_dataset": "trainers.data",
    "DataError": "trainers.errors",
    "TrainConfig": "trainers.fit",
    "TrainResult": "trainers.fit",
    "create_trainer": "trainers.fit",
    "train_candidate": "trainers.fit",
    "EpochReport": "trainers.callbacks",
    "ShiftReporter": "trainers.callbacks",
    "LayerShift": "trainers.variance_shift",
    "BNInputStats": "trainers.variance_shift",
    "measure_variance_shift": "trainers.variance_shift",
    "measure_variance_stats": "trainers.variance_shift",
    "measure_dropout_shift": "trainers.variance_shift",
    "create_act": "trainers.layers",
    "create_dropout": "trainers.layers",
    "GaussianDropout": "trainers.layers",
    "Uout": "trainers.layers",
    "lint_model": "trainers.lint",
    "LintReport": "trainers.lint",
    "LintError": "trainers.lint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
