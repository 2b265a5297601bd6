"""``search lint`` output: the report record as JSON, or as rich tables ending in the summary line."""

from __future__ import annotations

import io
import json
import shutil
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

LINT_FORMATS = ("table", "json")


def render_lint(record: dict[str, Any], fmt: str) -> str:
    """``record`` is ``LintReport.to_dict()``; the table's last line is "N errors, M warnings"."""
    if fmt == "json":
        return json.dumps(record, indent=2)
    width = max(120, shutil.get_terminal_size((160, 24)).columns)
    console = Console(width=width, record=True, file=io.StringIO(), force_terminal=False)
    if record["findings"]:
        console.print(_findings_table(record))
    else:
        console.print(f"{record['target']}: no BN/Dropout findings", highlight=False, markup=False)
    if record["measured"]:
        console.print(_measured_table(record["measured"]))
    if record["accuracy"] is not None:
        acc = record["accuracy"]
        console.print(
            f"val accuracy {acc['before']:.4f} as is, {acc['after']:.4f} after BN recalibration",
            highlight=False,
        )
    for line in [record["tracer_note"], *record["notes"]]:
        console.print(line, highlight=False, markup=False)
    console.print(_summary(record["summary"]), highlight=False)
    return console.export_text().rstrip("\n")


def _findings_table(record: dict[str, Any]) -> Table:
    table = Table(title=Text(f"search lint {record['target']}"), title_justify="left")
    for column in ("rule", "severity", "module", "why", "fix"):
        table.add_column(column, overflow="fold")
    for f in record["findings"]:
        # Text, not markup: module paths and messages are the user's strings.
        table.add_row(*(Text(f[k]) for k in ("rule", "severity", "module", "message", "fix")))
    return table


def _measured_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="measured variance shift", title_justify="left")
    for column in ("BN layer", "moving var", "real var", "shift"):
        table.add_column(column, justify="left" if column == "BN layer" else "right")
    for row in rows:
        table.add_row(Text(row["layer"]), *(_num(row[k]) for k in ("moving_var", "real_var", "shift")))
    return table


def _num(value: float | None) -> str:
    return "inf" if value is None else f"{value:.4g}"


def _summary(counts: dict[str, int]) -> str:
    errors, warnings = counts["errors"], counts["warnings"]
    return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
