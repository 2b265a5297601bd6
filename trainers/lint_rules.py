"""The lint rules: where a model's BN/Dropout arrangement breaks the rules of Li et al. 2019.

Each rule walks the traced :class:`~trainers.lint_graph.LayerGraph` along real data edges:

- **VS001** (error) a BN fed by a Dropout, directly or through layers that carry the extra
  variance on (Linear/Conv, pooling, reshapes, activations; see ``trainers.lint_kinds``).
  Its running variance is learned with dropout on and is wrong at inference by the ratio
  in DESIGN.md. An error because the statistics are wrong by construction, whatever the
  data; how much accuracy it costs is what the measured pass (``--dataset``) shows.
- **VS002** (warning) a Dropout right before a sigmoid/tanh: dropout's 1/(1-q) scaling
  pushes inputs into saturation in training only, so the activation's output mean and
  variance differ at inference. A warning: no BN statistic is corrupted, and the damage
  depends on the rate and on how close the inputs sit to saturation.
- **VS003** (warning) element-wise dropout on conv feature maps: neighbouring pixels are
  correlated, so dropping single ones regularises little (channel dropout drops whole maps).
- **VS004** (warning) BN after the activation (layer -> act -> BN) instead of before it.

Dropout only after the last BN (e.g. before the classifier) triggers none of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from trainers.lint_graph import LayerGraph, LayerNode
from trainers.lint_kinds import DropoutInfo, LayerKind

K = LayerKind
# Kinds each walk passes through; it stops at the first node of any other kind.
_SHIFT_CARRIERS = frozenset({K.LINEAR, K.CONV, K.POOL, K.RESHAPE, K.ACT, K.SATURATING})
_VALUE_KEEPING = frozenset({K.POOL, K.RESHAPE})
_MAP_KEEPING = frozenset({K.ACT, K.SATURATING, K.BN, K.NORM, K.POOL, K.RESHAPE, K.DROPOUT})
_BN_TO_ACT = frozenset({K.POOL, K.RESHAPE, K.DROPOUT})


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class RuleInfo:
    severity: Severity
    title: str
    fix: str


class Rule(Enum):
    VS001 = RuleInfo(
        Severity.ERROR,
        "BatchNorm fed by Dropout (variance shift)",
        "move the Dropout after the last BN (e.g. before the classifier); or use Uout/GaussianDropout "
        "at a small rate; or recalibrate BN after training (trainers.recalibrate.recalibrate_bn)",
    )
    VS002 = RuleInfo(
        Severity.WARNING,
        "Dropout before a saturating activation",
        "apply the activation first, then the Dropout (act -> Dropout)",
    )
    VS003 = RuleInfo(
        Severity.WARNING,
        "element-wise Dropout on conv feature maps",
        "use channel dropout (nn.Dropout2d / nn.Dropout1d) on feature maps, or no dropout there",
    )
    VS004 = RuleInfo(
        Severity.WARNING,
        "BatchNorm after the activation",
        "put the BN right after the Linear/Conv layer, before the activation (layer -> BN -> act)",
    )

    @property
    def severity(self) -> Severity:
        return self.value.severity

    @property
    def fix(self) -> str:
        return self.value.fix


@dataclass(frozen=True)
class Finding:
    rule: Rule
    module: str  # module path of the layer to change
    message: str  # one line: why
    expected_ratio: float | None = None  # VS001: moving_var / real_var the formulas predict

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule.name,
            "severity": self.rule.severity.value,
            "module": self.module,
            "message": self.message,
            "fix": self.rule.fix,
        }
        if self.expected_ratio is not None:
            out["expected_ratio"] = self.expected_ratio
        return out


def expected_ratio(drop: DropoutInfo) -> float:
    """``moving_var / real_var`` of a BN this dropout feeds (DESIGN.md), for zero-mean input.

    With mean c and variance v the Bernoulli ratio is ``1/p + (c^2/v)(1/p - 1)`` >= 1/p, so
    the c = 0 value is a lower bound; the same holds through Linear/Conv layers whose inputs
    are independent.
    """
    q = drop.rate
    if drop.kind in ("alpha", "feature_alpha"):
        return 1.0  # alpha dropout keeps mean and variance by construction (SELU nets)
    if drop.kind == "uout":
        return (3.0 + q**2) / 3.0  # x * (1 + r), r ~ U(-b, b), b = q
    if q >= 1.0:
        return math.inf
    if drop.kind == "gaussian":
        return 1.0 + q / (1.0 - q)  # 1 + s^2, s^2 = q / (1 - q)
    return 1.0 / (1.0 - q)  # Bernoulli, element-wise or per channel


def check_graph(graph: LayerGraph) -> list[Finding]:
    """Every rule over ``graph``; a layer called several times is reported once."""
    findings: list[Finding] = []
    for check in (_vs001, _vs002, _vs003, _vs004):
        for finding in check(graph):
            if finding not in findings:
                findings.append(finding)
    return findings


def _walk(
    graph: LayerGraph,
    start: LayerNode,
    step: Callable[[LayerNode], list[LayerNode]],
    through: frozenset[LayerKind],
    targets: frozenset[LayerKind],
) -> Iterator[tuple[LayerNode, list[LayerNode]]]:
    """Nodes of ``targets`` kinds reachable from ``start`` via ``through`` kinds, with the path between."""
    stack: list[tuple[LayerNode, list[LayerNode]]] = [(n, []) for n in step(start)]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node.key in seen:
            continue
        seen.add(node.key)
        if node.kind in targets:
            yield node, path
        elif node.kind in through:
            stack.extend((n, [*path, node]) for n in step(node))


def _vs001(graph: LayerGraph) -> Iterator[Finding]:
    for bn in graph.of_kind(K.BN):
        for drop, path in _walk(graph, bn, graph.inputs, _SHIFT_CARRIERS, frozenset({K.DROPOUT})):
            assert drop.dropout is not None
            ratio = expected_ratio(drop.dropout)
            if ratio <= 1.0 + 1e-9:
                continue
            if path:
                via = f" through {', '.join(n.path for n in reversed(path))}"
                assumed = "zero-mean independent inputs; correlated ones bring it toward 1"
            else:
                via, assumed = " directly", "zero-mean input, c = 0; a non-zero mean makes it larger"
            yield Finding(
                Rule.VS001,
                bn.path,
                f"fed by {drop.label} ({drop.path}){via}: its running variance is learned with dropout "
                f"on, expected moving/real variance ratio {ratio:.3g} at inference ({assumed})",
                round(ratio, 6),
            )


def _vs002(graph: LayerGraph) -> Iterator[Finding]:
    for drop in graph.of_kind(K.DROPOUT):
        for act, _ in _walk(graph, drop, graph.successors, _VALUE_KEEPING, frozenset({K.SATURATING})):
            yield Finding(
                Rule.VS002,
                drop.path,
                f"{drop.label} feeds {act.label} ({act.path}): dropout's 1/(1-q) scaling pushes it "
                "into saturation in training only, so its outputs differ at inference",
            )


def _vs003(graph: LayerGraph) -> Iterator[Finding]:
    conv = frozenset({K.CONV})
    for drop in graph.of_kind(K.DROPOUT):
        shape = drop.in_shape
        if drop.dropout is None or not drop.dropout.elementwise or shape is None:
            continue
        if len(shape) < 3 or math.prod(shape[2:]) <= 1:
            continue  # not a map, or 1x1 maps, where element-wise already is channel dropout
        near_conv = any(_walk(graph, drop, graph.inputs, _MAP_KEEPING, conv)) or any(
            _walk(graph, drop, graph.successors, _MAP_KEEPING, conv)
        )
        if near_conv:
            yield Finding(
                Rule.VS003,
                drop.path,
                f"{drop.label} drops single elements of {'x'.join(map(str, shape[1:]))} conv feature "
                "maps; neighbouring values are correlated, so it regularises little",
            )


def _vs004(graph: LayerGraph) -> Iterator[Finding]:
    acts = frozenset({K.ACT, K.SATURATING})
    layers = frozenset({K.LINEAR, K.CONV})
    for bn in graph.of_kind(K.BN):
        for act, _ in _walk(graph, bn, graph.inputs, _BN_TO_ACT, acts):
            for layer, _ in _walk(graph, act, graph.inputs, _BN_TO_ACT, layers):
                yield Finding(
                    Rule.VS004,
                    bn.path,
                    f"normalises {act.label} ({act.path}) output of {layer.label} ({layer.path}); "
                    "BN belongs between the layer and its activation",
                )
