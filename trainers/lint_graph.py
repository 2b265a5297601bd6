"""A model as a graph of layers in execution order: what the lint rules walk.

Two tracers. ``torch.fx`` (preferred) gives the real data flow: a node's inputs are the
nodes whose outputs it reads, functional calls (``F.relu``, ``x.flatten(1)``) included, and
one run on a dummy input gives every activation's shape. A model fx cannot trace
(data-dependent control flow, ...) runs once on the dummy input with forward hooks on its
leaf modules instead: a module's input is matched to the module whose output tensor (or a
view of it) it is, else taken to be the previous module's output. Functional calls are
invisible to hooks, so that graph is an approximation, and the report says which was used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from trainers.layers import is_dropout
from trainers.lint_kinds import DropoutInfo, LayerKind, call_kind, dropout_info, module_kind
from trainers.variance_shift import _measuring, _module_device

log = logging.getLogger(__name__)

_DUMMY_BATCH = 2  # two samples: enough for any layer that needs a batch


class LintError(ValueError):
    """A lint target or option that cannot be used as given; the message names it."""


@dataclass
class LayerNode:
    """One call of a layer (a module called twice is two nodes with the same ``path``)."""

    key: str  # unique per call
    path: str  # module path, or "owner.forward:fn" for a functional call
    kind: LayerKind
    label: str  # "Conv2d", "Dropout(p=0.5)", "F.relu"
    inputs: list[str] = field(default_factory=list)  # keys of the nodes whose output it reads
    in_shape: tuple[int, ...] | None = None  # of its (first) input, batch included
    dropout: DropoutInfo | None = None


@dataclass
class LayerGraph:
    nodes: dict[str, LayerNode]  # in execution order
    tracer: str  # "fx" or "hooks"
    note: str  # one sentence for the report
    has_shapes: bool

    def __post_init__(self) -> None:
        self._successors: dict[str, list[LayerNode]] = {key: [] for key in self.nodes}
        for node in self.nodes.values():
            for key in node.inputs:
                self._successors[key].append(node)

    def inputs(self, node: LayerNode) -> list[LayerNode]:
        return [self.nodes[key] for key in node.inputs]

    def successors(self, node: LayerNode) -> list[LayerNode]:
        return self._successors[node.key]

    def of_kind(self, kind: LayerKind) -> list[LayerNode]:
        return [n for n in self.nodes.values() if n.kind is kind]


def trace_model(model: nn.Module, input_shape: tuple[int, ...] | None) -> LayerGraph:
    """fx where it can; otherwise forward hooks on a dummy input of ``input_shape``."""
    dummy = _dummy(model, input_shape) if input_shape is not None else None
    try:
        return _fx_graph(model, dummy)
    except _FxRunError as err:
        reason = f"fx could not run its traced graph ({err})"
    except Exception as err:  # fx raises TraceError, TypeError, AttributeError, ... on user code
        reason = f"fx could not trace ({_one_line(err)})"
    log.info("%s; falling back to forward hooks", reason)
    if dummy is None:
        raise LintError(f"{reason}; give --input-shape (e.g. 3,32,32) so forward hooks can run the model")
    return _hook_graph(model, dummy, f"{reason}; used forward hooks")


class _FxRunError(Exception):
    """The traced graph did not run on the dummy input (maybe the shape is wrong)."""


class _LeafTracer(fx.Tracer):
    """Stops at every dropout and BN layer, custom ones (GaussianDropout, Uout) included."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_kind(m) in (LayerKind.DROPOUT, LayerKind.BN) or super().is_leaf_module(
            m, module_qualified_name
        )


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced graph, keeping each tensor output's shape in ``node.meta["lint_shape"]``.

    (fx's own ShapeProp prints a traceback on failure; the fallback to hooks says it in one line.)"""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, Tensor):
            n.meta["lint_shape"] = tuple(result.shape)
        return result


def _fx_graph(model: nn.Module, dummy: Tensor | None) -> LayerGraph:
    tracer = _LeafTracer()
    with _measuring(model):
        model.train()  # so that F.dropout(x, p, self.training) is traced as active
        graph = tracer.trace(model)
        if dummy is not None:
            model.eval()  # shapes without touching BN statistics
            try:
                _ShapeRecorder(fx.GraphModule(tracer.root, graph)).run(dummy)
            except Exception as err:
                raise _FxRunError(_one_line(err)) from err
    modules = dict(model.named_modules())
    nodes: dict[str, LayerNode] = {}
    for n in graph.nodes:
        if n.op in ("call_module", "call_function", "call_method"):
            nodes[n.name] = _fx_node(n, modules)
    for node in nodes.values():
        node.inputs = [key for key in node.inputs if key in nodes]
    note = "traced with torch.fx" + ("" if dummy is not None else " (no input shape: shapes unknown)")
    return LayerGraph(nodes, "fx", note, has_shapes=dummy is not None)


def _fx_node(n: fx.Node, modules: dict[str, nn.Module]) -> LayerNode:
    first = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
    in_shape = first.meta.get("lint_shape") if first is not None else None
    if n.op == "call_module":
        module = modules[str(n.target)]
        kind, drop = module_kind(module), dropout_info(module)
        path, label = str(n.target), _module_label(module)
    else:
        fn = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
        kind = call_kind(fn)
        drop = _call_dropout(fn, n) if kind is LayerKind.DROPOUT else None
        if kind is LayerKind.DROPOUT and drop is None:
            kind = LayerKind.RESHAPE  # F.dropout(..., training=False): a no-op
        stack = n.meta.get("nn_module_stack") or {}
        owner = list(stack.values())[-1][0] if stack else ""
        path = f"{owner}.forward:{fn}" if owner else f"forward:{fn}"
        label = f"{'Tensor.' if n.op == 'call_method' else 'F.'}{fn}" + (f"(p={drop.rate:g})" if drop else "")
    # A merge reads every input; any other call reads its first argument (the rest are sizes, weights).
    if first is not None and kind is not LayerKind.OTHER:
        inputs = [first.name]
    else:
        inputs = [a.name for a in n.all_input_nodes]
    return LayerNode(n.name, path, kind, label, inputs, in_shape, drop)


def _call_dropout(fn: str, n: fx.Node) -> DropoutInfo | None:
    rate = n.args[1] if len(n.args) > 1 else n.kwargs.get("p", 0.5)
    training = n.args[2] if len(n.args) > 2 else n.kwargs.get("training", True)
    if training is False or not isinstance(rate, (int, float)):
        return None
    kind = {"dropout": "bernoulli", "alpha_dropout": "alpha", "feature_alpha_dropout": "feature_alpha"}
    return DropoutInfo(kind.get(fn.rstrip("_"), "channel"), float(rate))


def _hook_graph(model: nn.Module, dummy: Tensor, note: str) -> LayerGraph:
    calls: list[tuple[str, nn.Module, Tensor, Any]] = []  # keeps every tensor alive: ids stay unique
    handles = [
        m.register_forward_hook(_recorder(name, calls))
        for name, m in model.named_modules()
        if name and (not any(m.children()) or module_kind(m) in (LayerKind.DROPOUT, LayerKind.BN))
    ]
    with _measuring(model):
        model.eval()
        for m in model.modules():
            m.training = m.training or is_dropout(m)  # active dropout makes new tensors, not aliases
        try:
            model(dummy)
        except Exception as err:
            raise LintError(
                f"the model does not run on a dummy input of shape {tuple(dummy.shape)} "
                f"(--input-shape {','.join(map(str, dummy.shape[1:]))}): {_one_line(err)}"
            ) from None
        finally:
            for handle in handles:
                handle.remove()
    return LayerGraph(_link_calls(calls, dummy), "hooks", note, has_shapes=True)


def _recorder(name: str, calls: list[tuple[str, nn.Module, Tensor, Any]]) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        x = next((a for a in args if isinstance(a, Tensor)), None)
        if x is not None:
            calls.append((name, module, x, output))

    return hook


def _link_calls(calls: list[tuple[str, nn.Module, Tensor, Any]], dummy: Tensor) -> dict[str, LayerNode]:
    """Each call's input is the output (or a view of the output) of the latest call that made it."""
    nodes: dict[str, LayerNode] = {}
    by_id: dict[int, str] = {}
    by_storage: dict[int, str] = {}
    previous: str | None = None
    for name, module, x, output in calls:
        key = name
        while key in nodes:
            key += "'"  # a module called again (a shared ReLU)
        source = by_id.get(id(x)) or by_storage.get(_storage(x))
        if source is None and _storage(x) != _storage(dummy):
            source = previous  # made by a functional call hooks cannot see
        nodes[key] = LayerNode(
            key,
            name,
            module_kind(module),
            _module_label(module),
            [source] if source else [],
            tuple(x.shape),
            dropout_info(module),
        )
        if isinstance(output, Tensor):
            by_id[id(output)] = by_storage[_storage(output)] = key
        previous = key
    return nodes


def _storage(t: Tensor) -> int:
    return int(t.untyped_storage().data_ptr())


def _dummy(model: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(_DUMMY_BATCH, *input_shape, generator=generator, dtype=dtype)
    return x.to(_module_device(model))


def _module_label(module: nn.Module) -> str:
    drop = dropout_info(module)
    return type(module).__name__ + (f"(p={drop.rate:g})" if drop else "")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return first if len(first) <= 160 else first[:157] + "..."
