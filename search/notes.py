"""A trial explained in markdown: its architecture drawn block by block, its per-layer variance
shift, why it was pruned, and what BN recalibration gave.

Everything here reads only the public per-trial records (DESIGN.md), so the same note can be
written when a trial ends (optuna-dashboard shows it) and rebuilt later for ``search report``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from spaces.spec import BlockSpec, SpecError

log = logging.getLogger(__name__)

LAYERS_ATTR = "variance_shift_layers"  # {BN layer: [moving_var, real_var, shift]}, latest epoch
_DROPOUT_KINDS = (  # label prefix in the architecture string -> dropout kind
    (re.compile(r"^Dropout\d+d\("), "channel"),
    (re.compile(r"^GaussianDropout\("), "gaussian"),
    (re.compile(r"^Uout\("), "uout"),
    (re.compile(r"^Dropout\("), "bernoulli"),
)
_LAYER = re.compile(r"^(Linear|Conv\w*|ResBlock)\b")


def _component(token: str) -> str:
    """``BN``, ``Drop``, ``layer``, ``pool`` or ``act`` for one token of an architecture string."""
    if token == "BN":
        return "BN"
    if any(p.match(token) for p, _ in _DROPOUT_KINDS):
        return "Drop"
    if _LAYER.match(token):
        return "layer"
    return "pool" if token == "Pool" else "act"


def _parts(trial: FrozenTrial) -> list[list[str]]:
    """The architecture string split into blocks (the last one is the head) and their tokens."""
    text = str(trial.user_attrs.get("architecture") or "")
    return [[t for t in re.split(r"[-\[\]]", part.strip()) if t] for part in text.split("|") if part.strip()]


def _block_prefixes(params: dict[str, Any]) -> list[str]:
    depth = int(params.get("depth", 0))
    return ["block."] * depth if "block.activation" in params else [f"block{i + 1}." for i in range(depth)]


def _block_arrangements(trial: FrozenTrial) -> list[str]:
    """Each block's arrangement from its parameters (``block.order``, ``block.bn``, ...), through
    ``BlockSpec`` so that it matches what was built; from the architecture string otherwise."""
    params = trial.params
    try:
        specs = [
            BlockSpec(
                width=1,
                bn=bool(params.get(f"{p}bn", False)),
                dropout=None if params.get(f"{p}dropout", "none") == "none" else params[f"{p}dropout"],
                dropout_rate=float(params.get(f"{p}dropout_rate", 0.0)),
                order=tuple(str(params.get(f"{p}order", "bn-act-drop")).split("-")),
            )
            for p in _block_prefixes(params)
        ]
    except (SpecError, KeyError, TypeError, ValueError):
        specs = []
    if specs:
        return [s.arrangement for s in specs]
    components = [
        [c for c in map(_component, tokens) if c in ("BN", "act", "Drop")] for tokens in _parts(trial)[:-1]
    ]
    return ["-".join(c) for c in components]


def arrangement(trial: FrozenTrial) -> str:
    """Where BN and Dropout sit, e.g. ``BN-act-Drop`` or ``BN-act + head Drop``.

    Blocks with different arrangements (``--per-block``) are listed in order, joined by ``/``.
    """
    blocks = _block_arrangements(trial)
    if not blocks and not _parts(trial):
        return "?"
    text = " / ".join(dict.fromkeys(b for b in blocks if b)) or "act"
    head = _parts(trial)[-1] if _parts(trial) else []
    if trial.params.get("head.dropout") or "Drop" in map(_component, head):
        text += " + head Drop"
    return text


def dropout_kind(trial: FrozenTrial) -> str:
    """The dropout kinds a candidate uses, e.g. ``bernoulli``, ``uout``, or ``none``."""
    params = trial.params
    kinds = [
        str(params[k])
        for k in [f"{p}dropout" for p in _block_prefixes(params)] + ["head.dropout"]
        if k in params
    ]
    if not kinds:
        kinds = [kind for tokens in _parts(trial) for t in tokens for p, kind in _DROPOUT_KINDS if p.match(t)]
    return "+".join(k for k in dict.fromkeys(kinds) if k != "none") or "none"


def accuracy(trial: FrozenTrial) -> float | None:
    """The trial's value when complete, else the best validation accuracy it reached."""
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        return float(trial.value)
    return max(trial.intermediate_values.values(), default=None)


def shift_verdict(trial: FrozenTrial) -> str:
    """One sentence on where Dropout sits against BN, after Li et al. (2019)."""
    sequence = [_component(t) for tokens in _parts(trial) for t in tokens]
    drops = [i for i, c in enumerate(sequence) if c == "Drop"]
    bns = [i for i, c in enumerate(sequence) if c == "BN"]
    if drops and bns and drops[0] < bns[-1]:
        return "Dropout feeds a later BN: expect a variance shift."
    if drops and bns:
        return "Dropout only after the last BN: no variance shift from dropout."
    if drops:
        return "Dropout without BN: no BN statistics to shift."
    return "No dropout: no dropout-induced shift." if bns else "Neither BN nor dropout."


