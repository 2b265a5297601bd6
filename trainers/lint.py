"""Lint any PyTorch model for BN/Dropout disharmony (Li et al. 2019), statically and by measurement.

The static pass traces the model (``trainers.lint_graph``) and runs the rules
(``trainers.lint_rules``: VS001-VS004); the measured pass, given data, measures the real
variance shift per BN layer and what BN recalibration does to accuracy
(``trainers.lint_measure``). Example::

    report = lint("mypkg.models:ResNet18", input_shape=(3, 32, 32))
    for finding in report.findings:
        print(finding.rule.name, finding.module, finding.message)
    sys.exit(report.exit_code)  # 1 when an error-level rule fired
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from trainers.lint_graph import LintError, _one_line, trace_model
from trainers.lint_kinds import LayerKind
from trainers.lint_rules import Finding, Severity, check_graph
from trainers.variance_shift import LayerShift

log = logging.getLogger(__name__)

__all__ = [
    "LintError",
    "LintReport",
    "lint",
    "lint_model",
    "load_target",
    "load_weights",
    "parse_input_shape",
]


@dataclass
class LintReport:
    target: str
    tracer: str  # "fx" or "hooks"
    tracer_note: str  # "traced with torch.fx" / "fx could not trace (...); used forward hooks"
    findings: list[Finding]
    measured: dict[str, LayerShift] = field(default_factory=dict)  # BN path -> paper statistic
    accuracy: tuple[float, float] | None = None  # val accuracy before/after BN recalibration
    notes: list[str] = field(default_factory=list)

    def count(self, severity: Severity) -> int:
        return sum(f.rule.severity is severity for f in self.findings)

    @property
    def exit_code(self) -> int:
        """1 when an error-level rule fired, so a CI step fails; else 0."""
        return 1 if self.count(Severity.ERROR) else 0

    def to_dict(self) -> dict[str, Any]:
        """The ``--format json`` record; non-finite numbers become ``null``."""
        return {
            "target": self.target,
            "tracer": self.tracer,
            "tracer_note": self.tracer_note,
            "findings": [{k: _finite(v) for k, v in f.to_dict().items()} for f in self.findings],
            "measured": [
                {"layer": name, **{k: _finite(getattr(s, k)) for k in ("moving_var", "real_var", "shift")}}
                for name, s in self.measured.items()
            ],
            "accuracy": None
            if self.accuracy is None
            else dict(zip(("before", "after"), self.accuracy, strict=True)),
            "notes": list(self.notes),
            "summary": {"errors": self.count(Severity.ERROR), "warnings": self.count(Severity.WARNING)},
        }


def lint(
    target: str,
    input_shape: tuple[int, ...] | None = None,
    dataset: str | None = None,
    weights: str | None = None,
) -> LintReport:
    """Load ``target`` (see :func:`load_target`), lint it, and measure it on ``dataset`` if given."""
    model = load_target(target)
    if weights is not None:
        load_weights(model, weights)
    data = None
    if dataset is not None:
        from trainers.data import load_dataset
        from trainers.lint_measure import probe

        data = load_dataset(dataset)
        probe(model, data)  # a model/data mismatch is named as such, before the dummy pass
    report = lint_model(model, input_shape or (data.input_shape if data is not None else None))
    report.target = target
    if weights is not None and data is None:
        report.notes.append("--weights only matters to the measured pass: give --dataset too")
    if data is not None:
        from trainers.lint_measure import measure_model

        measured = measure_model(model, data)
        report.measured, report.accuracy = measured.layers, measured.accuracy
        report.notes.extend(measured.notes)
    return report


def lint_model(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> LintReport:
    """The static pass on a model: trace it, run every rule."""
    graph = trace_model(model, input_shape)
    report = LintReport(type(model).__name__, graph.tracer, graph.note, check_graph(graph))
    if not graph.has_shapes and graph.of_kind(LayerKind.DROPOUT) and graph.of_kind(LayerKind.CONV):
        report.notes.append("VS003 needs activation shapes: give --input-shape or --dataset to check it")
    return report


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """``"3,32,32"`` -> ``(3, 32, 32)``: one sample's shape, without the batch dimension."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise LintError(f"--input-shape must be positive integers like 3,32,32, but got {text!r}")
    return tuple(int(p) for p in parts)


def load_target(ref: str) -> nn.Module:
    """``MODULE:ATTR`` or ``FILE.py:ATTR`` naming a class (built with no arguments), a factory
    (called with none) or an ``nn.Module`` instance; or an exported ``.safetensors`` candidate."""
    if ref.endswith(".safetensors"):
        return _load_exported(ref)
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise LintError(f"expected MODULE:ATTR (e.g. mypkg.models:ResNet18), but got {ref!r}")
    obj: object = _import(module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LintError(f"{module_name!r} has no attribute {attr!r} (from {ref!r})")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise LintError(f"{ref} is a {type(obj).__name__}, not an nn.Module class, factory or instance")
    try:
        model = obj()
    except Exception as err:  # the user's constructor: anything can happen
        raise LintError(
            f"could not build {ref}() without arguments: {type(err).__name__}: {_one_line(err)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise LintError(f"{ref}() returned a {type(model).__name__}, not an nn.Module")
    return model


def load_weights(model: nn.Module, path: str) -> None:
    """Load a state_dict (``torch.load(weights_only=True)``; a checkpoint's "state_dict" too) or safetensors."""
    file = Path(path)
    if not file.is_file():
        raise LintError(f"weights file not found: {path}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file))
        else:
            import torch

            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and safetensors errors share no base class
        raise LintError(
            f"{path}: not a readable state_dict ({type(err).__name__}: {_one_line(err)})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning or hand-made checkpoint
    if not isinstance(state, dict):
        raise LintError(f"{path} holds a {type(state).__name__}, not a state_dict")
    _load_state(model, state, path)


def _load_state(model: nn.Module, state: dict[str, Any], path: str) -> None:
    expected = set(model.state_dict())
    if not set(state) & expected and all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}  # a LightningModule's wrapper
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise LintError(
            f"{path} does not fit the model: missing {', '.join(missing[:3]) or 'none'}"
            f"{' ...' * (len(missing) > 3)}; unexpected {', '.join(unexpected[:3]) or 'none'}"
            f"{' ...' * (len(unexpected) > 3)}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # size mismatches: the second line names the tensor
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise LintError(f"{path} does not fit the model: {lines[-1] if lines else err}") from None


def _import(name: str) -> ModuleType:
    """A dotted module (the working directory importable, as with ``python -m``) or a .py file."""
    try:
        if name.endswith(".py"):
            return _import_file(Path(name))
        added = str(Path.cwd()) not in sys.path
        if added:
            sys.path.insert(0, str(Path.cwd()))
        try:
            return importlib.import_module(name)
        finally:
            if added:
                sys.path.remove(str(Path.cwd()))
    except LintError:
        raise
    except Exception as err:  # ImportError, or the user's module failing as it runs
        raise LintError(f"cannot import {name!r}: {type(err).__name__}: {_one_line(err)}") from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise LintError(f"no such file: {path}")
    name = f"_varshift_lint_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LintError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up there
    spec.loader.exec_module(module)
    return module


def _load_exported(path: str) -> nn.Module:
    from trainers.model import load_model

    if not Path(path).is_file():
        raise LintError(f"no such file: {path}")
    try:
        return load_model(path)
    except Exception as err:  # no spec in the metadata, a corrupt file, ...
        raise LintError(f"{path}: cannot load an exported candidate ({_one_line(err)})") from None


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
