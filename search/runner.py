"""``search run``: check input, open the study, run trials under a progress bar, print the best."""

from __future__ import annotations

import logging
import sys

import optuna
import sqlalchemy.exc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from search.config import RunConfig
from search.explain import StudyNotes
from search.report import best_trials, render, trial_row
from search.storage import mask_url
from search.study import TrialBudget, open_study, prepare, run_trials, set_threads
from search.workers import run_workers

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Lightning's and Optuna's per-trial INFO lines would drown the progress bar."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("pytorch_lightning", "lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_search(config: RunConfig) -> optuna.Study:
    """Run ``config.n_trials`` trials in the configured study and print the best ones."""
    quiet_libraries()
    data, pruner = prepare(config)  # user mistakes surface here, before any storage exists
    console = Console(stderr=True)
    notes = StudyNotes()  # written from this process, whichever process ran the trial
    try:
        study = open_study(config, pruner, data)
        set_threads(config)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            disable=config.quiet,
        ) as progress:
            task = progress.add_task(study.study_name, total=config.n_trials, status="")
            best: list[float] = []

            def advance(number: int, state: str, value: float | None) -> None:
                if value is not None and state == "COMPLETE":
                    best[:] = [max([*best, value])]
                shown = f"best {best[0]:.4f}  " if best else ""
                progress.update(task, advance=1, status=f"{shown}last: #{number} {state.lower()}")
                notes.refresh(study)

            if config.workers > 1:
                run_workers(config, lambda event: advance(*event), study, data)
            else:
                run_trials(
                    config,
                    study,
                    data,
                    TrialBudget(config),
                    callbacks=[lambda _, t: advance(t.number, t.state.name, t.value)],
                )
    except sqlalchemy.exc.SQLAlchemyError as err:
        msg = str(getattr(err, "orig", None) or err).splitlines()[0]
        print(f"error: storage {mask_url(config.storage)} failed: {mask_url(msg)}", file=sys.stderr)
        raise SystemExit(1) from None
    notes.refresh(study, force=True)
    print_summary(study)
    return study


def print_summary(study: optuna.Study) -> None:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    rows = [trial_row(t) for t in best_trials(study, top=5)]
    print(render(rows, "table", title=f"best trials of {study.study_name}"))
    print(f"{study.study_name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
