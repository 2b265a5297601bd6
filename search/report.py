"""Read a study back: rows for ``search trials`` / ``search best`` as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from typing import Any

import optuna
from rich.console import Console
from rich.table import Table

from search.notes import arrangement

FORMATS = ("table", "json", "csv")
KEY_PARAMS = ("depth", "width", "placement", "lr", "weight_decay")


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as a flat record: the public per-trial contract, plus its parameters."""
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "architecture": attrs.get("architecture"),
        "arrangement": arrangement(trial),  # where BN and Dropout sit, e.g. BN-act-Drop
        "variance_shift_max": attrs.get("variance_shift_max"),
        "dropout_shift": (attrs.get("dropout_shift_by_epoch") or [None])[-1],
        "val_acc_recalibrated": attrs.get("val_acc_recalibrated"),
        "epochs": attrs.get("epochs", len(trial.intermediate_values)),
        "n_params": attrs.get("n_params"),
        "train_seconds": attrs.get("train_seconds"),
        "pruned_by": attrs.get("pruned_by"),
        "prune_reason": attrs.get("prune_reason") or attrs.get("error"),
        "params": dict(trial.params),
    }


def best_trials(study: optuna.Study, top: int = 5) -> list[optuna.trial.FrozenTrial]:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(done, key=lambda t: t.value if t.value is not None else float("-inf"), reverse=True)[:top]


def render(rows: Sequence[dict[str, Any]], fmt: str, title: str = "") -> str:
    """Rows as JSON, CSV, or a rich table rendered to text."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2, default=str)
    if fmt == "csv":
        return _csv(rows)
    return _table(rows, title)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    flat = [
        {
            **{k: v for k, v in r.items() if k != "params"},
            **{f"param.{k}": v for k, v in r["params"].items()},
        }
        for r in rows
    ]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def _table(rows: Sequence[dict[str, Any]], title: str) -> str:
    table = Table(title=title or None, show_lines=False)
    for col in (
        "#",
        "state",
        "value",
        "architecture",
        "shift",
        "drop shift",
        "epochs",
        "key params",
        "pruned / why",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = ", ".join(f"{k}={_fmt(r['params'][k], 3)}" for k in KEY_PARAMS if k in r["params"])
        why = f"{r['pruned_by']}: {r['prune_reason']}" if r["pruned_by"] else (r["prune_reason"] or "")
        table.add_row(
            str(r["number"]),
            r["state"],
            _fmt(r["value"]),
            r["architecture"] or "-",
            _fmt(r["variance_shift_max"], 3),
            _fmt(r["dropout_shift"], 3),
            _fmt(r["epochs"]),
            params,
            why,
        )
    width = max(120, shutil.get_terminal_size((160, 24)).columns)
    console = Console(width=width, record=True, file=io.StringIO(), force_terminal=False)
    console.print(table)
    return console.export_text()
