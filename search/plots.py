"""Plots of a trial (PNG, matplotlib without pyplot) and of a study (PNG, and plotly figures
for optuna-dashboard). Drawn once a trial has ended, never per epoch.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas: no global pyplot
state, no display, safe in worker processes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter
from optuna.trial import FrozenTrial, TrialState

from search.notes import LAYERS_ATTR, accuracy, arrangement, dropout_kind

if TYPE_CHECKING:
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

DPI = 80  # small files, quick to draw: a trial's two plots take a few tens of ms


def _shift_scale(ax: Any, which: str, values: Sequence[float]) -> None:
    """Log scale only when the shifts span a wide range, with plain tick labels either way."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    if values and max(values) / max(min(values), 1e-9) > 4:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _png(fig: Figure, tight: bool = False) -> bytes:
    """PNG bytes; trial plots set their margins instead of ``tight``, which draws twice."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def layer_shift_png(trial: FrozenTrial) -> bytes:
    """Bars per BN layer: the paper's shift and the dropout-induced shift, 1.0 meaning none."""
    attrs = trial.user_attrs
    layers = attrs.get(LAYERS_ATTR) or {
        k: (None, None, v) for k, v in (attrs.get("variance_shift") or {}).items()
    }
    dropout = attrs.get("dropout_shift") or {}
    names = list(layers)
    height = 1.9 + 0.45 * max(len(names), 1)
    fig = Figure(figsize=(6.0, height))
    longest = max((len(n) for n in names), default=0)
    fig.subplots_adjust(
        left=min(0.5, 0.05 + 0.014 * longest), right=0.97, bottom=0.85 / height, top=1 - 0.35 / height
    )
    ax = fig.subplots()
    ax.set_title(f"Trial {trial.number}: variance shift per BN layer")
    if not names:
        ax.text(0.5, 0.5, "no BatchNorm layer: nothing to shift", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    rows = range(len(names))
    paper = [float(layers[n][2]) for n in names]
    induced = [float(dropout.get(n, 1.0)) for n in names]
    for offset, values, label in (
        (-0.2, paper, "shift (moving vs real var)"),
        (0.2, induced, "dropout-induced shift"),
    ):
        # Bars grow from 1.0, which means no shift.
        ax.barh([r + offset for r in rows], [v - 1 for v in values], left=1.0, height=0.4, label=label)
    ax.set_xlim(1.0, max(1.01, *paper, *induced) * 1.02)
    _shift_scale(ax, "x", [*paper, *induced])
    ax.set_yticks(list(rows), names)
    ax.invert_yaxis()
    ax.set_xlabel("shift = max(real/moving, moving/real), 1 = none")
    ax.legend(
        loc="upper left", bbox_to_anchor=(0.0, -0.5 / height - 0.12), ncols=2, fontsize="small", frameon=False
    )
    return _png(fig)


def epochs_png(trial: FrozenTrial) -> bytes:
    """Validation accuracy (left axis) and the two shift statistics (right axis) by epoch."""
    attrs = trial.user_attrs
    steps = sorted(trial.intermediate_values)
    fig = Figure(figsize=(6.0, 3.2))
    fig.subplots_adjust(left=0.12, right=0.87, bottom=0.15, top=0.9)
    ax = fig.subplots()
    ax.set_title(f"Trial {trial.number}: accuracy and shift by epoch")
    ax.plot(
        steps, [trial.intermediate_values[s] for s in steps], "o-", color="tab:blue", label="val accuracy"
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy", color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right = ax.twinx()
    shifts: list[float] = []
    for key, color, label in (
        ("variance_shift_by_epoch", "tab:red", "max shift"),
        ("dropout_shift_by_epoch", "tab:orange", "dropout-induced shift"),
    ):
        curve = [float(v) for v in attrs.get(key) or []]
        if curve:
            right.plot(range(len(curve)), curve, "s--", color=color, label=label)
            shifts += curve
    _shift_scale(right, "y", shifts)
    right.set_ylabel("shift, 1 = none")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize="small")
    return _png(fig)


def _shift(trial: FrozenTrial) -> float:
    return float(trial.user_attrs.get("variance_shift_max") or 1.0)


def accuracy_vs_shift_png(trials: Sequence[FrozenTrial]) -> bytes:
    """Every finished trial: accuracy against its last measured shift, coloured by arrangement."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    ax.set_title("Accuracy against variance shift, by arrangement (x: pruned)")
    for i, name in enumerate(sorted({arrangement(t) for t in trials})):
        label: str | None = name  # once per arrangement, on whichever marker comes first
        for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
            group = [t for t in trials if arrangement(t) == name and t.state == state]
            if group:
                ys = [float(accuracy(t) or 0.0) for t in group]
                ax.plot([_shift(t) for t in group], ys, marker, linestyle="", color=f"C{i % 10}", label=label)
                label = None
    _shift_scale(ax, "x", [_shift(t) for t in trials])
    ax.set_xlabel("variance shift (last epoch)")
    ax.set_ylabel("accuracy")
    if trials:
        ax.legend(fontsize="small", loc="best")
    return _png(fig, tight=True)


def accuracy_vs_shift_figure(trials: Sequence[FrozenTrial]) -> go.Figure:
    """The plotly version for the dashboard, with the architecture on hover."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in sorted({arrangement(t) for t in trials}):
        group = [t for t in trials if arrangement(t) == name]
        fig.add_trace(
            go.Scatter(
                x=[_shift(t) for t in group],
                y=[float(accuracy(t) or 0.0) for t in group],
                mode="markers",
                name=name,
                marker={
                    "symbol": ["circle" if t.state == TrialState.COMPLETE else "x" for t in group],
                    "size": 9,
                },
                text=[
                    f"#{t.number} {t.state.name.lower()}<br>{t.user_attrs.get('architecture', '')}"
                    for t in group
                ],
                hoverinfo="text+x+y",
            )
        )
    fig.update_layout(
        title="Accuracy against variance shift, by arrangement (x: pruned)",
        xaxis={"title": "variance shift (last epoch)", "type": "log"},
        yaxis={"title": "accuracy"},
    )
    return fig


def accuracy_by_kind_figure(trials: Sequence[FrozenTrial]) -> go.Figure:
    """Accuracy of every finished trial per arrangement, one colour per dropout kind."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind in sorted({dropout_kind(t) for t in trials}):
        group = [t for t in trials if dropout_kind(t) == kind]
        fig.add_trace(
            go.Box(
                x=[arrangement(t) for t in group],
                y=[float(accuracy(t) or 0.0) for t in group],
                name=kind,
                boxpoints="all",
                text=[f"#{t.number} {t.state.name.lower()}" for t in group],
            )
        )
    fig.update_layout(
        title="Accuracy per arrangement and dropout kind",
        boxmode="group",
        xaxis={"title": "arrangement"},
        yaxis={"title": "accuracy"},
    )
    return fig
