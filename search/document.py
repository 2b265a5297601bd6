"""``search report``: the study note, the best trials and the plots as one self-contained
markdown or HTML document (PNGs embedded as data URIs), for people who do not run a dashboard.

Everything is rebuilt from the stored public records, so a report also works for studies run
before notes existed, and never needs the artifact store.
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.markdown_html import to_html
from search.notes import accuracy, arrangement, dropout_kind, fmt_number, trial_note
from search.plots import accuracy_vs_shift_png, epochs_png, layer_shift_png
from search.storage import mask_url
from search.summary import finished, study_summary

log = logging.getLogger(__name__)

REPORT_FORMATS = ("md", "html")
TOP = 10


def image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def best_table(trials: Sequence[FrozenTrial], top: int = TOP) -> str:
    done = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
        key=lambda t: float(t.value or 0.0),
        reverse=True,
    )[:top]
    if not done:
        return "_No completed trial yet._"
    rows = ["| # | accuracy | arrangement | dropout | shift | architecture |", "|---|---|---|---|---|---|"]
    for t in done:
        shift = fmt_number(t.user_attrs.get("variance_shift_max"), 3)
        architecture = _cell(t.user_attrs.get("architecture", "?"))
        rows.append(
            f"| {t.number} | {fmt_number(t.value)} | {_cell(arrangement(t))} | {dropout_kind(t)} | "
            f"{shift} | `{architecture}` |"
        )
    return "\n".join(rows)


def pruned_table(trials: Sequence[FrozenTrial]) -> str:
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if not pruned:
        return "_No trial was pruned._"
    rows = ["| # | pruned by | epochs | best accuracy | reason |", "|---|---|---|---|---|"]
    for t in pruned:
        rows.append(
            f"| {t.number} | {t.user_attrs.get('pruned_by', '-')} | {len(t.intermediate_values)} | "
            f"{fmt_number(accuracy(t))} | {_cell(t.user_attrs.get('prune_reason', '-'))} |"
        )
    return "\n".join(rows)


def _best_trial_section(trials: Sequence[FrozenTrial]) -> list[str]:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return []
    best = max(done, key=lambda t: float(t.value or 0.0))
    return [
        "## The best trial",
        trial_note(best, heading="###"),
        image(layer_shift_png(best), f"trial {best.number}: variance shift per BN layer"),
        image(epochs_png(best), f"trial {best.number}: accuracy and shift by epoch"),
    ]


def report_markdown(study: optuna.Study, storage: str) -> str:
    """The whole report as markdown; ``storage`` is shown with its password masked."""
    trials = study.get_trials(deepcopy=False)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"# varshift report: {study.study_name}",
        f"Storage `{mask_url(storage)}`, {stamp}.",
        study_summary(study, heading="##"),
        "## Accuracy against variance shift",
        image(accuracy_vs_shift_png(finished(trials)), "accuracy against variance shift, by arrangement"),
        f"## Best {TOP} trials",
        best_table(trials),
        "## Pruned trials and why",
        pruned_table(trials),
        *_best_trial_section(trials),
    ]
    return "\n\n".join(sections) + "\n"


def build_report(study: optuna.Study, storage: str, fmt: str) -> str:
    """The report as ``md`` or ``html`` text."""
    markdown = report_markdown(study, storage)
    return to_html(markdown, f"varshift report: {study.study_name}") if fmt == "html" else markdown
