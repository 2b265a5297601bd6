"""Trial and study notes, plots and the report, built from hand-made trials: no training."""

from __future__ import annotations

import base64
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from search.document import build_report, report_markdown
from search.markdown_html import inline, to_html
from search.notes import (
    arrangement,
    draw_architecture,
    dropout_kind,
    shift_table,
    shift_verdict,
    trial_note,
)
from search.plots import accuracy_vs_shift_png, epochs_png, layer_shift_png
from search.summary import MIN_TRIALS_FOR_IMPORTANCE, counts_line, importances, study_summary

PNG = b"\x89PNG\r\n\x1a\n"
HARMFUL = "Linear(64)-Dropout(0.30)-BN-ReLU | Linear(64)-Dropout(0.30)-BN-ReLU | Linear(10)"
SAFE = "Linear(64)-BN-ReLU-Dropout(0.30) | Linear(10)"
HEAD = "Linear(64)-BN-ReLU | Uout(0.20)-Linear(10)"


def _params(order: str = "drop-bn-act", dropout: str = "bernoulli", depth: int = 2) -> dict[str, object]:
    params: dict[str, object] = {
        "depth": depth,
        "width": 64,
        "placement": "blocks",
        "block.activation": "relu",
    }
    params |= {"block.bn": True, "block.dropout": dropout, "block.order": order, "lr": 1e-3}
    if dropout != "none":
        params["block.dropout_rate"] = 0.3
    return params


def _distributions(params: dict[str, object]) -> dict[str, optuna.distributions.BaseDistribution]:
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, value in params.items():
        if name == "depth":
            out[name] = IntDistribution(1, 3)
        elif isinstance(value, float):
            out[name] = FloatDistribution(1e-4, 1.0)
        else:
            out[name] = CategoricalDistribution([value])
    return out


def make_trial(
    architecture: str = HARMFUL,
    params: dict[str, object] | None = None,
    state: TrialState = TrialState.COMPLETE,
    curve: tuple[float, ...] = (0.5, 0.7, 0.8),
    **attrs: object,
) -> FrozenTrial:
    params = _params() if params is None else params
    user_attrs: dict[str, object] = {
        "architecture": architecture,
        "variance_shift": {"blocks.0.bn": 2.0, "blocks.1.bn": 1.25},
        "variance_shift_layers": {"blocks.0.bn": [0.5, 0.25, 2.0], "blocks.1.bn": [0.8, 1.0, 1.25]},
        "dropout_shift": {"blocks.0.bn": 1.9, "blocks.1.bn": 1.2},
        "variance_shift_max": 2.0,
        "variance_shift_by_epoch": [9.5, 3.0, 2.0][: len(curve)],
        "dropout_shift_by_epoch": [1.9, 1.9, 1.9][: len(curve)],
        "epochs": len(curve),
        "n_params": 12345,
        "train_seconds": 0.5,
        "device": "cpu",
        **attrs,
    }
    return optuna.trial.create_trial(
        state=state,
        value=max(curve) if state == TrialState.COMPLETE else None,
        params=params,
        distributions=_distributions(params),
        user_attrs=user_attrs,
        intermediate_values=dict(enumerate(curve)),
    )


@pytest.mark.parametrize(
    ("architecture", "params", "expected"),
    [
        (HARMFUL, _params("drop-bn-act"), "Drop-BN-act"),
        (SAFE, _params("bn-act-drop", depth=1), "BN-act-Drop"),
        (
            HEAD,
            {"depth": 1, "block.activation": "relu", "block.bn": True, "head.dropout": "uout"},
            "BN-act + head Drop",
        ),
        (HARMFUL, {}, "Drop-BN-act"),  # no known parameters: read from the architecture string
        ("Linear(32)-ReLU | Linear(32)-BN-ReLU | Linear(10)", {}, "act / BN-act"),
        (
            "ResBlock(16)[BN-ReLU-Conv-BN-ReLU-Dropout2d(0.10)-Conv] | Pool-Linear(10)",
            {},
            "BN-act-BN-act-Drop",
        ),
    ],
)
def test_arrangement_from_params_or_architecture(
    architecture: str, params: dict[str, object], expected: str
) -> None:
    assert arrangement(make_trial(architecture, params)) == expected


def test_dropout_kind() -> None:
    assert dropout_kind(make_trial(HARMFUL)) == "bernoulli"
    assert dropout_kind(make_trial(HEAD, {"depth": 1, "head.dropout": "uout"})) == "uout"
    assert dropout_kind(make_trial("Linear(8)-BN-ReLU | Linear(10)", _params(dropout="none"))) == "none"
    assert dropout_kind(make_trial("Conv(8)-BN-ReLU-Dropout2d(0.10) | Pool-Linear(10)", {})) == "channel"


def test_architecture_is_drawn_block_by_block() -> None:
    drawing = draw_architecture(make_trial(HARMFUL))
    assert drawing.startswith("```text\ninput\n") and drawing.endswith("output\n```")
    assert "↓ block 1  Linear(64) → Dropout(0.30) → BN → ReLU" in drawing
    assert "↓ block 2" in drawing and "↓ head     Linear(10)" in drawing


def test_verdict_follows_the_paper() -> None:
    assert "expect a variance shift" in shift_verdict(make_trial(HARMFUL))
    assert "after the last BN" in shift_verdict(make_trial(SAFE))
    assert "after the last BN" in shift_verdict(make_trial(HEAD))


