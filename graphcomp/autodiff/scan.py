"""The VJP of ``scan``: a reverse scan over the body's own adjoint.

Residuals: the forward scan stacks the carry each step started from (``scan_output`` nodes past
its carry and ys); ``xs`` are stacked already and invariants are read as they are, outside the
loop. Each backward step replays the body on its step's carry and ``x`` (recomputing the step's
intermediates instead of storing them) and runs the adjoint pass over that replay, seeded with
the carry's cotangent and the step's ``y`` cotangent. Its carry holds the carry's cotangent and
the invariants' gradients, accumulated over the steps; its ys are the gradients of ``xs``.
Every node is an ordinary node, so the backward scan can be differentiated again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.autodiff.custom import CustomCall, custom_rule_of, mark_custom_call
from graphcomp.autodiff.reverse import backpropagate_many
from graphcomp.ir import Graph, Node, current_graph
from graphcomp.loops import (
    SCAN,
    SCAN_OUTPUT,
    ScanBody,
    make_scan_node,
    output_count,
    scan,
    scan_output,
)
from graphcomp.loops.scan import trip_count
from graphcomp.ops import Tensor, apply, as_tensor
from graphcomp.ops import functions as F


def scan_vjp(node: Node, cotangents: Mapping[int, Tensor]) -> list[Tensor | None]:
    """Gradients for the inputs of scan ``node`` (init, xs, invariants), given the cotangents
    of some of its outputs by output index."""
    body: ScanBody = node.attrs["body"]
    if any(n.op == SCAN for n in body.schedule):
        return _replay_vjp(node, cotangents)
    from graphcomp.autodiff.scan_residuals import residual_vjp  # it builds on this module

    return residual_vjp(node, cotangents)


def _replay_vjp(node: Node, cotangents: Mapping[int, Tensor]) -> list[Tensor | None]:
    """The VJP of a body holding a scan: each backward step replays the body."""
    body: ScanBody = node.attrs["body"]
    graph = node.graph
    n_carry, n_ys = output_count(node)
    n_xs = len(body.x_in)
    init, xs, invariants = (node.inputs[:n_carry], node.inputs[n_carry:n_carry + n_xs],
                            node.inputs[n_carry + n_xs:])
    float_carry = [i for i, n in enumerate(init) if dtypes.is_float(n.dtype)]
    float_xs = [i for i, n in enumerate(xs) if dtypes.is_float(n.dtype)]
    float_inv = [i for i, n in enumerate(invariants) if dtypes.is_float(n.dtype)]
    seeded_ys = [k for k in range(n_ys) if n_carry + k in cotangents]
    seeded_stacks = [i for i in float_carry if n_carry + n_ys + i in cotangents]
    with graph.role_scope("forward"):  # what the forward scan keeps for this gradient
        stacked_carries = [scan_output(node, n_carry + n_ys + i) for i in range(n_carry)]
    streams = {
        "carry": stacked_carries,
        "xs": [Tensor(x) for x in xs],
        "g_ys": [cotangents[n_carry + k] for k in seeded_ys],
        "g_stacks": [cotangents[n_carry + n_ys + i] for i in seeded_stacks],
    }
    g_last = [cotangents[i] if i in cotangents else F.zeros_like(Tensor(init[i]))
              for i in float_carry]
    g_inv = [F.zeros_like(Tensor(invariants[k])) for k in float_inv]

    def step(carry: Any, x: Any) -> tuple[Any, Any]:
        here = current_graph()
        local_inv = [Tensor(here.adopt(n, SCAN, node.source)) for n in invariants]
        inputs = list(x["carry"]) + list(x["xs"]) + local_inv
        outputs = replay(here, body, inputs)
        seeds = ([(outputs[i].node, g) for i, g in zip(float_carry, carry[0], strict=True)]
                 + [(outputs[n_carry + k].node, g)
                    for k, g in zip(seeded_ys, x["g_ys"], strict=True)])
        wanted = ([inputs[i] for i in float_carry] + [inputs[n_carry + i] for i in float_xs]
                  + [local_inv[k] for k in float_inv])
        cot = backpropagate_many(here, seeds, [t.node for t in wanted])
        grads = dict(zip(seeded_stacks, x["g_stacks"], strict=True))
        g_carry = [_plus(_grad(cot, inputs[i]), grads.get(i)) for i in float_carry]
        g_inv = [acc + _grad(cot, local_inv[k]) for acc, k in zip(carry[1], float_inv,
                                                                  strict=True)]
        return (g_carry, g_inv), [_grad(cot, inputs[n_carry + i]) for i in float_xs]

    trip = graph.dims.resolve(node.shape[0])
    (g_init, g_inv), g_xs = scan(step, (g_last, g_inv), streams, length=trip,  # type: ignore[arg-type]
                                 reverse=not node.attrs["reverse"])
    result: list[Tensor | None] = [None] * len(node.inputs)
    for i, g in zip(float_carry, g_init, strict=True):
        result[i] = g
    for i, g in zip(float_xs, g_xs, strict=True):
        result[n_carry + i] = g
    for k, g in zip(float_inv, g_inv, strict=True):
        result[n_carry + n_xs + k] = g
    return result


def _grad(cotangent: Mapping[int, Tensor], t: Tensor) -> Tensor:
    return cotangent[t.node.id] if t.node.id in cotangent else F.zeros_like(t)


def _plus(a: Tensor, b: Tensor | None) -> Tensor:
    return a if b is None else a + b


def replay(graph: Graph, body: ScanBody, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Copy the body's computation into ``graph`` on ``inputs`` (one per body placeholder);
    return its outputs (carry leaves, then y leaves)."""
    value = replay_values(graph, body, inputs)
    return [value[n.id] for n in body.outputs]


