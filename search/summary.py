"""A study explained in markdown: counts, who pruned what, the best trial, which choices matter
(``optuna.importance``), and the best accuracy per arrangement and per dropout kind, so that
"where should Dropout go?" reads at a glance.
"""

from __future__ import annotations

import logging
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.notes import accuracy, arrangement, dropout_kind, fmt_number

log = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 4  # completed trials; fewer give importances that mean nothing
TOP_IMPORTANCES = 8


def counts_line(trials: Sequence[FrozenTrial]) -> str:
    """``12 trials: 8 complete, 3 pruned (variance_shift 2, median 1), 1 fail``."""
    states = Counter(t.state for t in trials)
    pruners = Counter(
        str(t.user_attrs.get("pruned_by") or "pruner") for t in trials if t.state == TrialState.PRUNED
    )
    parts = []
    for state in TrialState:
        if not states[state]:
            continue
        text = f"{states[state]} {state.name.lower()}"
        if state == TrialState.PRUNED:
            text += " (" + ", ".join(f"by `{name}` {n}" for name, n in pruners.most_common()) + ")"
        parts.append(text)
    return f"**{len(trials)} trials**: " + (", ".join(parts) or "none yet")


def best_line(trials: Sequence[FrozenTrial]) -> str:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return "**Best trial**: none completed yet."
    best = max(done, key=lambda t: float(t.value or 0.0))
    attrs = best.user_attrs
    return (
        f"**Best trial**: #{best.number}, accuracy {fmt_number(best.value)}, {arrangement(best)}, "
        f"{dropout_kind(best)} dropout, shift {fmt_number(attrs.get('variance_shift_max'), 3)}: "
        f"`{attrs.get('architecture', '?')}`"
    )


def importances(study: optuna.Study) -> dict[str, float] | str:
    """``optuna.importance`` of the completed trials, or a sentence on why there is none yet."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return f"Importances need {MIN_TRIALS_FOR_IMPORTANCE} completed trials; {len(done)} so far."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from optuna.importance import get_param_importances  # slow import (scikit-learn)

            return get_param_importances(study)
    except Exception as err:  # conditional spaces or constant values can defeat an evaluator
        log.info("no importances for %s: %s", study.study_name, err)
        return f"Importances not available: {type(err).__name__}: {err}"


def importance_table(result: dict[str, float] | str) -> str:
    if isinstance(result, str):
        return f"_{result}_"
    if not result:
        return "_No parameter varies among the completed trials yet._"
    rows = ["| parameter | importance |", "|---|---|"]
    rows += [f"| `{name}` | {value:.3f} |" for name, value in list(result.items())[:TOP_IMPORTANCES]]
    return "\n".join(rows)


def group_table(trials: Sequence[FrozenTrial], key: Callable[[FrozenTrial], str], title: str) -> str:
    """Per group: trials, complete, pruned, best accuracy (completed trials), median final shift."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            groups.setdefault(key(t), []).append(t)
    if not groups:
        return f"_No finished trial per {title} yet._"

    def best(members: list[FrozenTrial]) -> float:
        return max(
            (float(t.value) for t in members if t.state == TrialState.COMPLETE and t.value is not None),
            default=-1.0,
        )

    rows = [
        f"| {title} | trials | complete | pruned | best accuracy | median shift |",
        "|---|---|---|---|---|---|",
    ]
    for name, members in sorted(groups.items(), key=lambda kv: best(kv[1]), reverse=True):
        shifts = [float(s) for t in members if (s := t.user_attrs.get("variance_shift_max")) is not None]
        complete = sum(t.state == TrialState.COMPLETE for t in members)
        top = best(members)
        median = fmt_number(statistics.median(shifts), 3) if shifts else "-"
        counts = f"{len(members)} | {complete} | {len(members) - complete}"
        rows.append(f"| {name} | {counts} | {fmt_number(top) if top >= 0 else '-'} | {median} |")
    return "\n".join(rows)


def study_summary(study: optuna.Study, heading: str = "##") -> str:
    """The study note: counts, best trial, importances, and the arrangement / dropout-kind tables."""
    trials = study.get_trials(deepcopy=False)
    return "\n\n".join(
        [
            f"{heading} Study {study.study_name}",
            counts_line(trials),
            best_line(trials),
            f"{heading}# Best accuracy per arrangement",
            "Arrangement: order of BN, activation (act) and Dropout after each layer; "
            "`+ head Drop`: dropout only before the classifier. Accuracy of pruned trials is not counted.",
            group_table(trials, arrangement, "arrangement"),
            f"{heading}# Best accuracy per dropout kind",
            group_table(trials, dropout_kind, "dropout kind"),
            f"{heading}# Which choices matter (optuna.importance)",
            importance_table(importances(study)),
        ]
    )


def finished(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Trials with something to plot: complete or pruned, with an accuracy."""
    return [
        t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and accuracy(t) is not None
    ]