def test_shift_table_has_moving_real_and_ratio() -> None:
    table = shift_table(make_trial())
    header, _rule, first, second = table.splitlines()
    assert header.split("|")[1:5] == [" BN layer ", " moving var ", " real var ", " ratio moving/real "]
    assert first.startswith("| `blocks.0.bn` | 0.5000 | 0.2500 | 2.000 | 2.000 | 1.900 |")
    assert second.startswith("| `blocks.1.bn` | 0.8000 | 1.0000 | 0.800 | 1.250 | 1.200 |")
    no_bn = make_trial("Linear(8)-ReLU | Linear(10)", {}, variance_shift={}, variance_shift_layers={})
    assert "No BatchNorm layer" in shift_table(no_bn)
    old = make_trial(variance_shift_layers=None)  # a study from before per-layer variances
    assert "| `blocks.0.bn` | - | - | - | 2.000 |" in shift_table(old)


def test_trial_note_explains_pruning_and_recalibration() -> None:
    pruned = make_trial(
        state=TrialState.PRUNED, pruned_by="variance_shift", prune_reason="dropout-induced shift 1.9 > 1.5"
    )
    note = trial_note(pruned)
    assert note.startswith(f"## Trial {pruned.number}: Drop-BN-act, bernoulli dropout")
    assert "pruned by `variance_shift` after 3 epoch(s): dropout-induced shift 1.9 > 1.5" in note
    assert f"`{HARMFUL}`" in note and "| BN layer | moving var | real var |" in note
    recalibrated = trial_note(
        make_trial(val_acc_recalibrated=0.9, val_acc_final=0.8, variance_shift_recalibrated=1.0)
    )
    assert "BN recalibrated: accuracy 0.8000 → 0.9000" in recalibrated
    assert "pruned" not in recalibrated


def _study(trials: list[FrozenTrial]) -> optuna.Study:
    study = optuna.create_study(study_name="notes", direction="maximize")
    study.add_trials(trials)
    return study


def test_study_summary_counts_groups_and_best() -> None:
    trials = [
        make_trial(HARMFUL, curve=(0.5, 0.6)),
        make_trial(SAFE, _params("bn-act-drop", depth=1), curve=(0.8, 0.9)),
        make_trial(SAFE, _params("bn-act-drop", "uout", depth=1), curve=(0.7, 0.85)),
        make_trial(state=TrialState.PRUNED, pruned_by="variance_shift", prune_reason="r"),
        make_trial(state=TrialState.PRUNED, pruned_by="median", prune_reason="r"),
    ]
    assert counts_line(trials) == "**5 trials**: 3 complete, 2 pruned (by `variance_shift` 1, by `median` 1)"
    text = study_summary(_study(trials))
    assert "**Best trial**: #1, accuracy 0.9000, BN-act-Drop, bernoulli dropout" in text
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| BN-act-Drop") or line.startswith("| Drop-BN-act")
    ]
    assert rows == [
        "| BN-act-Drop | 2 | 2 | 0 | 0.9000 | 2.000 |",
        "| Drop-BN-act | 3 | 1 | 2 | 0.6000 | 2.000 |",
    ]
    assert "| uout | 1 | 1 | 0 | 0.8500 |" in text
    assert f"Importances need {MIN_TRIALS_FOR_IMPORTANCE} completed trials; 3 so far." in text


def test_importances_are_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    study = _study([make_trial(curve=(0.1 * i,)) for i in range(1, 6)])

    def broken(*args: object, **kwargs: object) -> dict[str, float]:
        raise RuntimeError("evaluator gave up")

    import importlib

    # optuna.importance is a lazy proxy on the optuna package; patch the real module.
    monkeypatch.setattr(importlib.import_module("optuna.importance"), "get_param_importances", broken)
    assert importances(study) == "Importances not available: RuntimeError: evaluator gave up"
    assert "Importances not available" in study_summary(study)


def test_an_empty_study_has_a_summary() -> None:
    text = study_summary(_study([]))
    assert "**0 trials**: none yet" in text and "none completed yet" in text


def test_plots_are_pngs() -> None:
    trials = [make_trial(), make_trial(SAFE, _params("bn-act-drop", depth=1), state=TrialState.PRUNED)]
    no_bn = make_trial("Linear(8)-ReLU | Linear(10)", {}, variance_shift={}, variance_shift_layers={})
    for png in (
        layer_shift_png(trials[0]),
        epochs_png(trials[0]),
        layer_shift_png(no_bn),
        accuracy_vs_shift_png(trials),
    ):
        assert png.startswith(PNG) and len(png) > 2000


def test_markdown_to_html_subset() -> None:
    assert (
        inline("**a** `x<y` _b_ snake_case") == "<strong>a</strong> <code>x&lt;y</code> <em>b</em> snake_case"
    )
    page = to_html(
        "# T\n\n| a | b |\n|---|---|\n| `x \\| y` | 2 |\n\n- one\n- two\n\n```text\n<pre>\n```\n", "T"
    )
    assert "<h1>T</h1>" in page and "<td><code>x | y</code></td><td>2</td>" in page
    assert "<li>one</li>" in page and "<pre><code>&lt;pre&gt;</code></pre>" in page


def test_report_embeds_plots_and_never_shows_a_password() -> None:
    study = _study([make_trial(), make_trial(SAFE, _params("bn-act-drop", depth=1), curve=(0.9,))])
    url = "postgresql+psycopg://alice:hunter2@db.example/studies"
    markdown = report_markdown(study, url)
    assert "hunter2" not in markdown and "alice:***@db.example" in markdown
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown)
    assert len(images) == 3  # the study scatter and the best trial's two plots
    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    assert "### Trial 1: BN-act-Drop" in markdown and "## Pruned trials and why" in markdown
    page = build_report(study, url, "html")
    assert page.startswith("<!DOCTYPE html>") and page.count('<img alt="') == 3 and "hunter2" not in page
