"""Batching a scan body's carry-free work: computed once over the stacked ``xs``, before the loop.

A body node that depends on the step's ``x`` but not on the carry (``x_t @ Wx``, ``tanh(x_t)
+ b``) gives the same value whether it is computed in the loop or for every step at once. The
body nodes that can be batched (*carry-free*: elementwise ops whose step-varying operands have
the output's rank, reshapes, and ``a_t @ W`` with a step-varying 1-d or 2-d ``a_t`` and an
invariant 2-d ``W``) are built in the enclosing graph on the stacked ``xs``, a product
``[T*B, D] @ [D, H]`` reshaped to ``[T, B, H]`` or one elementwise op over ``[T, ...]``, and the
body is traced again with those values as extra ``xs``; the ``xs`` only they read leave the
body. Their gradient is then the ordinary gradient of those enclosing nodes: one product for
``Wx``, one for ``xs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphcomp.autodiff.custom import custom_rule_of
from graphcomp.ir import Graph, Node
from graphcomp.ops import Tensor, apply, as_tensor
from graphcomp.ops import functions as F
from graphcomp.ops.registry import REGISTRY

Step = Callable[[Any, Any], tuple[Any, Any]]


def batch_carry_free(body: Any, graph: Graph, xs: Sequence[Node]) -> tuple[list[Node], Step] | None:
    """The ``xs`` and step function of a body with its carry-free nodes moved out of the loop,
    or ``None`` when there are none. ``body`` is the traced ``ScanBody``; ``xs`` its stacked
    inputs in ``graph``."""
    free = _carry_free(body)
    if not free:
        return None
    inside = _loop_part(body, free)
    frontier = _frontier(body, free, inside)
    outer = {p.id: graph.node(i) for i, p in body.graph.captures.items()}
    x_index = {n.id: i for i, n in enumerate(body.x_in)}
    stacked: dict[int, Tensor] = {}
    batched = [_batched(n, body, graph, xs, outer, x_index, free, stacked) for n in frontier]
    kept = [n for n in body.x_in if any(n in m.inputs for m in inside)
            or n in body.outputs]
    new_xs = [xs[x_index[n.id]] for n in kept] + [t.node for t in batched]
    step = _step(body, kept, frontier, inside, outer)
    return new_xs, step


def _carry_free(body: Any) -> set[int]:
    """Ids of the body nodes that depend on ``x`` and can be computed for all steps at once."""
    if any(n.op in ("scan", "scan_output") for n in body.schedule):
        return set()  # a nested scan's body lies in this body's graph: it cannot be re-traced
    step_x = {n.id for n in body.x_in}
    blocked = {n.id for n in body.carry_in}  # depends on the carry, or must stay in the loop
    free: set[int] = set()
    for node in body.schedule:
        if node.op == "placeholder":
            continue
        ids = [i.id for i in node.inputs]
        if any(i in blocked for i in ids) or node.op not in REGISTRY or (
                REGISTRY[node.op].kind == "random"):
            blocked.add(node.id)
        elif any(i in step_x or i in free for i in ids):
            if _batchable(node, step_x | free):
                free.add(node.id)
            else:
                blocked.add(node.id)
    return free


def _batchable(node: Node, varying: set[int]) -> bool:
    if custom_rule_of(node) is not None:
        return False
    moving = [i.id in varying for i in node.inputs]
    if node.op == "matmul":
        a, w = node.inputs
        return moving == [True, False] and a.ndim in (1, 2) and w.ndim == 2
    if node.op == "reshape":  # of one step's value: a reshape of every step's
        return True
    if REGISTRY[node.op].kind != "elementwise":
        return False
    return all(i.ndim == node.ndim if m else i.ndim <= node.ndim
               for i, m in zip(node.inputs, moving, strict=True))


def _loop_part(body: Any, free: set[int]) -> list[Node]:
    """The body nodes the loop still computes: those the outputs read, short of ``free``."""
    needed: set[int] = set()
    todo = [n for n in body.outputs if n.id not in free]
    while todo:
        node = todo.pop()
        if node.id not in needed:
            needed.add(node.id)
            todo.extend(i for i in node.inputs if i.id not in free)
    return [n for n in body.schedule if n.id in needed]


def _frontier(body: Any, free: set[int], inside: Sequence[Node]) -> list[Node]:
    """The carry-free nodes that the loop still reads (ops left in it, or the body's outputs)."""
    read = {i.id for n in inside for i in n.inputs} | {n.id for n in body.outputs}
    return [n for n in body.schedule if n.id in free and n.id in read]


def _batched(node: Node, body: Any, graph: Graph, xs: Sequence[Node], outer: dict[int, Node],
             x_index: dict[int, int], free: set[int], done: dict[int, Tensor]) -> Tensor:
    """``node``'s values for every step, stacked, built in the enclosing ``graph``."""
    if node.id in done:
        return done[node.id]
    if node.id in x_index:
        out = Tensor(xs[x_index[node.id]])
    elif node.id in free:
        args = [_batched(i, body, graph, xs, outer, x_index, free, done) for i in node.inputs]
        out = _batched_op(node, args, body.dims.resolve_shape(node.shape))
    elif node.op == "placeholder":
        out = Tensor(outer[node.id])
    elif node.op == "constant":
        out = as_tensor(np.asarray(node.attrs["value"]), node.dtype, graph=graph)
    else:  # an op on invariants and constants only: once, in the enclosing graph
        args = [_batched(i, body, graph, xs, outer, x_index, free, done) for i in node.inputs]
        out = apply(node.op, *args, name=node.name, **dict(node.attrs))
    done[node.id] = out
    return out


def _batched_op(node: Node, args: Sequence[Tensor], shape: Sequence[Any]) -> Tensor:
    if node.op == "reshape":
        return F.reshape(args[0], (args[0].shape[0], *shape))
    if node.op != "matmul" or args[0].ndim == 2:  # elementwise, or (T, D) @ (D, H)
        return apply(node.op, *args, name=node.name, **dict(node.attrs))
    a, w = args  # (T, B, D) @ (D, H): one (T*B, D) @ (D, H) product
    flat = F.reshape(a, (-1, a.shape[-1]))
    product = apply("matmul", flat, w, name=node.name)
    return F.reshape(product, (*a.shape[:-1], w.shape[-1]))


def _step(body: Any, kept: Sequence[Node], frontier: Sequence[Node], inside: Sequence[Node],
          outer: dict[int, Node]) -> Step:
    """A step function that replays the body's loop part on the carry and the new ``xs``."""
    from graphcomp.autodiff.scan import replay_node  # autodiff imports the loops package
    from graphcomp.ir import current_graph
    from graphcomp.loops.tree import flatten, unflatten

    def step(carry: Any, x: list[Tensor]) -> tuple[Any, Any]:
        value: dict[int, Tensor] = {n.id: t for n, t in zip(body.carry_in, flatten(carry)[0],
                                                            strict=True)}
        value.update({n.id: t for n, t in zip([*kept, *frontier], x, strict=True)})
        value.update({i: Tensor(n) for i, n in outer.items()})
        here = current_graph()
        for node in inside:
            if node.id not in value and node.op != "placeholder":
                value[node.id] = replay_node(here, body, node, value)
        return (unflatten(body.carry_tree, [value[n.id] for n in body.carry_out]),
                unflatten(body.y_tree, [value[n.id] for n in body.y_out]))

    return step
