"""Property test of the config loader: any TOML it accepts gives a valid run config, and
anything else gives the one-line ConfigError, never another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.config import ConfigError, RunConfig, build_config, load_toml, validate
from search.storage import StorageError
from spaces import SpaceConfig

KEYS = [
    "n-trials",
    "n_trials",
    "max-epochs",
    "family",
    "sampler",
    "pruner",
    "dropout-rate",
    "activations",
    "dropout-kinds",
    "depth",
    "widths",
    "shift-threshold",
    "per-block",
    "timeout",
    "seed",
    "storage",
    "recalibrate-bn",
    "bn",
    "orders",
    "workers",
    "n-trails",  # a typo: must be refused with a hint
    "unknown",
]
scalars = st.one_of(
    st.integers(-5, 50),
    st.floats(-2, 2),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.booleans(),
    st.sampled_from(["mlp", "cnn", "tpe", "random", "relu", "gelu", "", "bogus", "0.1,0.4", "1,3"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if v != v else ("inf" if v == float("inf") else ("-inf" if v == float("-inf") else repr(v)))
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + v + '"'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_accepted_toml_gives_a_valid_config_else_one_line(tmp_path: Path, options: dict[str, Any]) -> None:
    file = tmp_path / "run.toml"
    file.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items()))
    try:
        config = build_config(load_toml(str(file)))
    except (ConfigError, StorageError) as err:
        message = str(err)
        assert message and "\n" not in message
        return
    assert isinstance(config, RunConfig)
    validate(config)  # idempotent: what was accepted stays valid
    assert isinstance(config.space(), SpaceConfig)
    assert config.n_trials >= 1 and config.max_epochs >= 1
    low, high = config.space().dropout_rate
    assert 0 < low <= high < 1


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_text_is_valid_config_or_one_line(tmp_path: Path, text: str) -> None:
    file = tmp_path / "run.toml"
    file.write_text(text, encoding="utf-8")
    try:
        build_config(load_toml(str(file)))
    except (ConfigError, StorageError) as err:
        assert "\n" not in str(err)
    else:
        tomllib.loads(text)  # only well-formed TOML may be accepted
