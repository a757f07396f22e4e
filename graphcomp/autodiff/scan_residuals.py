"""The VJP of a ``scan`` from stored residuals, with its invariants' gradients hoisted.

1. The body's adjoint is built once in a scratch graph: a replay of the body on placeholders
   and the adjoint pass over it, seeded with placeholders for the cotangents.
2. The forward values its nodes read (tanh's output, a gate, ...) are *residuals*: the forward
   scan stacks them (``residual_output``; a value that is one of the body's ``y`` reuses the
   stacked ``ys``), and the backward body reads them as streams instead of recomputing them.
3. Hoisting: an invariant's per-step gradient term ``a_tᵀ @ b_t`` (a matmul's VJP) or
   ``reduce_sum(b_t)`` (a broadcast's) is not accumulated in the loop: ``a_t`` and ``b_t`` are
   stacked (as the backward scan's ys, or streams that exist already) and contracted once after
   it. Nodes that depend only on invariants (``Wᵀ``) land in the enclosing graph, computed once.
4. The backward body copies the scratch adjoint, with streams, its carry and the invariants in
   place of the placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.autodiff.custom import CustomCall, custom_rule_of, mark_custom_call
from graphcomp.autodiff.reverse import backpropagate_many
from graphcomp.ir import Graph, Node
from graphcomp.loops import (
    ScanBody,
    output_count,
    residual_output,
    scan,
    scan_output,
)
from graphcomp.ops import Tensor, apply, as_tensor
from graphcomp.ops import functions as F

# A hoisted term: ("matmul", a, b) for a_tᵀ @ b_t, ("sum", b, axes) for reduce_sum(b_t, axes).
Hoisted = tuple


@dataclass
class _Adjoint:
    """The body's adjoint in a scratch graph, and what its placeholders stand for."""

    inputs: list[Node]  # placeholders of the body's inputs: carry, x, invariants
    forward: dict[int, Node]  # scratch node id -> the body node it replays
    seeds: dict[int, tuple[str, int]]  # seed placeholder id -> (stream or "g_carry", index)
    g_carry: list[Node]  # gradient of each float carry leaf at the step's start
    g_xs: list[Node]  # of each float xs leaf
    g_inv: list[Node]  # of each float invariant, this step's contribution
    varying: set[int] = field(default_factory=set)  # nodes that depend on the step


def residual_vjp(node: Node, cotangents: Mapping[int, Tensor]) -> list[Tensor | None]:
    """Gradients for the inputs of scan ``node`` (init, xs, invariants), given cotangents of
    some of its outputs by output index: a reverse scan reading stacked residuals."""
    body: ScanBody = node.attrs["body"]
    n_carry, n_ys = output_count(node)
    n_xs = len(body.x_in)
    floats = [i for i, n in enumerate(node.inputs) if dtypes.is_float(n.dtype)]
    float_carry = [i for i in floats if i < n_carry]
    float_xs = [i - n_carry for i in floats if n_carry <= i < n_carry + n_xs]
    float_inv = [i - n_carry - n_xs for i in floats if i >= n_carry + n_xs]
    first_res = 2 * n_carry + n_ys
    wanted = {"g_ys": [k for k in range(n_ys) if n_carry + k in cotangents],
              "g_stacks": [i for i in float_carry if n_carry + n_ys + i in cotangents],
              "g_res": [r for r in range(len(body.residuals)) if first_res + r in cotangents]}
    adj = _body_adjoint(body, float_carry, float_xs, float_inv, wanted)
    hoisted, kept = _split_invariant_terms(adj)
    if node.attrs.get("checkpoint") is not None:  # residuals are recomputed streams, read
        kept = [list(_terms(g)) for g in adj.g_inv]  # step by step: nothing is hoisted
        hoisted = [[] for _ in adj.g_inv]
    operands = [n for terms in hoisted for term in terms for n in term[1:] if isinstance(n, Node)]
    accumulated = [t for terms in kept for t in terms]
    order, residuals = _needed(adj, [*adj.g_carry, *adj.g_xs, *accumulated, *operands])
    outside = _Outside(node, cotangents, wanted, adj, residuals)
    as_xs = {n.id for n in adj.g_xs}  # stacked already, as the gradients of xs
    y_operands = list({n.id: n for n in operands
                       if outside.stacked(n.id) is None and n.id not in as_xs}.values())
    return _backward_scan(node, adj, order, outside, kept, hoisted, y_operands,
                          (float_carry, float_xs, float_inv), cotangents)


