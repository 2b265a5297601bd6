"""The ``search`` command: run, resume and read back studies.

Exit codes: 0 done, 2 bad input (one line, nothing written), 1 runtime failure,
130 interrupted (the running trial is marked FAIL; finished trials stay).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, NoReturn

import optuna
import typer
from rich.console import Console

from search import interrupts
from search.config import ConfigError, build_config, load_toml
from search.report import FORMATS, best_trials, render, trial_row
from search.storage import DEFAULT_STORAGE, StorageError, StorageUnavailable, create_storage, mask_url
from spaces import SpecError
from trainers.errors import DataError
from trainers.stop import stop_requested

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search where BatchNorm and Dropout go, pruned by the measured variance shift.",
)
err_console = Console(stderr=True)
USER_ERRORS = (ConfigError, StorageError, SpecError, DataError)

StorageOpt = Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL (env OPTUNA_STORAGE).")]
StudyOpt = Annotated[str | None, typer.Option("--study-name", help="Study name; default <dataset>-<family>.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table, json or csv.")]


def _opt(help: str, *names: str) -> Any:
    return typer.Option(*names, help=help, show_default=False)


@app.command()
def run(
    config: Annotated[str | None, _opt("TOML file with any of these options as keys.", "--config")] = None,
    study_name: Annotated[
        str | None, _opt("Study name; default <dataset>-<family> (reruns resume).", "--study-name")
    ] = None,
    storage: Annotated[
        str | None,
        _opt(f"SQLAlchemy URL (env OPTUNA_STORAGE); default {DEFAULT_STORAGE}.", "--storage"),
    ] = None,
    n_trials: Annotated[
        str | None, _opt("Trials to add in this run, all workers together [40].", "--n-trials")
    ] = None,
    total_trials: Annotated[
        str | None,
        _opt(
            "Start no trial once the study (all machines) holds this many finished or running ones; "
            "workers checking at the same instant may each start one more.",
            "--total-trials",
        ),
    ] = None,
    timeout: Annotated[str | None, _opt("Stop starting trials after this many seconds.", "--timeout")] = None,
    dataset: Annotated[
        str | None,
        _opt(
            "digits, mnist1d[:N], npz:PATH, csv:PATH, mnist, fashion-mnist, cifar10, cifar100, "
            "an installed plugin name, or module:function [digits].",
            "--dataset",
        ),
    ] = None,
    data_dir: Annotated[str | None, _opt("Folder of torchvision data sets [data].", "--data-dir")] = None,
    download: Annotated[
        bool | None,
        typer.Option(
            "--download/--no-download",
            help="Let torchvision download a missing data set.",
            show_default=False,
        ),
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment",
            help="Random crop (+flip for CIFAR) on image sets [on].",
            show_default=False,
        ),
    ] = None,
    family: Annotated[
        str | None, _opt("mlp, cnn, resnet, an installed plugin name, or module:function [mlp].", "--family")
    ] = None,
    max_epochs: Annotated[str | None, _opt("Epochs per candidate [20].", "--max-epochs")] = None,
    batch_size: Annotated[str | None, _opt("Batch size [64].", "--batch-size")] = None,
    pruner: Annotated[
        str | None,
        _opt(
            "varshift, median, hyperband, none, or varshift+median / varshift+hyperband [varshift+median].",
            "--pruner",
        ),
    ] = None,
    shift_threshold: Annotated[
        str | None, _opt("Shift above which the guard prunes [2.0].", "--shift-threshold")
    ] = None,
    shift_warmup: Annotated[
        str | None, _opt("Epochs before the shift guard may prune [1].", "--shift-warmup")
    ] = None,
    shift_statistic: Annotated[
        str | None, _opt("dropout (dropout-induced) or paper [dropout].", "--shift-statistic")
    ] = None,
    curve_warmup: Annotated[
        str | None, _opt("Epochs before median/hyperband may prune [3].", "--curve-warmup")
    ] = None,
    n_startup_trials: Annotated[
        str | None, _opt("Trials before the median pruner acts [5].", "--n-startup-trials")
    ] = None,
    sampler: Annotated[str | None, _opt("tpe, random or qmc [tpe].", "--sampler")] = None,
    seed: Annotated[
        str | None,
        _opt(
            "Seed of the data split, the trials' training and the sampler: the same command (one "
            "worker) on a fresh study proposes the same candidates. Separate processes on one study "
            "need different seeds. "
            "[unset: split and training from 0, sampler seeded per process]",
            "--seed",
        ),
    ] = None,
    heartbeat_interval: Annotated[
        str | None, _opt("Seconds between a running trial's heartbeats [10].", "--heartbeat-interval")
    ] = None,
    grace_period: Annotated[
        str | None, _opt("A trial silent this long is failed and retried [60].", "--grace-period")
    ] = None,
    storage_retry: Annotated[
        str | None,
        _opt("Seconds to retry a storage that went away before exiting 1 [60].", "--storage-retry"),
    ] = None,
    workers: Annotated[
        str | None, _opt("Parallel trial processes, one device each [1].", "--workers")
    ] = None,
    devices: Annotated[str | None, _opt("Devices inside one trial [1].", "--devices")] = None,
    strategy: Annotated[
        str | None, _opt("Lightning strategy inside a trial, e.g. ddp [auto].", "--strategy")
    ] = None,
    accelerator: Annotated[str | None, _opt("auto, cpu, gpu [auto].", "--accelerator")] = None,
    threads: Annotated[
        str | None, _opt("torch threads per worker; 0 = auto, which is 1 [0].", "--threads")
    ] = None,
    per_block: Annotated[
        bool | None,
        typer.Option(
            "--per-block/--shared-blocks",
            help="Choose BN/Dropout/activation per block, or once for all blocks [shared].",
            show_default=False,
        ),
    ] = None,
    bn: Annotated[str | None, _opt("BatchNorm per block: search, always, never [search].", "--bn")] = None,
    dropout: Annotated[
        str | None,
        _opt("Dropout per block: search (may be absent) or always [search].", "--dropout"),
    ] = None,
    placements: Annotated[
        str | None,
        _opt(
            "Where dropout may go: blocks (with BN/act, in any order), head (only before the "
            "classifier, the paper's remedy) [blocks,head].",
            "--placements",
        ),
    ] = None,
    depth: Annotated[str | None, _opt("Block count range LOW,HIGH [1,3].", "--depth")] = None,
    widths: Annotated[str | None, _opt("Width choices, e.g. 32,64,128.", "--widths")] = None,
    activations: Annotated[
        str | None, _opt("Activation choices, e.g. relu,gelu,tanh.", "--activations")
    ] = None,
    dropout_kinds: Annotated[
        str | None, _opt("Dropout kinds: bernoulli,channel,gaussian,uout.", "--dropout-kinds")
    ] = None,
    dropout_rate: Annotated[
        str | None, _opt("Dropout rate range LOW,HIGH within (0, 1) [0.05,0.5].", "--dropout-rate")
    ] = None,
    orders: Annotated[
        str | None,
        _opt("Orders after the layer, e.g. bn-act-drop,drop-bn-act [all six].", "--orders"),
    ] = None,
    lr: Annotated[str | None, _opt("Learning-rate range LOW,HIGH [1e-4,1e-2].", "--lr")] = None,
    weight_decay: Annotated[
        str | None, _opt("Weight-decay range LOW,HIGH [1e-6,1e-2].", "--weight-decay")
    ] = None,
    recalibrate_bn: Annotated[
        str | None,
        _opt(
            "Re-estimate BN statistics after training: auto, always, never [auto].",
            "--recalibrate-bn",
        ),
    ] = None,
    artifact_dir: Annotated[
        str | None,
        _opt(
            "Folder for kept weights and trial plots; default: artifacts/ beside the SQLite file.",
            "--artifact-dir",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Run or resume a study (everything has a default)."""
    cli_values = {k: v for k, v in locals().items() if k not in ("config", "quiet")}
    cli_values["storage"] = storage or os.environ.get("OPTUNA_STORAGE")
    cli_values["quiet"] = quiet or None
    run_config = build_config(load_toml(config) if config else None, cli_values)
    from search.runner import (
        run_search,  # heavy imports (torch, Lightning) only once input is valid
    )

    run_search(run_config)


