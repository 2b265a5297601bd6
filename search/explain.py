"""Write the explanations where optuna-dashboard shows them: trial notes and PNG artifacts when a
trial ends (from the process that ran it), the study note and plotly figures as the study runs.

Writing an explanation never fails a trial or a run: every failure is logged and dropped.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.weights import artifact_root

log = logging.getLogger(__name__)

STORE_FOLDER = "artifact-store"  # FileSystemArtifactStore under the artifact root, shared by studies
STUDY_REFRESH_SECONDS = 10.0  # the study note is rewritten at most this often while a run goes on
STUDY_FIGURES = ("varshift-accuracy-vs-shift", "varshift-accuracy-by-arrangement")  # plotly ids


def artifact_store_path(storage: str, artifact_dir: str | None) -> Path:
    """Where trial artifacts live: ``<artifact root>/artifact-store`` (pass it to
    ``optuna-dashboard --artifact-dir``)."""
    return artifact_root(storage, artifact_dir) / STORE_FOLDER


@dataclass(frozen=True)
class TrialExplainer:
    """Writes a finished trial's note (``save_note``) and its two plots (``upload_artifact``).

    Picklable: each worker process builds its own store from the path.
    """

    store_path: Path
    plots: bool = True

    def explain(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        """Note first, then plots: a broken artifact store still leaves the note."""
        from search.notes import as_finished

        started = time.perf_counter()
        try:
            frozen = as_finished(trial, state, value)
        except Exception as err:
            log.warning("could not read back trial %d: %s", trial.number, err)
            return
        writers = [("note", self._save_note)] + ([("plots", self._upload_plots)] if self.plots else [])
        for what, write in writers:
            try:
                write(trial, frozen)
            except Exception as err:  # a note is never worth a trial
                log.warning("could not store the %s of trial %d: %s", what, trial.number, err)
        log.debug("explained trial %d in %.3f s", trial.number, time.perf_counter() - started)

    def _save_note(self, trial: optuna.Trial, frozen: FrozenTrial) -> None:
        from optuna_dashboard import save_note

        from search.notes import trial_note

        save_note(trial, trial_note(frozen))

    def _upload_plots(self, trial: optuna.Trial, frozen: FrozenTrial) -> None:
        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        from search.plots import epochs_png, layer_shift_png

        self.store_path.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(self.store_path)
        with tempfile.TemporaryDirectory(prefix="varshift-plots-") as tmp:
            for name, draw in (("layer-shift", layer_shift_png), ("epochs", epochs_png)):
                path = Path(tmp) / f"trial-{frozen.number}-{name}.png"
                path.write_bytes(draw(frozen))
                upload_artifact(
                    artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="image/png"
                )


class StudyNotes:
    """Rewrites the study note and figures, at most every ``interval`` seconds unless forced."""

    def __init__(self, interval: float = STUDY_REFRESH_SECONDS) -> None:
        self.interval = interval
        self._last = float("-inf")

    def refresh(self, study: optuna.Study, force: bool = False) -> bool:
        """Returns whether it wrote; failures are logged, never raised."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return False
        self._last = now
        try:
            write_study_note(study)
        except Exception as err:
            log.warning("could not write the note of study %s: %s", study.study_name, err)
            return False
        return True


def write_study_note(study: optuna.Study) -> None:
    from optuna_dashboard import save_note, save_plotly_graph_object

    from search.plots import accuracy_by_kind_figure, accuracy_vs_shift_figure
    from search.summary import finished, study_summary

    save_note(study, study_summary(study))
    trials = finished(study.get_trials(deepcopy=False))
    for figure_id, draw in zip(
        STUDY_FIGURES, (accuracy_vs_shift_figure, accuracy_by_kind_figure), strict=True
    ):
        save_plotly_graph_object(study, draw(trials), graph_object_id=figure_id)