def _body_adjoint(body: ScanBody, float_carry: list[int], float_xs: list[int],
                  float_inv: list[int], wanted: dict[str, list[int]]) -> _Adjoint:
    """Replay the body in a scratch graph and run the adjoint pass over it."""
    from graphcomp.autodiff.scan import replay_values  # it imports this module

    scratch = Graph(name=f"adjoint of the scan body at {body.source}")
    n_carry, n_xs = len(body.carry_in), len(body.x_in)
    with scratch:
        inputs = [_placeholder(scratch, body, n, n.name or "input") for n in body.inputs]
        values = replay_values(scratch, body, [Tensor(n) for n in inputs])
        seeds: dict[int, tuple[str, int]] = {}
        pairs: list[tuple[Node, Tensor]] = []

        def seed(kind: str, index: int, like: Node, at: Node | None) -> Node:
            ph = _placeholder(scratch, body, like, f"{kind}{index}")
            seeds[ph.id] = (kind, index)
            if at is not None:
                pairs.append((values[at.id].node, Tensor(ph)))
            return ph

        for i in float_carry:
            seed("g_carry", i, body.carry_in[i], body.carry_out[i])
        for k in wanted["g_ys"]:
            seed("g_ys", k, body.y_out[k], body.y_out[k])
        for r in wanted["g_res"]:
            seed("g_res", r, body.residuals[r], body.residuals[r])
        g_stacks = {i: seed("g_stacks", i, body.carry_in[i], None) for i in wanted["g_stacks"]}
        targets = ([inputs[i] for i in float_carry] + [inputs[n_carry + i] for i in float_xs]
                   + [inputs[n_carry + n_xs + k] for k in float_inv])
        cot = backpropagate_many(scratch, pairs, targets)

        def grad(n: Node) -> Node:
            return cot[n.id].node if n.id in cot else F.zeros_like(Tensor(n)).node

        g_carry = [grad(inputs[i]) for i in float_carry]
        g_carry = [(Tensor(g) + Tensor(g_stacks[i])).node if i in g_stacks else g
                   for g, i in zip(g_carry, float_carry, strict=True)]
        g_xs = [grad(inputs[n_carry + i]) for i in float_xs]
        g_inv = [grad(inputs[n_carry + n_xs + k]) for k in float_inv]
    by_id = {n.id: n for n in (*body.inputs, *body.schedule, *body.residuals)}
    forward = {t.node.id: by_id[i] for i, t in values.items()}
    adj = _Adjoint(inputs, forward, seeds, g_carry, g_xs, g_inv)
    per_step = {n.id for n in inputs[:n_carry + n_xs]} | set(seeds)
    for n in scratch.schedule([*g_carry, *g_xs, *g_inv]):
        if n.id in per_step or any(i.id in adj.varying for i in n.inputs):
            adj.varying.add(n.id)
    return adj


def _placeholder(graph: Graph, body: ScanBody, like: Node, name: str) -> Node:
    shape = body.dims.resolve_shape(like.shape)
    return graph.add_node("placeholder", [], {}, shape, like.dtype, name=name, source=body.source)


def _split_invariant_terms(adj: _Adjoint) -> tuple[list[list[Hoisted]], list[list[Node]]]:
    """Per float invariant: the terms of its per-step gradient hoisted out of the loop, and
    those accumulated in the loop's carry."""
    hoisted: list[list[Hoisted]] = []
    kept: list[list[Node]] = []
    for g in adj.g_inv:
        mine: list[Hoisted] = []
        rest: list[Node] = []
        for term in _terms(g):
            form = _hoistable(term, adj.varying)
            if form is None:
                rest.append(term)
            else:
                mine.append(form)
        hoisted.append(mine)
        kept.append(rest)
    return hoisted, kept


