"""Families and data sets by name: entry points, module:function, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from spaces import SpaceConfig, SpecError, suggest_architecture
from spaces.plugins import (
    DATASET_GROUP,
    FAMILY_GROUP,
    describe_module,
    load_object,
    registered,
    resolve_family,
    takes_trial,
)


def test_builtins_are_registered_as_entry_points() -> None:
    assert set(registered(FAMILY_GROUP)) >= {"mlp", "cnn", "resnet"}
    assert set(registered(DATASET_GROUP)) >= {"digits", "mnist1d"}


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module_xyz:build", "cannot import 'no_such_module_xyz'"),
        ("json:no_such_function", "has no attribute 'no_such_function'"),
        ("json:__doc__", "is not callable"),
        ("json", "expected module:function"),
        (":build", "expected module:function"),
    ],
)
def test_load_object_errors_are_one_line(reference: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        load_object(reference, "family")
    assert "\n" not in str(info.value)


def test_resolve_family() -> None:
    assert resolve_family("cnn") == ("cnn", None)
    with pytest.raises(SpecError, match=r"unknown family .transformer.*mlp.*module:function"):
        resolve_family("transformer")


def _plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fam_mod.py").write_text(
        "from torch import nn\n"
        "def by_trial(trial, input_shape, n_classes):\n"
        "    w = trial.suggest_categorical('my.width', [4, 8])\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, w), nn.Dropout(0.5), nn.BatchNorm1d(w),\n"
        "                         nn.ReLU(), nn.Linear(w, n_classes))\n"
        "def by_spec(spec):\n"
        "    return nn.Linear(1, 1)\n"
        "by_spec.space = 'cnn'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fam_mod", None)


def test_trial_plugin_spec_records_params_and_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plugin_module(tmp_path, monkeypatch)
    assert resolve_family("fam_mod:by_trial") == ("mlp", "fam_mod:by_trial")
    assert resolve_family("fam_mod:by_spec") == ("cnn", "fam_mod:by_spec")
    assert takes_trial(load_object("fam_mod:by_trial", "family"))
    assert not takes_trial(load_object("fam_mod:by_spec", "family"))
    trial = optuna.create_study().ask()
    spec = suggest_architecture(trial, SpaceConfig(plugin="fam_mod:by_trial"), (1, 8, 8), 10)
    assert spec.family == "plugin" and spec.extra["params"] == {"my.width": trial.params["my.width"]}
    w = trial.params["my.width"]
    assert spec.describe() == f"Flatten-Linear({w})-Dropout(0.50)-BatchNorm1d-ReLU-Linear(10)"
    assert set(trial.params) == {"my.width", "lr", "weight_decay"}


def test_plugin_network_is_rebuilt_from_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from trainers.model import build_model, load_model, save_model

    _plugin_module(tmp_path, monkeypatch)
    trial = optuna.create_study().ask()
    spec = suggest_architecture(trial, SpaceConfig(plugin="fam_mod:by_trial"), (1, 8, 8), 10)
    model = build_model(spec).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    save_model(model, tmp_path / "p.safetensors")
    again = load_model(tmp_path / "p.safetensors").eval()
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x), again(x))


def test_describe_module_is_duck_typed() -> None:
    from torch import nn

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.ReLU(), nn.Dropout2d(0.1)))
    assert describe_module(net) == "Conv2d(4)-BatchNorm2d-ReLU-Dropout2d(0.10)"
