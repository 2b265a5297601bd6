"""The sampler's seed: reproducible under ``--seed``, distinct per worker and per process
without it, never a replay of an earlier run on a resumed study."""

from __future__ import annotations

import pytest

from search.config import build_config
from search.study import sampler_seed


def test_with_a_seed_the_process_does_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(cli_values={"seed": "7"})
    here = sampler_seed(config, n_existing=0)
    monkeypatch.setattr("search.study.os.getpid", lambda: 1)
    monkeypatch.setattr("search.study.socket.gethostname", lambda: "elsewhere")
    assert sampler_seed(config, n_existing=0) == here


def test_without_a_seed_each_process_and_host_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config()
    assert config.seed is None and config.base_seed == 0
    monkeypatch.setattr("search.study.os.getpid", lambda: 1)
    one = sampler_seed(config, n_existing=0)
    monkeypatch.setattr("search.study.os.getpid", lambda: 2)
    assert sampler_seed(config, n_existing=0) != one
    monkeypatch.setattr("search.study.socket.gethostname", lambda: "elsewhere")
    assert len({one, sampler_seed(config, n_existing=0)}) == 2


@pytest.mark.parametrize("seed", [None, "7"])
def test_workers_and_resumed_runs_get_their_own_seeds(seed: str | None) -> None:
    config = build_config(cli_values={"seed": seed})
    seeds = {sampler_seed(config, n, worker=w) for n in (0, 5) for w in (0, 1)}
    assert len(seeds) == 4


def test_the_placement_space_from_options() -> None:
    """--bn always --dropout always --placements blocks: every block has BN and dropout, so
    where dropout goes (and at which rate) is the search."""
    space = build_config(cli_values={"bn": "always", "dropout": "always", "placements": "blocks"}).space()
    assert space.bn_choices == (True,)
    assert space.placements == ("blocks",)
    assert space.allow_no_dropout is False
    default = build_config().space()
    assert default.placements == ("blocks", "head") and default.allow_no_dropout
