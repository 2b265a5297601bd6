"""Families and data sets by name: built-ins and other packages' through entry points
(``varshift.families``, ``varshift.datasets``), or any ``module:function``.

A family function takes the Optuna ``trial`` (its own define-by-run space) or an
``ArchitectureSpec`` (our space, its own builder) and returns an ``nn.Module``; a family
whose function has a ``space`` attribute naming a built-in space ("mlp", "cnn", "resnet")
is built from that space's specs. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from spaces.spec import SpecError

FAMILY_GROUP = "varshift.families"
DATASET_GROUP = "varshift.datasets"


def load_object(reference: str, what: str) -> Callable[..., Any]:
    """``package.module:function`` -> the callable, or a one-line :class:`SpecError`."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise SpecError(f"{what} {reference!r}: expected module:function")
    if os.getcwd() not in sys.path:  # like `python -m`: modules in the working directory import
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or anything the user's module raises on import
        raise SpecError(
            f"{what} {reference!r}: cannot import {module_name!r} ({type(err).__name__}: {err})"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise SpecError(f"{what} {reference!r}: {module_name!r} has no attribute {attr!r}")
    if not callable(obj):
        raise SpecError(f"{what} {reference!r} is not callable")
    return obj


def registered(group: str) -> dict[str, str]:
    """Entry-point names of ``group`` -> their ``module:function`` reference."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def resolve(name: str, group: str, what: str) -> tuple[str, Callable[..., Any]]:
    """A name (entry point) or ``module:function`` -> (its reference, the callable)."""
    if ":" in name:
        return name, load_object(name, what)
    names = registered(group)
    if name not in names:
        choices = ", ".join(sorted(names)) or "none installed"
        raise SpecError(f"unknown {what} {name!r}; choose from {choices}, or give module:function")
    return names[name], load_object(names[name], what)


def family_space(function: Callable[..., Any]) -> str | None:
    """The built-in space a family function is built from, if it declares one."""
    space = getattr(function, "space", None)
    return space if isinstance(space, str) else None


def takes_trial(function: Callable[..., Any]) -> bool:
    """Does a family function want the trial (its own space) rather than a spec?"""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return True
    if not params:
        raise SpecError(f"family function {function!r} must take a trial or a spec")
    return params[0].name != "spec"


def describe_module(module: Any) -> str:
    """A readable architecture string for any ``nn.Module`` (duck-typed, no torch import):
    its leaf layers in registration order, e.g. ``Linear(64)-BatchNorm1d-ReLU-Dropout(0.30)``."""
    parts = []
    for _, child in module.named_modules():
        if any(True for _ in child.children()):
            continue
        label = type(child).__name__
        size = getattr(child, "out_features", None) or getattr(child, "out_channels", None)
        rate = getattr(child, "p", None)
        if size is not None:
            label += f"({size})"
        elif isinstance(rate, float):
            label += f"({rate:.2f})"
        parts.append(label)
    return "-".join(parts) or type(module).__name__


def resolve_family(name: str) -> tuple[str, str | None]:
    """``--family`` -> (the built-in space it draws from, the plugin's ``module:function`` or None).

    Built-in names resolve without importing anything; entry points and ``module:function``
    import the plugin. A trial-taking plugin uses our space only for the learning rate and
    weight decay; a spec-taking one draws specs from its ``space`` (default "mlp")."""
    from spaces.spec import FAMILIES

    if name in FAMILIES:
        return name, None
    reference, function = resolve(name, FAMILY_GROUP, "family")
    space = family_space(function) or "mlp"
    if space not in FAMILIES:
        raise SpecError(f"family {name!r} declares space {space!r}; choose from {', '.join(FAMILIES)}")
    if reference.startswith("trainers.families:"):
        return space, None
    return space, reference


def call_family(function: Callable[..., Any], arg: Any, input_shape: tuple[int, ...], n_classes: int) -> Any:
    """Call a family function with the trial or spec, plus ``input_shape``/``n_classes`` when
    its signature takes them (a trial-taking family has no other way to know them)."""
    try:
        accepted = inspect.signature(function).parameters
    except (TypeError, ValueError):
        accepted = {}  # type: ignore[assignment]
    extra = {k: v for k, v in (("input_shape", input_shape), ("n_classes", n_classes)) if k in accepted}
    return function(arg, **extra)
