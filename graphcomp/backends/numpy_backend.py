"""The numpy reference backend: the oracle every other backend is tested against.

It walks the program's schedule and calls each op's numpy implementation. No fusion, no
cleverness: clear enough to trust. ``NumpyExecutable.run`` walks a list of steps made once per
binding of the symbols (``Steps``): each computed node's implementation, input ids, attributes
and shape looked up beforehand, and the intermediates dropped after their last reader, so a
step holds about what numpy written by hand holds (ewise: 294 MB resident against 667 MB when
every value lived to the end; docs/performance.md, "The numpy backend's step list"). It calls
the same implementations on the same arrays as ``evaluate``, so its results are identical.
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
from graphcomp.ops.elementwise import UFUNCS
from graphcomp.ops.indexing import INDEX_OPERAND, index_error_message
from graphcomp.ops.sparse_updates import IN_PLACE_IMPLS
from graphcomp.runtime.binding import check_inputs, resolve_shape
from graphcomp.runtime.program import Program


@dataclass
class NumpyExecutable:
    """Interprets a program with numpy."""

    program: Program
    source: str | None = None
    compile_seconds: float = 0.0
    cache_hit: bool = False
    # the steps per binding of the symbols (a training loop has one or two)
    _steps: dict[tuple, Steps] = field(default_factory=dict, repr=False)
    _plan: list = field(default_factory=list, repr=False)

    def run(
        self, inputs: Sequence[np.ndarray], binding: dict[str, int]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        key = tuple(sorted(binding.items()))
        steps = self._steps.get(key)
        if steps is None:
            if len(self._steps) >= 64:
                self._steps.clear()
            if not self._plan:
                self._plan = make_plan(self.program)
            steps = self._steps[key] = Steps(self.program, self._plan,
                                             node_shapes(self.program, binding))
        return steps.run(inputs)


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

# ops whose implementation may raise for the call's data or shapes (bad ids, an empty max)
RAISING = frozenset({*INDEX_OPERAND, *IN_PLACE_IMPLS, SCAN, "permute", "reduce_max", "argmax"})
# An elementwise result of at least this many elements goes into the buffer of an input read
# for the last time where it can (``Steps._reused_buffers``): ewise's first interpreted step
# took 6,000-6,600 minor page faults against 7,700-9,700 (2026-12-07, docs/performance.md).
REUSE_MIN_SIZE = 1 << 16


class Steps:
    """``evaluate`` of one program under one binding, prepared: a step per computed node
    (id, implementation, input ids, attributes, shape, the ids read for the last time). The
    first run checks each result's shape against its rule, as ``evaluate`` does every time."""

    def __init__(self, program: Program, plan: Plan, shapes: Mapping[int, tuple[int, ...]]
                 ) -> None:
        self.program = program
        self.inputs = [n.id for n in program.inputs]
        self.parameters = [n.id for n, _, _ in plan if n.op == "parameter"]
        self.constants = [(n.id, n.attrs["value"]) for n, _, _ in plan if n.op == "constant"]
        self.outputs = [n.id for n in program.outputs]
        self.updates = [v.id for _, v in program.updates]
        kept = {*self.outputs, *self.updates}
        computed = [(node, impl, ids) for node, impl, ids in plan
                    if node.op not in ("parameter", "constant", "placeholder")]
        last_read: dict[int, int] = {}
        for k, (_, _, ids) in enumerate(computed):
            for i in ids:
                last_read[i] = k
        drops: list[list[int]] = [[] for _ in computed]
        for i, k in last_read.items():
            if i not in kept:
                drops[k].append(i)
        self.nodes = [node for node, _, _ in computed]
        self.shapes = shapes
        self.steps = [(node.id, impl, ids, dict(node.attrs), shapes[node.id], node.dtype,
                       node.op == SCAN, tuple(drop))
                      for (node, impl, ids), drop in zip(computed, drops, strict=True)]
        # the steps that may read a checkpointed scan's recomputed stack, read whole
        self.materialized = frozenset(
            k for k, node in enumerate(self.nodes) if node.op not in (SCAN, SCAN_OUTPUT)
            and any(i.op == SCAN_OUTPUT for i in node.inputs))
        self.later_ids: dict[int, list[tuple[int, int]]] = {}
        self.in_place = self._in_place_candidates()
        self.reuse = self._reused_buffers()
        self.checked = False

    def _reused_buffers(self) -> dict[int, tuple[np.ufunc, int]]:
        """{step index: (its ufunc, the input id whose buffer it writes into)}: elementwise
        steps of ``REUSE_MIN_SIZE`` elements or more with an input of the same shape and
        dtype that dies there, made by a ufunc step and read only by ufunc steps (so no view
        of it exists), where the ufunc's own result dtype is the node's (no cast)."""
        made_by_ufunc = {node.id for node in self.nodes if node.op in UFUNCS}
        readers_ok: dict[int, bool] = {}
        for node in self.nodes:
            for i in node.inputs:
                readers_ok[i.id] = readers_ok.get(i.id, True) and node.op in UFUNCS
        reuse = {}
        for k, (node, step) in enumerate(zip(self.nodes, self.steps, strict=True)):
            shape, drop = step[4], step[7]
            if (node.op not in UFUNCS or k in self.materialized
                    or int(np.prod(shape)) < REUSE_MIN_SIZE):
                continue
            fn = UFUNCS[node.op]
            try:
                natural = fn.resolve_dtypes((*(i.dtype for i in node.inputs), None))[-1]
            except (TypeError, ValueError):  # no loop for those dtypes: impl decides
                continue
            if natural != node.dtype:
                continue
            for i in node.inputs:
                if (i.id in drop and i.id in made_by_ufunc and readers_ok[i.id]
                        and i.dtype == node.dtype and self.shapes[i.id] == shape):
                    reuse[k] = (fn, i.id)
                    break
        return reuse

    def _check(self, k: int, result: np.ndarray, shape: tuple[int, ...],
               values: dict[int, Any], fresh: set[int]) -> None:
        """The first run's checks of step ``k``'s result: its shape against the shape rule,
        and whether it is a view of a parameter that may be updated in place."""
        if result.shape != shape:
            raise AssertionError(f"numpy backend: {self.nodes[k].describe()} produced shape "
                                 f"{result.shape}, its shape rule says {shape}")
        if k not in self.in_place:
            for param in [p for p in fresh if p in self.steps[k][2]]:
                if np.may_share_memory(result, values[param]):
                    fresh.discard(param)

    def _in_place_candidates(self) -> dict[int, int]:
        """{step index: parameter id} of the sparse updates that may write into their own
        parameter: the parameter is no output, and every other node that reads it comes
        before the update (the first run also checks that none of their results is a view
        of it)."""
        position = {node.id: k for k, node in enumerate(self.nodes)}
        readers: dict[int, list[int]] = {}
        for step, (_, _, ids, *_rest) in enumerate(self.steps):
            for i in ids:
                readers.setdefault(i, []).append(step)
        candidates = {}
        for param, value in self.program.updates:
            k = position.get(value.id, -1)
            if (k < 0 or value.op not in IN_PLACE_IMPLS or value.inputs[0].id != param.id
                    or param.id in self.outputs):
                continue
            if (all(r < k for r in readers[param.id] if r != k)
                    and readers[param.id].count(k) == 1):
                later = self._later_ids(k)
                if later is not None:
                    candidates[k] = param.id
                    self.later_ids[k] = later
        return candidates

    def _later_ids(self, k: int) -> list[tuple[int, int]] | None:
        """The (ids node, rows) of the sparse updates after step ``k``, which may refuse the
        call's ids after ``k`` wrote (a call that fails leaves the parameters as they were);
        None when a later step may refuse data otherwise. ``run`` writes in place only when
        earlier steps accepted those ids for as many rows."""
        pairs = []
        for j in range(k + 1, len(self.nodes)):
            later = self.nodes[j]
            if later.op in IN_PLACE_IMPLS:
                pairs.append((later.inputs[1].id, self.steps[j][4][0]))
            elif later.op in RAISING:
                return None
        return pairs

    def _in_place_now(self, k: int, fresh: set[int], accepted: set[tuple[int, int]]) -> bool:
        """In the first run, at step ``k``: whether it may write into its parameter (its
        earlier readers, all run, gave no view of it, and the later sparse updates' ids were
        accepted already, or are its own)."""
        if self.in_place.get(k) not in fresh:
            return False
        own = (self.nodes[k].inputs[1].id, self.steps[k][4][0])
        return all(pair in accepted or pair == own for pair in self.later_ids[k])

    def _accepted(self, k: int, values: dict[int, Any], accepted: set[tuple[int, int]]
                  ) -> None:
        node = self.nodes[k]
        if node.op == "take":
            table, ids = node.inputs
            accepted.add((ids.id, values[table.id].shape[node.attrs["axis"]]))

    def _use_in_place(self, k: int) -> Any:
        """Step ``k`` updates its parameter in place from now on (its earlier readers, run
        already, gave no view of it); its in-place implementation."""
        node_id, _, *rest = self.steps[k]
        impl = IN_PLACE_IMPLS[self.nodes[k].op]
        self.steps[k] = (node_id, impl, *rest)
        return impl

    def run(self, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(outputs, new parameter values) of the program for ``inputs``."""
        values: dict[int, Any] = dict(zip(self.inputs, inputs, strict=True))
        storage = self.program.graph.parameter_values
        for i in self.parameters:
            values[i] = storage[i]
        values.update(self.constants)
        k = 0
        checking = not self.checked
        fresh = set(self.in_place.values())  # parameters no earlier result is a view of
        accepted: set[tuple[int, int]] = set()  # (ids node, rows) that steps have accepted
        try:
            with np.errstate(all="ignore"):
                for k, (node_id, impl, ids, attrs, shape, dtype, scan, drop) in enumerate(
                        self.steps):
                    if checking and self._in_place_now(k, fresh, accepted):
                        impl = self._use_in_place(k)
                    args = [values[i] for i in ids]
                    if k in self.materialized:
                        args = [materialize(a) for a in args]
                    reuse = self.reuse.get(k)
                    if reuse is not None:  # the same ufunc, into a dying input's buffer
                        result = reuse[0](*args, out=values[reuse[1]])
                    else:
                        result = impl(args, attrs.copy(), shape)
                    if not scan:
                        result = np.asarray(result, dtype=dtype)
                        if checking:
                            self._check(k, result, shape, values, fresh)
                            self._accepted(k, values, accepted)
                    elif checking:  # a scan's outputs may pass an invariant through
                        fresh.difference_update(ids)
                    values[node_id] = result
                    for i in drop:
                        del values[i]
        except InputError as exc:  # bad data: say which node (and placeholder) met it
            node = self.nodes[k]
            if node.op == SCAN:  # its body's node said it already
                raise
            message = (index_error_message(node, str(exc)) if node.op in INDEX_OPERAND
                       else f"{node.describe()}: {exc}")
            raise InputError(message) from None
        self.checked = True
        return [values[i] for i in self.outputs], [values[i] for i in self.updates]


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