def _terms(node: Node) -> list[Node]:
    """The addends of ``node`` (sums of same-shaped values, as fan-out accumulation makes)."""
    if node.op == "add":
        dims = node.graph.dims
        shape = dims.resolve_shape(node.shape)
        if all(dims.resolve_shape(i.shape) == shape for i in node.inputs):
            return [t for i in node.inputs for t in _terms(i)]
    return [node]


def _hoistable(term: Node, varying: set[int]) -> Hoisted | None:
    """``term``'s form when its sum over the steps is one contraction of stacked values."""
    if term.id not in varying:
        return None
    if term.op == "matmul":
        left, b = term.inputs
        if (left.op == "transpose" and tuple(left.attrs["perm"]) == (1, 0)
                and left.inputs[0].ndim == 2 and b.ndim == 2 and left.inputs[0].id in varying
                and b.id in varying):
            return ("matmul", left.inputs[0], b)
    if (term.op == "reduce_sum" and not term.attrs.get("keepdims", False)
            and term.inputs[0].id in varying):
        return ("sum", term.inputs[0], tuple(term.attrs["axes"]))
    return None


def _needed(adj: _Adjoint, targets: Sequence[Node]) -> tuple[list[Node], list[Node]]:
    """The scratch nodes the backward body computes (in order), and the forward values they
    read that depend on the step: the residuals. Placeholders are not listed."""
    order: list[Node] = []
    residuals: list[Node] = []
    seen: set[int] = set()

    def visit(n: Node) -> None:
        if n.id in seen:
            return
        seen.add(n.id)
        if n.op == "placeholder":
            return
        if n.id in adj.forward and n.id in adj.varying:
            residuals.append(n)
            return
        for i in n.inputs:
            visit(i)
        order.append(n)

    for t in targets:
        visit(t)
    return order, residuals


class _Outside:
    """The streams of the backward scan: stacked values of the enclosing graph, each made once."""

    def __init__(self, node: Node, cotangents: Mapping[int, Tensor], wanted: dict[str, list[int]],
                 adj: _Adjoint, residuals: list[Node]) -> None:
        self.node, self.adj = node, adj
        body: ScanBody = node.attrs["body"]
        n_carry, n_ys = output_count(node)
        n_xs = len(body.x_in)
        self.source: dict[int, Any] = {}  # scratch placeholder or residual id -> how to stack
        for i in range(n_carry):
            self.source[adj.inputs[i].id] = ("output", n_carry + n_ys + i)
        for i in range(n_xs):
            self.source[adj.inputs[n_carry + i].id] = ("tensor", Tensor(node.inputs[n_carry + i]))
        first = {"g_ys": n_carry, "g_stacks": n_carry + n_ys, "g_res": 2 * n_carry + n_ys}
        for ph, (kind, index) in adj.seeds.items():
            if kind != "g_carry":
                self.source[ph] = ("tensor", cotangents[first[kind] + index])
        for r in residuals:
            body_node = adj.forward[r.id]
            if (any(body_node is y for y in body.y_out)
                    and node.attrs.get("checkpoint") is None):
                k = next(k for k, y in enumerate(body.y_out) if y is body_node)
                self.source[r.id] = ("output", n_carry + k)
            else:
                self.source[r.id] = ("residual", body_node)
        self.made: dict[int, Tensor] = {}

    def stacked(self, node_id: int) -> Tensor | None:
        """The stacked per-step values of scratch node ``node_id``, or None: not a stream."""
        how = self.source.get(node_id)
        if how is None:
            return None
        if node_id not in self.made:
            kind, what = how
            with self.node.graph.role_scope("forward"):  # what the forward scan keeps
                if kind == "output":
                    self.made[node_id] = scan_output(self.node, what)
                elif kind == "residual":
                    self.made[node_id] = residual_output(self.node, what)
                else:
                    self.made[node_id] = what
        return self.made[node_id]