def replay_values(graph: Graph, body: ScanBody, inputs: Sequence[Tensor]) -> dict[int, Tensor]:
    """Copy the body's computation into ``graph`` on ``inputs`` (one per body placeholder);
    return the copy of each body node (its schedule and residuals), by body node id."""
    value: dict[int, Tensor] = {n.id: t for n, t in zip(body.inputs, inputs, strict=True)}
    for node in body.schedule:
        if node.id not in value:
            value[node.id] = replay_node(graph, body, node, value)
    return value


def replay_node(graph: Graph, body: ScanBody, node: Node, value: Mapping[int, Tensor]) -> Tensor:
    """Copy body node ``node`` into ``graph``, its inputs read from ``value`` (by body id)."""
    args = [value[i.id] for i in node.inputs]
    if node.op == "constant":
        out = as_tensor(np.asarray(node.attrs["value"]), node.dtype, graph=graph)
    elif node.op == SCAN:
        out = _replay_scan(graph, body, node, args)
    elif node.op == SCAN_OUTPUT:
        out = scan_output(args[0].node, node.attrs["index"])
    else:
        out = apply(node.op, *args, name=node.name, **dict(node.attrs))
    custom = custom_rule_of(node)
    if custom is not None:  # keep the user's gradient rule of a custom_vjp call
        mark_custom_call(CustomCall(custom.name, tuple(value[x.node.id] for x in
                                                       custom.inputs), out, custom.rule))
    return out


def _replay_scan(graph: Graph, body: ScanBody, node: Node, args: Sequence[Tensor]) -> Tensor:
    inner: ScanBody = node.attrs["body"]
    n_carry, n_xs = len(inner.carry_in), len(inner.x_in)
    xs = [t.node for t in args[n_carry:n_carry + n_xs]]
    length = None if xs else body.dims.resolve(node.shape[0])
    trip = trip_count(graph, xs, length, node.source)
    return Tensor(make_scan_node(graph, inner, [t.node for t in args], trip,
                                 node.attrs["reverse"], node.source,
                                 node.attrs.get("checkpoint")))