def draw_architecture(trial: FrozenTrial) -> str:
    """The architecture as a fenced text block, one line per block, the head last."""
    text = str(trial.user_attrs.get("architecture") or "")
    parts = [p.strip() for p in text.split("|") if p.strip()]
    if not parts:
        return "_architecture not recorded_"
    labels = [f"block {i + 1}" for i in range(len(parts) - 1)] + ["head"]
    lines = [f"  ↓ {label:<8} {part.replace('-', ' → ')}" for label, part in zip(labels, parts, strict=True)]
    return "```text\ninput\n" + "\n".join(lines) + "\noutput\n```"


def fmt_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def shift_table(trial: FrozenTrial) -> str:
    """Per BN layer: moving var, real var, their ratio, the shift, and the dropout-induced shift."""
    attrs = trial.user_attrs
    layers: dict[str, Sequence[float | None]] = attrs.get(LAYERS_ATTR) or {
        name: (None, None, shift) for name, shift in (attrs.get("variance_shift") or {}).items()
    }
    if not layers:
        return "_No BatchNorm layer: nothing to shift._"
    dropout = attrs.get("dropout_shift") or {}
    rows = [
        "| BN layer | moving var | real var | ratio moving/real | shift | dropout shift |",
        "|---|---|---|---|---|---|",
    ]
    for name, (moving, real, shift) in layers.items():
        ratio = moving / real if moving is not None and real else None
        cells = [
            fmt_number(moving),
            fmt_number(real),
            *(fmt_number(v, 3) for v in (ratio, shift, dropout.get(name))),
        ]
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _curve(values: Sequence[float] | None) -> str:
    return ", ".join(fmt_number(v, 3) for v in values or []) or "-"


def outcome_lines(trial: FrozenTrial) -> list[str]:
    """Bullet lines: state and accuracy, prune reason, recalibration, size and time."""
    attrs = trial.user_attrs
    acc = accuracy(trial)
    lines = [f"- **{trial.state.name.lower()}**, best validation accuracy {fmt_number(acc)}"]
    if trial.state == TrialState.PRUNED:
        epochs = len(trial.intermediate_values)
        who, why = attrs.get("pruned_by") or "pruner", attrs.get("prune_reason") or "-"
        lines.append(f"- pruned by `{who}` after {epochs} epoch(s): {why}")
    if attrs.get("error"):
        lines.append(f"- error: {attrs['error']}")
    if "val_acc_recalibrated" in attrs:
        before, after = fmt_number(attrs.get("val_acc_final")), fmt_number(attrs["val_acc_recalibrated"])
        shift = fmt_number(attrs.get("variance_shift_recalibrated"), 3)
        lines.append(f"- BN recalibrated: accuracy {before} → {after}, shift after {shift}")
    facts = [
        f"{attrs['epochs']} epochs" if "epochs" in attrs else "",
        f"{attrs['n_params']:,} parameters" if "n_params" in attrs else "",
        f"{float(attrs['train_seconds']):.2f} s training" if "train_seconds" in attrs else "",
        f"device {attrs['device']}" if "device" in attrs else "",
    ]
    if any(facts):
        lines.append("- " + ", ".join(f for f in facts if f))
    return lines


def trial_note(trial: FrozenTrial, heading: str = "##") -> str:
    """The markdown note of one finished trial (``heading``: the level of its title)."""
    attrs = trial.user_attrs
    arch = attrs.get("architecture")
    kind = dropout_kind(trial)
    return "\n\n".join(
        [
            f"{heading} Trial {trial.number}: {arrangement(trial)}, {kind.replace('none', 'no')} dropout",
            "\n".join(outcome_lines(trial)),
            f"{heading}# Architecture",
            f"`{arch}`" if arch else "",
            draw_architecture(trial),
            shift_verdict(trial),
            f"{heading}# Variance shift per BN layer, after {len(trial.intermediate_values)} epoch(s)",
            shift_table(trial),
            f"Max shift by epoch: {_curve(attrs.get('variance_shift_by_epoch'))}  \n"
            f"Dropout-induced shift by epoch: {_curve(attrs.get('dropout_shift_by_epoch'))}",
        ]
    )


def as_finished(trial: optuna.Trial, state: TrialState, value: float | None) -> FrozenTrial:
    """A snapshot of a running trial as it will be stored once told ``state`` and ``value``."""
    frozen: FrozenTrial = trial._get_latest_trial()  # the same snapshot should_prune() sees
    frozen = FrozenTrial(
        number=frozen.number,
        state=state,
        value=value,
        datetime_start=frozen.datetime_start,
        datetime_complete=None,
        params=frozen.params,
        distributions=frozen.distributions,
        user_attrs=dict(frozen.user_attrs),
        system_attrs={},
        intermediate_values=dict(frozen.intermediate_values),
        trial_id=frozen._trial_id,
    )
    return frozen
