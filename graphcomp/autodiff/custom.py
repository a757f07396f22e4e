"""``custom_vjp``: a composite function whose gradient is a rule the user writes.

The function body is traced like any composite (its nodes are ordinary forward nodes); the node
it returns is remembered as a *custom call*. The adjoint pass meets that node first (it is the
last node of the body), applies the user's rule to it, and sends the results straight to the
call's inputs, so the body's own nodes never receive a cotangent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphcomp import dtypes
from graphcomp.errors import GraphError
from graphcomp.ir import Graph, Node
from graphcomp.ops import Tensor, apply, as_tensor

# A custom call is recorded in the networkx data of its output node, so it lives and dies with
# its graph.
_KEY = "custom_vjp"


@dataclass(frozen=True)
class CustomCall:
    """One call of a ``custom_vjp`` function: its inputs, its output and the user's rule."""

    name: str
    inputs: tuple[Tensor, ...]
    output: Tensor
    rule: Callable[..., Any]

    def vjp(self, g: Tensor) -> list[Tensor | None]:
        """The user's rule applied to (inputs..., out, g), checked: one gradient per input."""
        result = self.rule(*self.inputs, self.output, g)
        grads = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(grads) != len(self.inputs):
            raise GraphError(
                f"the VJP rule of custom_vjp function {self.name!r} returned {len(grads)} "
                f"gradient(s); it takes {len(self.inputs)} input(s) and must return one per input "
                "(None for no gradient)"
            )
        out: list[Tensor | None] = []
        for x, gx in zip(self.inputs, grads, strict=True):
            if gx is None or not dtypes.is_float(x.dtype):
                out.append(None)
                continue
            gx = as_tensor(gx, x.dtype, graph=x.graph)
            out.append(gx if gx.dtype == x.dtype else gx.astype(x.dtype))
        return out


def mark_custom_call(call: CustomCall) -> None:
    """Record ``call``: the adjoint pass will apply its rule at ``call.output``."""
    node = call.output.node
    node.graph.nx.nodes[node.id][_KEY] = call


def custom_calls_in(graph: Graph) -> list[CustomCall]:
    """Every custom call whose output node belongs to ``graph``."""
    return [call for _, call in graph.nx.nodes(data=_KEY) if call is not None]


def custom_rule_of(node: Node) -> CustomCall | None:
    """The custom call whose output is ``node``, if any."""
    return node.graph.nx.nodes[node.id].get(_KEY)


class custom_vjp:  # noqa: N801 - a decorator, named like JAX's
    """Decorate a function of tensors whose gradient you define yourself with ``.defvjp``.

    The rule receives ``(x1, ..., xn, out, g)`` (the call's inputs, its output and the output's
    cotangent) and returns one gradient per input (a tensor, or None). The rule is built from
    ordinary ops, so a differentiable rule gives second-order gradients too. Tensors the body
    closes over (not passed as arguments) are treated as constants.

    >>> import graphcomp as gc, numpy as np
    >>> @gc.custom_vjp
    ... def safe_norm(x):
    ...     return gc.sqrt(gc.sum(x * x))
    >>> @safe_norm.defvjp
    ... def _(x, out, g):
    ...     return g * x / gc.maximum(out, 1e-12)
    >>> with gc.Graph():
    ...     x = gc.parameter(np.zeros(3), name="x")
    ...     gx = gc.grad(safe_norm(x), x)
    >>> gc.compile([], gx)()
    array([0., 0., 0.])
    """

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.rule: Callable[..., Any] | None = None

    def defvjp(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``rule(*inputs, out, g) -> gradients`` as this function's VJP; returns it."""
        self.rule = rule
        return rule

    def __call__(self, *args: Any, **static: Any) -> Tensor:
        if self.rule is None:
            raise GraphError(
                f"custom_vjp function {self.fn.__name__!r} has no gradient rule; define one "
                f"with @{self.fn.__name__}.defvjp before calling it"
            )
        inputs = tuple(_as_input(a, args) for a in args)
        graph = inputs[0].graph if inputs else None
        last_old_id = max(graph.nx.nodes, default=-1) if graph is not None else -1
        output = self.fn(*inputs, **static)
        if not isinstance(output, Tensor):
            raise GraphError(
                f"custom_vjp function {self.fn.__name__!r} must return one Tensor, got "
                f"{type(output).__name__}"
            )
        if output.node.id <= last_old_id:
            # The body returned an existing node: give this call a node of its own to mark.
            output = apply("reshape", output, shape=output.node.shape)
        mark_custom_call(CustomCall(self.fn.__name__, inputs, output, self.rule))
        return output


def _as_input(value: Any, args: Sequence[Any]) -> Tensor:
    graph = next((a.graph for a in args if isinstance(a, Tensor)), None)
    return as_tensor(value, graph=graph)
