"""``search run --devices 2 --strategy ddp`` on the CPU (gloo): one trial per trial, the same
spec on both ranks, pruning that stops every rank, and no process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *args: str) -> tuple[optuna.Study, list[dict[str, object]]]:
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    name = f"ddp-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'ddp.db'}"
    env = {**os.environ, "VARSHIFT_RANK_LOG": str(ranks)}
    cmd = [sys.executable, "-m", "search", "run", "--study-name", name, "--storage", url, "-q"]
    cmd += ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--bn", "always", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (ranks / "ranks.jsonl").read_text().splitlines()]
    return optuna.load_study(study_name=name, storage=url), records


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ddp_trials_share_one_spec_and_leave_no_process(tmp_path: Path) -> None:
    study, records = _run(tmp_path, "--n-trials", "2", "--max-epochs", "2", "--pruner", "none")
    trials = study.get_trials()
    assert len(trials) == 2  # not one study trial per rank
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_arch = {t.user_attrs["architecture"] for t in trials}
    assert len(records) == 4 and {r["rank"] for r in records} == {0, 1}
    for arch in by_arch:
        ranks = sorted(r["rank"] for r in records if r["architecture"] == arch)
        assert ranks == [0, 1]  # both ranks trained exactly the trial's spec
    assert all(r["epochs"] == 2 for r in records)
    for t in trials:
        assert len(t.user_attrs["variance_shift_by_epoch"]) == 2
        assert all(s >= 1.0 for s in t.user_attrs["variance_shift_by_epoch"])
    assert not any(_alive(int(r["pid"])) for r in records)  # type: ignore[call-overload]


def test_ddp_prune_stops_every_rank(tmp_path: Path) -> None:
    # With BN everywhere, the paper's statistic at epoch 0 far exceeds 1.01 (BN lag): pruned at once.
    args = ["--n-trials", "1", "--max-epochs", "4", "--pruner", "varshift", "--shift-statistic", "paper"]
    study, records = _run(tmp_path, *args, "--shift-threshold", "1.01", "--shift-warmup", "0")
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_by"] == "variance_shift"
    assert "at epoch 0" in trial.user_attrs["prune_reason"]
    assert sorted((r["rank"], r["epochs"]) for r in records) == [(0, 1), (1, 1)]
    assert not any(_alive(int(r["pid"])) for r in records)  # type: ignore[call-overload]