def _backward_scan(node: Node, adj: _Adjoint, order: list[Node], outside: _Outside,
                   kept: list[list[Node]], hoisted: list[list[Hoisted]], y_operands: list[Node],
                   floats: tuple[list[int], list[int], list[int]],
                   cotangents: Mapping[int, Tensor]) -> list[Tensor | None]:
    """Build the reverse scan over the copied adjoint, then the hoisted contractions."""
    body: ScanBody = node.attrs["body"]
    float_carry, float_xs, float_inv = floats
    n_carry, n_xs = len(body.carry_in), len(body.x_in)
    read = {i.id for n in order for i in n.inputs}
    accumulated = [t for terms in kept for t in terms]
    read |= {n.id for n in (*adj.g_carry, *adj.g_xs, *accumulated, *y_operands)}
    ids = [i for i in outside.source if i in read]  # the streams the body reads
    streams = [outside.stacked(i) for i in ids]
    invariants = node.inputs[n_carry + n_xs:]
    g_seed = {ph: index for ph, (kind, index) in adj.seeds.items() if kind == "g_carry"}
    g_last = [cotangents[i] if i in cotangents else F.zeros_like(Tensor(node.inputs[i]))
              for i in float_carry]
    accumulating = [k for k, terms in enumerate(kept) if terms]
    g_acc = [F.zeros_like(Tensor(invariants[float_inv[k]])) for k in accumulating]

    def step(carry: Any, x: Any) -> tuple[Any, Any]:
        env: dict[int, Tensor] = dict(zip(ids, x, strict=True))
        for k, inv in enumerate(invariants):
            env[adj.inputs[n_carry + n_xs + k].id] = Tensor(inv)
        for ph, index in g_seed.items():
            env[ph] = carry[0][float_carry.index(index)]
        for n in order:
            env[n.id] = _copy(n, [env[i.id] for i in n.inputs], env)
        acc = [a + _sum([env[t.id] for t in kept[k]]) for a, k in zip(carry[1], accumulating,
                                                                        strict=True)]
        ys = [env[n.id] for n in (*adj.g_xs, *y_operands)]
        return ([env[n.id] for n in adj.g_carry], acc), ys

    trip = node.graph.dims.resolve(node.shape[0])
    (g_init, g_acc), ys = scan(step, (g_last, g_acc), streams, length=trip,  # type: ignore[arg-type]
                               reverse=not node.attrs["reverse"])
    stacked = {n.id: y for n, y in zip([*adj.g_xs, *y_operands], ys, strict=True)}
    result: list[Tensor | None] = [None] * len(node.inputs)
    for i, g in zip(float_carry, g_init, strict=True):
        result[i] = g
    for i, g in zip(float_xs, ys[:len(adj.g_xs)], strict=True):
        result[n_carry + i] = g
    sums = dict(zip(accumulating, g_acc, strict=True))
    for k, index in enumerate(float_inv):
        parts = [_contract(form, outside, stacked) for form in hoisted[k]]
        parts += [sums[k]] if k in sums else []
        result[n_carry + n_xs + index] = _sum(parts)
    return result


def _sum(parts: Sequence[Tensor]) -> Tensor:
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def _contract(form: Hoisted, outside: _Outside, stacked: dict[int, Tensor]) -> Tensor:
    """A hoisted term summed over every step, from the stacked operands."""
    def stack(n: Node) -> Tensor:
        s = outside.stacked(n.id)
        return s if s is not None else stacked[n.id]

    if form[0] == "matmul":
        a, b = stack(form[1]), stack(form[2])
        a2 = F.reshape(a, (-1, a.shape[-1]))
        b2 = F.reshape(b, (-1, b.shape[-1]))
        return F.matmul(apply("transpose", a2, perm=(1, 0)), b2)
    b = stack(form[1])
    return apply("reduce_sum", b, axes=(0, *[a + 1 for a in form[2]]), keepdims=False)


def _copy(node: Node, args: list[Tensor], env: dict[int, Tensor]) -> Tensor:
    """``node`` of the scratch adjoint, built on ``args`` (in the body, or outside it when
    every argument is outside)."""
    if node.op == "constant":
        out = as_tensor(np.asarray(node.attrs["value"]), node.dtype)
    else:
        out = apply(node.op, *args, name=node.name, **dict(node.attrs))
    custom = custom_rule_of(node)
    if custom is not None and all(x.node.id in env for x in custom.inputs):
        mark_custom_call(CustomCall(custom.name, tuple(env[x.node.id] for x in custom.inputs),
                                    out, custom.rule))
    return out
