"""Plugins as a user installs them: a tiny package with entry points installed into a folder
on the test's PYTHONPATH, then `search run` by name; and a broken family whose forward pass
raises: that trial FAILs with the error recorded and the study goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.slow
TrialState = optuna.trial.TrialState

PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "varshift-test-plugin"
        version = "0.0.1"
        [project.entry-points."varshift.families"]
        tiny = "vs_plugin:tiny"
        [project.entry-points."varshift.datasets"]
        blobs = "vs_plugin:blobs"
        [tool.setuptools]
        py-modules = ["vs_plugin"]
    """,
    "vs_plugin.py": """
        import numpy as np
        from torch import nn

        def tiny(trial, input_shape, n_classes):
            width = trial.suggest_categorical("tiny.width", [8, 16])
            return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width),
                                 nn.Dropout(0.5), nn.BatchNorm1d(width), nn.ReLU(),
                                 nn.Linear(width, n_classes))

        def blobs(seed=0):
            rng = np.random.default_rng(seed)
            y = rng.integers(0, 3, 300)
            x = rng.normal(size=(300, 6)) + y[:, None]
            return x, y
    """,
}


def _search(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "search", "run", "-q", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_entry_point_plugins_are_found_by_name(tmp_path: Path) -> None:
    pkg, site = tmp_path / "pkg", tmp_path / "site"
    pkg.mkdir()
    for name, text in PLUGIN.items():
        (pkg / name).write_text(textwrap.dedent(text))
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*install, "--target", str(site), str(pkg)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    url = f"sqlite:///{tmp_path / 'p.db'}"
    proc = _search(
        tmp_path,
        env,
        "--family",
        "tiny",
        "--dataset",
        "blobs",
        "--storage",
        url,
        "--n-trials",
        "2",
        "--max-epochs",
        "2",
        "--pruner",
        "none",  # the shift guard would (rightly) prune Dropout -> BN at 1/(1-q) = 2
    )
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="blobs-tiny", storage=url)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert "tiny.width" in trial.params
        assert "BatchNorm1d" in trial.user_attrs["architecture"]
        # Dropout(0.5) feeds the BN: the dropout-induced shift is measured and near 1/(1-q) = 2.
        assert 1.5 < trial.user_attrs["dropout_shift_by_epoch"][-1] < 2.5


def test_a_family_whose_forward_raises_fails_its_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(
        "from torch import nn\n"
        "def net(trial, input_shape, n_classes):\n"
        "    if trial.suggest_categorical('broken.bad', [True, False]):\n"
        "        return nn.Sequential(nn.Flatten(), nn.Linear(7, n_classes))  # wrong input size\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_classes))\n"
    )
    url = f"sqlite:///{tmp_path / 'b.db'}"
    name = f"broken-{uuid.uuid4().hex[:6]}"
    args = ("--family", "broken:net", "--storage", url, "--study-name", name, "--sampler", "random")
    proc = _search(tmp_path, dict(os.environ), *args, "--n-trials", "6", "--max-epochs", "1")
    assert proc.returncode == 0, proc.stderr
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert len(trials) == 6
    for trial in trials:
        if trial.params["broken.bad"]:
            assert trial.state == TrialState.FAIL
            assert "RuntimeError" in trial.user_attrs["error"] and "shapes" in trial.user_attrs["error"]
        else:
            assert trial.state == TrialState.COMPLETE
    assert {t.params["broken.bad"] for t in trials} == {True, False}