@app.command()
def trials(study_name: StudyOpt = None, storage: StorageOpt = None, format: FormatOpt = "table") -> None:
    """Print every trial of a study."""
    study = _load(study_name, storage, format)
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    typer.echo(render(rows, format, title=f"study {study.study_name}"))


@app.command()
def best(
    study_name: StudyOpt = None,
    storage: StorageOpt = None,
    format: FormatOpt = "table",
    top: Annotated[int, typer.Option("--top", min=1, help="How many trials.")] = 5,
    export: Annotated[
        str | None, _opt("Write the best model (weights + spec, safetensors) to this path.", "--export")
    ] = None,
    artifact_dir: Annotated[
        str | None, _opt("Where the run kept weights (its --artifact-dir).", "--artifact-dir")
    ] = None,
) -> None:
    """Print the best completed trials of a study; optionally export the best model."""
    study = _load(study_name, storage, format)
    winners = best_trials(study, top)
    rows = [trial_row(t) for t in winners]
    typer.echo(render(rows, format, title=f"best of {study.study_name}"))
    if export is not None:
        from search.weights import WeightStore, artifact_root

        if not winners:
            raise ConfigError(f"study {study.study_name!r} has no completed trial to export")
        url = storage or os.environ.get("OPTUNA_STORAGE") or DEFAULT_STORAGE
        store = WeightStore(artifact_root(url, artifact_dir), study.study_name)
        try:
            target = store.export(winners[0].number, Path(export))
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
        err_console.print(
            f"exported trial {winners[0].number} to {target}; load it with "
            f"trainers.model.load_model({str(target)!r})",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def dashboard(
    storage: StorageOpt = None,
    artifact_dir: Annotated[
        str | None, _opt("Where the run kept trial plots (its --artifact-dir).", "--artifact-dir")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one.")] = 8080,
) -> None:
    """Start optuna-dashboard on the storage, with the trials' notes and plots (Ctrl-C stops it)."""
    from search.dashboard import create_server, dashboard_url, serve
    from search.storage import sqlite_path

    url = storage or os.environ.get("OPTUNA_STORAGE") or DEFAULT_STORAGE
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError(f"no study database at {path}")
    server = create_server(url, artifact_dir, host, port)
    typer.echo(f"optuna-dashboard for {mask_url(url)} at {dashboard_url(host, server.server_port)}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"warning: bound to {host}: anyone who reaches it can edit studies", highlight=False
        )
    typer.echo("Ctrl-C stops it.")
    serve(server)


@app.command()
def report(
    study_name: StudyOpt = None,
    storage: StorageOpt = None,
    format: Annotated[str | None, _opt("md or html [md, or from --output's suffix].", "--format")] = None,
    output: Annotated[
        str | None, _opt("Write the report here instead of to stdout.", "--output", "-o")
    ] = None,
) -> None:
    """Write a self-contained markdown or HTML report of a study: summary, tables, plots."""
    from search.document import REPORT_FORMATS, build_report

    fmt = format or ("html" if output and Path(output).suffix.lower() in (".html", ".htm") else "md")
    if fmt not in REPORT_FORMATS:
        raise ConfigError(f"unknown report format {fmt!r}; choose from {', '.join(REPORT_FORMATS)}")
    study = _load(study_name, storage, "table")
    text = build_report(study, storage or os.environ.get("OPTUNA_STORAGE") or DEFAULT_STORAGE, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    err_console.print(f"wrote the report of {study.study_name} to {target}", highlight=False, soft_wrap=True)


@app.command()
def lint(
    target: Annotated[
        str,
        typer.Argument(
            help="MODULE:ATTR or FILE.py:ATTR (an nn.Module class, factory or instance), or an exported .safetensors.",
            show_default=False,
        ),
    ],
    input_shape: Annotated[
        str | None,
        _opt("One sample's shape, e.g. 3,32,32 [the dataset's; needed if fx fails].", "--input-shape"),
    ] = None,
    dataset: Annotated[
        str | None, _opt("Measure the real shift on digits, mnist1d or npz:PATH.", "--dataset")
    ] = None,
    weights: Annotated[
        str | None, _opt("state_dict (torch.save) or .safetensors to load before measuring.", "--weights")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Check a PyTorch model for BN/Dropout disharmony; exits 1 when an error-level rule fires."""
    from search.lint_report import LINT_FORMATS, render_lint

    if format not in LINT_FORMATS:
        raise ConfigError(f"unknown format {format!r}; choose from {', '.join(LINT_FORMATS)}")
    from trainers.lint import LintError, parse_input_shape
    from trainers.lint import lint as lint_target

    try:
        report = lint_target(target, parse_input_shape(input_shape), dataset, weights)
    except LintError as err:
        _fail(2, str(err))
    typer.echo(render_lint(report.to_dict(), format))
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _load(study_name: str | None, storage: str | None, fmt: str) -> optuna.Study:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    url = storage or os.environ.get("OPTUNA_STORAGE") or DEFAULT_STORAGE
    from search.storage import sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError(f"no study database at {path}")
    rdb = create_storage(url, heartbeat=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(
                f"--study-name is needed; {mask_url(url)} holds {len(names)} studies: {', '.join(names)}"
            )
        study_name = names[0]
    if study_name not in names:
        raise ConfigError(f"no study {study_name!r} in {mask_url(url)}; found: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=rdb)


def _fail(code: int, message: str) -> NoReturn:
    err_console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise SystemExit(code)


def _storage_lost(exc: BaseException) -> StorageUnavailable | None:
    """The :class:`StorageUnavailable` behind ``exc``, if any. Optuna's trial bookkeeping can
    mask it: when the final ``tell`` and the ``get_trial`` after it both fail, ``_run_trial``'s
    ``finally`` raises an ``UnboundLocalError`` whose context is our error."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, StorageUnavailable):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns every user mistake into one line and exit code 2."""
    interrupts.install()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name="search",
            standalone_mode=False,
        )
        # Typer turns KeyboardInterrupt into a returned 130 when not in standalone mode.
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _fail(130, "interrupted")
    except typer.TyperException as exc:  # Typer's usage errors: bad option, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.format_message())
            raise SystemExit(0) from None
        _fail(2, " ".join(exc.format_message().split()))
    except USER_ERRORS as exc:
        _fail(2, str(exc))
    except KeyboardInterrupt:
        _fail(130, "interrupted; finished trials are saved, rerun the same command to resume")
    except Exception as exc:  # a crash: finished trials are already in the storage
        if os.environ.get("VARSHIFT_DEBUG"):
            raise
        lost = _storage_lost(exc)
        if lost is not None and stop_requested():
            _fail(130, "interrupted while the storage was unreachable; finished trials are saved")
        if lost is not None:
            _fail(1, str(lost))
        _fail(
            1,
            f"{type(exc).__name__}: {mask_url(str(exc)).splitlines()[0] if str(exc) else ''} "
            "(set VARSHIFT_DEBUG=1 for the traceback)",
        )
