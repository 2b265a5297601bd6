"""The examples the README links stay valid: every config parses, the plugin family builds."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from search.config import build_config, load_toml
from spaces import suggest_architecture
from trainers.model import build_model

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("config", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_are_valid(config: Path) -> None:
    run = build_config(load_toml(str(config)))
    assert run.resolved_study_name == config.stem


def test_example_family_builds_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)
    run = build_config(cli_values={"family": "examples.my_family:tiny_vgg"})
    spec = suggest_architecture(optuna.create_study().ask(), run.space(), (1, 8, 8), 10)
    assert "BatchNorm2d" in spec.describe()
    assert build_model(spec)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
