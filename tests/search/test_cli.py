"""The CLI as a user runs it: subprocesses against a temporary SQLite file, then the database
is opened with Optuna to check what was stored."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest

from search.cli import main

pytestmark = pytest.mark.slow
TrialState = optuna.trial.TrialState


def search(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("OPTUNA_STORAGE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One real study: 4 trials x 3 epochs on digits, shared by the read-back tests."""
    cwd = tmp_path_factory.mktemp("cli")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{cwd / 'studies.db'}"
    search(
        "run", "--study-name", name, "--storage", url, "--n-trials", "4", "--max-epochs", "3", "-q", cwd=cwd
    )
    return cwd, url, name


def test_run_stores_the_public_records(study_db: tuple[Path, str, str]) -> None:
    _, url, name = study_db
    study = optuna.load_study(study_name=name, storage=url)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials()
    assert len(trials) == 4
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        attrs = t.user_attrs
        epochs = len(t.intermediate_values)
        assert sorted(t.intermediate_values) == list(range(epochs))
        assert all(0.0 <= v <= 1.0 for v in t.intermediate_values.values())
        assert "|" in attrs["architecture"] and "Linear(10)" in attrs["architecture"]
        assert len(attrs["variance_shift_by_epoch"]) == epochs == len(attrs["dropout_shift_by_epoch"])
        assert attrs["variance_shift_max"] == attrs["variance_shift_by_epoch"][-1] >= 1.0
        assert isinstance(attrs["variance_shift"], dict)
        if t.state == TrialState.COMPLETE:
            assert attrs["epochs"] == epochs == 3
            assert attrs["n_params"] > 0 and attrs["train_seconds"] > 0 and attrs["device"] == "cpu"
            best = max(t.intermediate_values.values())
            assert t.value == pytest.approx(max(best, attrs.get("val_acc_recalibrated", 0.0)))
        else:
            assert attrs["pruned_by"] and attrs["prune_reason"]


def test_trials_and_best_read_back_as_json_csv_and_table(study_db: tuple[Path, str, str]) -> None:
    cwd, url, name = study_db
    rows = json.loads(
        search("trials", "--study-name", name, "--storage", url, "--format", "json", cwd=cwd).stdout
    )
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    assert all(r["architecture"] for r in rows)
    table = list(
        csv.DictReader(io.StringIO(search("trials", "--storage", url, "--format", "csv", cwd=cwd).stdout))
    )
    assert len(table) == 4 and "param.lr" in table[0]
    best = search("best", "--study-name", name, "--storage", url, "--top", "1", cwd=cwd).stdout
    study = optuna.load_study(study_name=name, storage=url)
    assert f"{study.best_value:.4f}"[:5] in best and "Linear(" in best


