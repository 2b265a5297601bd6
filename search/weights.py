"""Keep the weights of a study's best few trials, and export the best one.

Files are safetensors (no pickle: safe to load from a shared folder), one per trial,
with the architecture spec in the file's metadata, so ``trainers.model.load_model`` needs
nothing else. They live in the study's artifact folder, next to the SQLite file by default.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import optuna

from search.storage import sqlite_path

log = logging.getLogger(__name__)


def artifact_root(storage: str, artifact_dir: str | None) -> Path:
    """``--artifact-dir``, else an ``artifacts`` folder beside the SQLite file, else ./artifacts."""
    if artifact_dir:
        return Path(artifact_dir)
    db = sqlite_path(storage)
    return (db.parent if db is not None else Path.cwd()) / "artifacts"


class WeightStore:
    """One safetensors file per kept trial; only the ``keep`` best (by value) stay on disk."""

    def __init__(self, root: Path, study_name: str, keep: int = 3) -> None:
        self.folder = root / study_name / "weights"
        self.keep = keep

    def path(self, trial_number: int) -> Path:
        return self.folder / f"trial-{trial_number}.safetensors"

    def prune(self, study: optuna.Study, pending: dict[int, float] | None = None) -> None:
        """Delete files of trials outside the best ``keep`` (``pending``: values not yet told)."""
        values = {
            t.number: t.value
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None
        }
        values.update(pending or {})
        best = set(sorted(values, key=lambda n: values[n], reverse=True)[: self.keep])
        for file in self.folder.glob("trial-*.safetensors"):
            number = int(file.stem.split("-")[1])
            if number not in best and number in values:
                file.unlink(missing_ok=True)

    def export(self, trial_number: int, destination: Path) -> Path:
        source = self.path(trial_number)
        if not source.is_file():
            raise FileNotFoundError(
                f"no saved weights for trial {trial_number} in {self.folder} "
                f"(weights are kept for the best {self.keep} trials)"
            )
        target = (
            destination / "model.safetensors"
            if destination.is_dir() or not destination.suffix
            else destination
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target
