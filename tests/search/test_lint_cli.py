"""``search lint`` as a user runs it: a model file in the working directory, the table or JSON on
stdout, one line on stderr for a mistake, and exit codes 0 (clean or warnings), 1 (an error-level
finding, for CI) and 2 (bad input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.cli import main

MODELS = """
import torch
from torch import nn


class DropBN(nn.Module):
    '''Linear -> Dropout(0.5) -> BN: the textbook variance shift.'''

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
        )

    def forward(self, x):
        return self.net(x)


def clean():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)
    )


def bn_after_act():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.BatchNorm1d(32), nn.Linear(32, 10))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = DropBN()

    def forward(self, x):
        if x.sum() > 0:
            return self.inner(x)
        return self.inner(-x)


def cifar():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
"""


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "lintcli_models.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "blobs.npz", x=rng.normal(size=(300, 1, 8, 8)).astype(np.float32), y=np.arange(300) % 10
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["lint", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_error_finding_exits_1_with_the_table_and_summary(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = lint(capsys, "lintcli_models:DropBN", "--input-shape", "1,8,8")
    assert code == 1, err
    assert "VS001" in out and "net.3" in out and "net.2" in out
    assert "traced with torch.fx" in out
    assert out.rstrip().splitlines()[-1] == "1 error, 0 warnings"


def test_a_clean_model_exits_0(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, "lintcli_models:clean", "--input-shape", "64")
    assert code == 0
    assert "no BN/Dropout findings" in out
    assert out.rstrip().splitlines()[-1] == "0 errors, 0 warnings"


def test_warnings_alone_exit_0(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, "lintcli_models:bn_after_act", "--input-shape", "64")
    assert code == 0 and "VS004" in out
    assert out.rstrip().splitlines()[-1] == "0 errors, 1 warning"


def test_json_output_with_the_measured_pass(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lint(
        capsys, "lintcli_models.py:DropBN", "--dataset", "npz:blobs.npz", "--format", "json"
    )
    assert code == 1, err
    record = json.loads(out)
    assert {"findings", "measured", "accuracy", "tracer", "summary"} <= set(record)
    assert record["tracer"] == "fx" and record["summary"] == {"errors": 1, "warnings": 0}
    (finding,) = record["findings"]
    assert finding["rule"] == "VS001" and finding["severity"] == "error" and finding["module"] == "net.3"
    assert finding["expected_ratio"] == 2.0 and finding["fix"] and finding["message"]
    (layer,) = record["measured"]
    assert layer["layer"] == "net.3" and layer["shift"] > 1.5
    assert layer.keys() == {"layer", "moving_var", "real_var", "shift"}
    assert set(record["accuracy"]) == {"before", "after"}
    assert all(0.0 <= v <= 1.0 for v in record["accuracy"].values())


def test_the_table_shows_the_measured_pass(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, "lintcli_models:DropBN", "--dataset", "npz:blobs.npz")
    assert code == 1
    assert "measured variance shift" in out and "after BN recalibration" in out
    assert out.rstrip().splitlines()[-1] == "1 error, 0 warnings"


def test_the_hooks_fallback_is_reported(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, "lintcli_models:Branchy", "--input-shape", "1,8,8", "--format", "json")
    record = json.loads(out)
    assert code == 1 and record["tracer"] == "hooks"
    assert (
        record["tracer_note"].startswith("fx could not trace (")
        and "used forward hooks" in record["tracer_note"]
    )
    assert [f["module"] for f in record["findings"]] == ["inner.net.3"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["lintcli_models"], "expected MODULE:ATTR"),
        (["lintcli_models:Nope"], "has no attribute 'Nope'"),
        (["lintcli_models:DropBN", "--input-shape", "a,b"], "--input-shape"),
        (["lintcli_models:DropBN", "--format", "csv"], "unknown format 'csv'"),
        (["lintcli_models:DropBN", "--weights", "none.pt", "--dataset", "npz:blobs.npz"], "none.pt"),
        (
            ["lintcli_models:cifar", "--dataset", "npz:blobs.npz"],
            "does not accept blobs inputs of shape (1, 8, 8)",
        ),
        (["lintcli_models:DropBN", "--dataset", "npz:nothing.npz"], "nothing.npz"),
        (["lintcli_models:Branchy"], "give --input-shape"),
    ],
    ids=["no-attr", "missing-attr", "shape", "format", "weights", "data-shape", "dataset", "no-shape"],
)
def test_bad_input_is_one_line_and_exit_2(
    cwd: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    code, out, err = lint(capsys, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert out == ""


def test_subprocess_exit_code_gates_ci(cwd: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "search", "lint", "lintcli_models:DropBN", "--input-shape", "64"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "1 error, 0 warnings"


def test_help_lists_lint(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, "--help")
    assert code == 0
    assert "--input-shape" in out and "--dataset" in out and "--weights" in out and "--format" in out