def test_optuna_cli_reads_the_same_study(study_db: tuple[Path, str, str]) -> None:
    cwd, url, name = study_db
    optuna_cli = Path(sys.executable).with_name("optuna")
    proc = subprocess.run(
        [str(optuna_cli), "trials", "--study-name", name, "--storage", url, "-f", "json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 4


def test_resume_adds_trials_and_keeps_finished_ones(tmp_path: Path) -> None:
    name = f"resume-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'r.db'}"
    common = ("--study-name", name, "--storage", url, "--max-epochs", "2", "-q", "--sampler", "random")
    search("run", "--n-trials", "2", *common, cwd=tmp_path)
    before = optuna.load_study(study_name=name, storage=url).get_trials()
    search("run", "--n-trials", "2", *common, cwd=tmp_path)
    after = optuna.load_study(study_name=name, storage=url).get_trials()
    assert len(after) == 4
    for old, new in zip(before, after[:2], strict=True):
        assert (old.state, old.value, old.params, old.datetime_complete) == (
            new.state,
            new.value,
            new.params,
            new.datetime_complete,
        )
    assert after[2].params != after[0].params  # the resumed sampler does not replay trial 0


def test_the_same_seed_proposes_the_same_candidates_and_no_seed_varies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"

    def params(*seed: str) -> list[dict[str, object]]:
        name = f"seed-{uuid.uuid4().hex[:8]}"
        search("run", "--study-name", name, "--storage", url, "--n-trials", "3", "--max-epochs", "1",
               "-q", *seed, cwd=tmp_path)  # fmt: skip
        return [t.params for t in optuna.load_study(study_name=name, storage=url).get_trials()]

    first = params("--seed", "3")
    assert params("--seed", "3") == first
    assert params("--seed", "4") != first
    assert params() != params()  # unset: each process seeds its own sampler


def test_changed_space_on_an_existing_study_is_refused(tmp_path: Path) -> None:
    name = f"space-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 's.db'}"
    search(
        "run",
        "--study-name",
        name,
        "--storage",
        url,
        "--n-trials",
        "1",
        "--max-epochs",
        "1",
        "-q",
        cwd=tmp_path,
    )
    proc = search(
        "run", "--study-name", name, "--storage", url, "--family", "cnn", "-q", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2
    assert "different search space" in proc.stderr and "Traceback" not in proc.stderr
    assert len(optuna.load_study(study_name=name, storage=url).trials) == 1


def test_existing_study_with_another_direction_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    optuna.create_study(study_name="loss", storage=url, direction="minimize")
    before = _dump(tmp_path / "d.db")
    with pytest.raises(SystemExit) as exc:
        main(["run", "-q", "--storage", url, "--study-name", "loss"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "direction minimize" in err
    assert len(optuna.load_study(study_name="loss", storage=url).trials) == 0
    assert _dump(tmp_path / "d.db") == before  # every row as it was (WAL mode aside)


def _dump(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())


def _npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


BAD_INPUTS = [
    (["--family", "transformer"], "transformer"),
    (["--activations", "relu,swishy"], "swishy"),
    (["--dropout-kinds", "bernoulli,zoneout"], "zoneout"),
    (["--dropout-kinds", ""], "empty"),
    (["--sampler", "grid-ish"], "grid-ish"),
    (["--dropout-rate", "0.1,1.0"], "1.0"),
    (["--dropout-rate", "-0.1,0.3"], "-0.1"),
    (["--n-trials", "0"], "0"),
    (["--n-trials", "-3"], "-3"),
    (["--n-trials", "many"], "many"),
    (["--max-epochs", "0"], "0"),
    (["--pruner", "varshift+bogus"], "varshift+bogus"),
    (["--shift-threshold", "0.8"], "0.8"),
    (["--orders", "bn-bn-act"], "bn-bn-act"),
    (["--recalibrate-bn", "sometimes"], "sometimes"),
    (["--storage", "not a url"], "not a url"),
    (["--storage", "nosuchdb://u:hunter2@host/db"], "nosuchdb"),
    (["--config", "missing.toml"], "missing.toml"),
    (["--dataset", "npz:/no/such/file.npz"], "/no/such/file.npz"),
    (["--dataset", "imagenet-21k"], "imagenet-21k"),
    (["--no-such-option", "1"], "--no-such-option"),
    (["--lr", "nan,0.1"], "finite"),
    (["--depth", "3,1"], "3 > 1"),
    (["--widths", "32,x"], "32,x"),
    (["--bn", "sometimes"], "sometimes"),
    (["--dropout", "sometimes"], "sometimes"),
    (["--placements", "blocks,tail"], "tail"),
    (["--placements", ","], "empty"),
    (["--devices", "2", "--strategy", "ddp_spawn"], "ddp_spawn"),
    (["--heartbeat-interval", "30", "--grace-period", "10"], "--grace-period"),
    (["--storage", "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test"], "cannot connect"),
]


@pytest.mark.parametrize(("args", "named"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["run", "-q", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert named in lines[0]
    assert "hunter2" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("n_trials = [", "not valid TOML"),
        ("n-trails = 3\n", "did you mean 'n-trials'"),
        ('n-trials = "three"\n', "three"),
        ("max-epochs = 2.5\n", "2.5"),
        ("per-block = 1\n", "per-block"),
        ("[space]\nactivations = ['relu']\n", "space"),
    ],
)
def test_bad_config_file_is_one_line(
    content: str,
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(content)
    with pytest.raises(SystemExit) as exc:
        main(["run", "--config", "run.toml"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and named in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


def test_npz_shapes_are_checked_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    no_y = _npz(tmp_path / "no_y.npz", x=np.zeros((10, 4)))
    flat = _npz(tmp_path / "flat.npz", x=np.zeros((20, 4)), y=np.arange(20) % 2)
    for args, named in (([no_y], "missing array(s) y"), ([flat, "--family", "cnn"], "family 'cnn'")):
        with pytest.raises(SystemExit) as exc:
            main(["run", "-q", "--dataset", *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and named in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.npz", "no_y.npz"]


def test_config_file_values_apply_and_cli_overrides_them(tmp_path: Path) -> None:
    from search.config import build_config, load_toml

    (tmp_path / "run.toml").write_text('n-trials = 7\nfamily = "cnn"\nactivations = ["relu", "tanh"]\n')
    config = build_config(load_toml(str(tmp_path / "run.toml")), {"n_trials": "9", "family": None})
    assert (config.n_trials, config.family, config.activations) == (9, "cnn", ("relu", "tanh"))
    assert config.resolved_study_name == "digits-cnn"
