"""optuna-dashboard as a user sees it: a study made by ``search run`` (spawned workers, then a
run that prunes), served by a real ``search dashboard`` process on a free loopback port, read
through the dashboard's HTTP API and rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Made:
    cwd: Path
    url: str
    name: str


def search(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPTUNA_STORAGE"}
    proc = subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as err:
        return err.code, "", err.read()


def start_server(cmd: list[str], cwd: Path, base: str) -> subprocess.Popen[str]:
    """Start a dashboard process and wait until its API answers."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited {proc.returncode}: {proc.communicate()}")
        try:
            if get(f"{base}/api/studies")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"dashboard did not answer: {proc.communicate()}")


def stop_server(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """3 trials in 2 spawned workers, then 1 trial that the shift guard prunes at its first epoch."""
    cwd = tmp_path_factory.mktemp("dashboard")
    name = f"dash-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{cwd / 'studies.db'}"
    common = ["--study-name", name, "--storage", url, "--max-epochs", "2", "--bn", "always", "-q"]
    search("run", *common, "--n-trials", "3", "--pruner", "none", "--workers", "2", cwd=cwd)
    prune_now = ["--pruner", "varshift", "--shift-statistic", "paper", "--shift-threshold", "1.01"]
    search("run", *common, "--n-trials", "1", *prune_now, "--shift-warmup", "0", cwd=cwd)
    return Made(cwd, url, name)


@pytest.fixture(scope="module")
def server(made: Made) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "search", "dashboard", "--storage", made.url, "--port", str(port)]
    proc = start_server(cmd, made.cwd, base)
    yield base
    stop_server(proc)


def study_detail(base: str, name: str) -> dict[str, Any]:
    status, _, body = get(f"{base}/api/studies")
    assert status == 200
    ids = [s["study_id"] for s in json.loads(body)["study_summaries"] if s["study_name"] == name]
    status, _, body = get(f"{base}/api/studies/{ids[0]}")
    assert status == 200
    detail: dict[str, Any] = json.loads(body)
    detail["study_id"] = ids[0]
    return detail


def test_trial_notes_show_architecture_shift_table_and_prune_reason(server: str, made: Made) -> None:
    trials = study_detail(server, made.name)["trials"]
    assert [t["state"] for t in trials].count("Pruned") == 1 and len(trials) == 4
    for trial in trials:
        note = trial["note"]["body"]
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert note.startswith(f"## Trial {trial['number']}: ")
        assert f"`{attrs['architecture']}`" in note and "```text\ninput\n" in note
        assert "| BN layer | moving var | real var | ratio moving/real | shift | dropout shift |" in note
        assert "| `blocks.0.bn` |" in note
        if trial["state"] == "Pruned":
            assert "pruned by `variance_shift` after 1 epoch(s)" in note and attrs["prune_reason"] in note


def test_trial_artifacts_are_listed_and_download_as_png(server: str, made: Made) -> None:
    detail = study_detail(server, made.name)
    for trial in detail["trials"]:
        names = sorted(a["filename"] for a in trial["artifacts"])
        n = trial["number"]
        assert names == [f"trial-{n}-epochs.png", f"trial-{n}-layer-shift.png"]
        for artifact in trial["artifacts"]:
            url = f"{server}/artifacts/{detail['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}"
            status, content_type, body = get(url)
            assert (status, content_type) == (200, "image/png") and body.startswith(PNG)


def test_study_note_and_figures(server: str, made: Made) -> None:
    detail = study_detail(server, made.name)
    note = detail["note"]["body"]
    assert note.startswith(f"## Study {made.name}")
    assert "**4 trials**: 3 complete, 1 pruned (by `variance_shift` 1)" in note
    assert "### Best accuracy per arrangement" in note and "### Best accuracy per dropout kind" in note
    assert "**Best trial**: #" in note and "optuna.importance" in note
    figures = {f["id"] for f in detail["plotly_graph_objects"]}
    assert figures == {"varshift-accuracy-vs-shift", "varshift-accuracy-by-arrangement"}


def test_chromium_renders_the_study_note(server: str, made: Made, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium package (.ci/run installs it)")
    study_id = study_detail(server, made.name)["study_id"]
    page = f"{server}/dashboard/studies/{study_id}/note"

    def chromium(*args: str) -> str:
        profile = tmp_path / f"profile-{uuid.uuid4().hex[:6]}"  # a fresh one per run
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
        proc = subprocess.run([*cmd, page], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    dom = chromium("--dump-dom")
    assert f"Study {made.name}" in dom and "Best accuracy per arrangement" in dom
    assert "<table" in dom  # the markdown tables are rendered, not shown as text
    shot = tmp_path / "study.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1000")
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 20_000


def test_the_plain_optuna_dashboard_command_serves_the_same_artifacts(made: Made) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store = made.cwd / "artifacts" / "artifact-store"
    cli = Path(sys.executable).with_name("optuna-dashboard")
    cmd = [str(cli), made.url, "--host", "127.0.0.1", "--port", str(port), "--artifact-dir", str(store)]
    proc = start_server(cmd, made.cwd, base)
    try:
        detail = study_detail(base, made.name)
        trial = detail["trials"][0]
        artifact = trial["artifacts"][0]["artifact_id"]
        status, _, body = get(f"{base}/artifacts/{detail['study_id']}/{trial['trial_id']}/{artifact}")
        assert status == 200 and body.startswith(PNG)
    finally:
        stop_server(proc)


def test_dashboard_prints_its_url_refuses_a_taken_port_and_stops_on_ctrl_c(made: Made) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "search", "dashboard", "--storage", made.url, "--port", str(port)]
    proc = start_server(cmd, made.cwd, f"http://127.0.0.1:{port}")
    try:
        taken = search("dashboard", "--storage", made.url, "--port", str(port), cwd=made.cwd, check=False)
    finally:
        code, out, err = stop_server(proc)
    assert taken.returncode == 2 and taken.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(taken.stderr.strip().splitlines()) == 1
    assert code == 0, err
    assert out.splitlines()[0] == f"optuna-dashboard for {made.url} at http://127.0.0.1:{port}/dashboard/"


def test_report_writes_markdown_and_html(made: Made) -> None:
    markdown = search("report", "--study-name", made.name, "--storage", made.url, cwd=made.cwd).stdout
    assert markdown.startswith(f"# varshift report: {made.name}")
    assert markdown.count("data:image/png;base64,") == 3 and "## Pruned trials and why" in markdown
    proc = search("report", "--storage", made.url, "--output", "out/report.html", cwd=made.cwd)
    page = (made.cwd / "out" / "report.html").read_text()
    assert "wrote the report" in proc.stderr and page.startswith("<!DOCTYPE html>")
    assert page.count('<img alt="') == 3 and "<table>" in page and "Best accuracy per arrangement" in page


@pytest.mark.parametrize("command", ["dashboard", "report", "trials"])
def test_a_password_in_the_storage_url_is_never_printed(command: str, tmp_path: Path) -> None:
    url = "postgresql+psycopg://alice:hunter2@127.0.0.1:1/studies"  # nothing listens on port 1
    proc = search(command, "--storage", url, cwd=tmp_path, check=False)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    assert "hunter2" not in proc.stdout + proc.stderr and "alice:***@" in proc.stderr
