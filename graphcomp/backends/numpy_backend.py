"""The numpy reference backend: the oracle every other backend is tested against.

It walks the program's schedule and calls each op's numpy implementation. No fusion, no
cleverness: clear enough to trust.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp.errors import InputError
from graphcomp.loops import SCAN, SCAN_OUTPUT, ScanBody, is_residual
from graphcomp.loops.checkpoint import Checkpoints, RecomputedStack, materialize, segment_count
from graphcomp.ops import get_op
from graphcomp.ops.indexing import INDEX_OPERAND, index_error_message
from graphcomp.runtime.binding import check_inputs, resolve_shape
from graphcomp.runtime.program import Program


@dataclass
class NumpyExecutable:
    """Interprets a program with numpy."""

    program: Program
    source: str | None = None
    compile_seconds: float = 0.0
    cache_hit: bool = False
    # every node's concrete shape, per binding of the symbols (a training loop has one or two)
    _shapes: dict[tuple, dict[int, tuple[int, ...]]] = field(default_factory=dict, repr=False)
    _plan: list = field(default_factory=list, repr=False)

    def run(
        self, inputs: Sequence[np.ndarray], binding: dict[str, int]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        key = tuple(sorted(binding.items()))
        shapes = self._shapes.get(key)
        if shapes is None:
            if len(self._shapes) >= 64:
                self._shapes.clear()
            shapes = self._shapes[key] = node_shapes(self.program, binding)
        if not self._plan:
            self._plan = make_plan(self.program)
        values = evaluate(self.program, inputs, binding, shapes, self._plan)
        outputs = [values[n.id] for n in self.program.outputs]
        updates = [values[v.id] for _, v in self.program.updates]
        return outputs, updates


def node_shapes(program: Program, binding: dict[str, int]) -> dict[int, tuple[int, ...]]:
    """The concrete shape of every computed node of ``program`` under ``binding``."""
    return {node.id: resolve_shape(node, binding, program.dims) for node in program.schedule
            if node.op not in ("parameter", "constant", "placeholder")}


def evaluate(
    program: Program, inputs: Sequence[np.ndarray], binding: dict[str, int],
    shapes: Mapping[int, tuple[int, ...]] | None = None, plan: Plan | None = None,
) -> dict[int, np.ndarray]:
    """Value of every scheduled node, by node id (``shapes``: ``node_shapes`` of the
    binding, and ``plan``: ``make_plan`` of the program, when the caller keeps them)."""
    values: dict[int, np.ndarray] = {n.id: a for n, a in zip(program.inputs, inputs, strict=True)}
    storage = program.graph.parameter_values
    with np.errstate(all="ignore"):
        for node, impl, input_ids in plan if plan is not None else make_plan(program):
            if node.id in values:
                continue
            if node.op == "parameter":
                values[node.id] = storage[node.id]
            elif node.op == "constant":
                values[node.id] = node.attrs["value"]
            else:
                shape = (shapes[node.id] if shapes is not None
                         else resolve_shape(node, binding, program.dims))
                args = [values[i] for i in input_ids]
                if node.op == SCAN:  # its value is the tuple of its outputs
                    values[node.id] = impl(args, dict(node.attrs), shape)
                    continue
                if node.op != SCAN_OUTPUT:  # a recomputed stack, read whole (grad of grad)
                    args = [materialize(a) for a in args]
                try:
                    result = impl(args, dict(node.attrs), shape)
                except InputError as exc:  # bad data: say which node (and placeholder) met it
                    message = (index_error_message(node, str(exc)) if node.op in INDEX_OPERAND
                               else f"{node.describe()}: {exc}")
                    raise InputError(message) from None
                result = np.asarray(result, dtype=node.dtype)
                if result.shape != shape:
                    raise AssertionError(
                        f"numpy backend: {node.describe()} produced shape {result.shape}, "
                        f"its shape rule says {shape}"
                    )
                values[node.id] = result
    return values


Plan = list[tuple[Any, Any, tuple[int, ...]]]


def make_plan(program: Program) -> Plan:
    """(node, numpy implementation, input ids) of each scheduled node, looked up once."""
    # A scan stacks its carries and residuals only when a gradient reads them.
    stacking: dict[int, set[int]] = {}
    for n in program.schedule:
        if is_residual(n):
            stacking.setdefault(n.inputs[0].id, set()).add(n.attrs["index"])
    plan: Plan = []
    for node in program.schedule:
        impl: Any = None
        if node.op == SCAN:
            impl = functools.partial(run_scan, stacked=frozenset(stacking.get(node.id, ())))
        elif node.op == SCAN_OUTPUT:
            impl = _pick_output
        elif node.op not in ("parameter", "constant", "placeholder"):
            impl = get_op(node.op).numpy_impl
        plan.append((node, impl, tuple(i.id for i in node.inputs)))
    return plan


def _pick_output(arrays: Sequence[Any], attrs: dict[str, Any], shape: tuple) -> np.ndarray:
    return arrays[0][attrs["index"]]


def run_scan(arrays: Sequence[np.ndarray], attrs: dict[str, Any], shape: tuple[int, ...],
             stacked: frozenset[int] = frozenset()) -> tuple[np.ndarray, ...]:
    """A scan node's outputs: final carry leaves, stacked ys, then the stacked carries (the
    carry each step started from) and the stacked residuals; of those last two, only the
    outputs in ``stacked`` are filled, the others are empty. ``shape`` is ``(T,)``."""
    body: ScanBody = attrs["body"]
    trip = shape[0]
    n_carry, n_xs, n_ys = len(body.carry_in), len(body.x_in), len(body.y_out)
    carry = list(arrays[:n_carry])
    xs = arrays[n_carry:n_carry + n_xs]
    invariants = list(arrays[n_carry + n_xs:])
    residuals = list(body.residuals)
    schedule = body.schedule
    if not {n.id for n in residuals} <= {n.id for n in schedule}:
        schedule = tuple(body.graph.schedule([*body.outputs, *residuals]))
    program = Program(body.graph, list(body.inputs), list(body.outputs), [],
                      list(schedule), body.dims)
    one_step = [x[0] if trip and isinstance(x, np.ndarray) else np.empty(x.shape[1:], x.dtype)
                for x in xs]
    _, binding = check_inputs(body.inputs, carry + one_step + invariants, body.dims)
    shapes, plan = node_shapes(program, binding), make_plan(program)
    if attrs.get("checkpoint") is not None:
        return _run_checkpointed(program, carry, xs, invariants, trip, attrs, binding,
                                 (shapes, plan), stacked)
    ys = [np.empty((trip, *resolve_shape(y, binding, body.dims)), y.dtype) for y in body.y_out]
    first = n_carry + n_ys  # output index of the first stacked carry
    leaves = [*body.carry_in, *residuals]
    stacks = [np.empty((trip if first + i in stacked else 0,
                        *resolve_shape(leaf, binding, body.dims)), leaf.dtype)
              for i, leaf in enumerate(leaves)]
    carry_stacks = [(stacks[i], i) for i in range(n_carry) if first + i in stacked]
    residual_stacks = [(stacks[n_carry + r], node.id) for r, node in enumerate(residuals)
                       if first + n_carry + r in stacked]
    for t in range(trip - 1, -1, -1) if attrs["reverse"] else range(trip):
        for stack, i in carry_stacks:
            stack[t] = carry[i]
        values = evaluate(program, carry + [x[t] for x in xs] + invariants, binding, shapes, plan)
        carry = [values[n.id] for n in body.carry_out]
        for y, node in zip(ys, body.y_out, strict=True):
            y[t] = values[node.id]
        for stack, node_id in residual_stacks:
            stack[t] = values[node_id]
    return tuple(carry + ys + stacks)


def _run_checkpointed(program: Program, carry: list[np.ndarray], xs: Sequence[Any],
                      invariants: list[np.ndarray], trip: int, attrs: dict[str, Any],
                      binding: dict[str, int], prepared: tuple, stacked: frozenset[int]
                      ) -> tuple[Any, ...]:
    """``run_scan`` of a checkpointed scan: the carry kept every ``k`` steps; the stacked
    outputs in ``stacked`` are ``RecomputedStack`` (loops/checkpoint.py)."""
    body: ScanBody = attrs["body"]
    k, reverse = attrs["checkpoint"], attrs["reverse"]
    shapes, plan = prepared
    n_carry = len(body.carry_in)
    first = n_carry + len(body.y_out)
    leaves = [*body.carry_in, *body.residuals]
    read = [i for i in range(len(leaves)) if first + i in stacked]
    values_read = [leaves[i] for i in read if i >= n_carry]

    def step(c: list[np.ndarray], x: list[np.ndarray], v: list[np.ndarray]) -> tuple:
        values = evaluate(program, c + x + v, binding, shapes, plan)
        return ([values[n.id] for n in body.carry_out],
                [values[n.id] for n in (*body.y_out, *values_read)])

    keep = segment_count(trip, k) if read else 0
    carries = [np.empty((keep, *c.shape), c.dtype) for c in carry]
    ys = [np.empty((trip, *resolve_shape(y, binding, body.dims)), y.dtype) for y in body.y_out]
    for i in range(trip):
        t = trip - 1 - i if reverse else i
        if keep and i % k == 0:
            for stack, c in zip(carries, carry, strict=True):
                stack[i // k] = c
        carry, outs = step(carry, [x[t] for x in xs], invariants)
        for y, value in zip(ys, outs, strict=False):  # outs: the ys, then values_read
            y[t] = value
    n_ys = len(ys)
    kinds = [("carry", i) if i < n_carry else ("value", n_ys + values_read.index(leaves[i]))
             for i in read]
    described = [(kind, index, resolve_shape(leaves[i], binding, body.dims), leaves[i].dtype)
                 for (kind, index), i in zip(kinds, read, strict=True)]
    checkpoints = Checkpoints(step, carries, xs, invariants, trip, k, reverse, described)
    outputs: list[Any] = [np.empty((0,), leaf.dtype) for leaf in leaves]
    for which, i in enumerate(read):
        outputs[i] = RecomputedStack(checkpoints, which)
    return tuple(carry + ys + outputs)


def compile_numpy(program: Program, **options: object) -> NumpyExecutable:
    """The numpy backend needs no compilation: it interprets ``program``."""
    return NumpyExecutable(program)
