"""The numpy reference backend: the oracle every other backend is tested against.

``evaluate`` walks the program's schedule and calls each op's numpy implementation. No fusion,
no cleverness: clear enough to trust. ``NumpyExecutable.run`` walks a list of steps made once
per binding of the symbols (``Steps``): each computed node's implementation, input ids,
attributes and shape looked up beforehand, and the intermediates dropped after their last
reader, so a step holds about what numpy written by hand holds (ewise: 294 MB resident against
667 MB when every value lived to the end; docs/performance.md, "The numpy backend's step
list"). Its first run calls the same implementations on the same arrays as ``evaluate`` and
checks every shape (an elementwise result of ``REUSE_MIN_SIZE`` elements or more goes into the
buffer of an input read for the last time, fewer page faults); later runs call one
straight-line function generated from the steps and what the first run saw
(``numpy_lines.py``): ufuncs, ``np.add.reduce``, ``transpose`` and ``reshape`` called directly,
results written into dead buffers (``out=``) and dense updates into their parameters, values of
constants computed once, and relu's ``where(c, x, 0)`` as ``x``'s bits times ``c``. Every value
is still bit-for-bit ``evaluate``'s (tests/backends/test_numpy_steps.py,
tests/backends/test_numpy_lines.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp.backends.numpy_lines import Observed, generate, shares_with_live, zero_select
from graphcomp.errors import InputError
from graphcomp.loops import SCAN, SCAN_OUTPUT, ScanBody, shared_stacks
from graphcomp.loops.checkpoint import Checkpoints, RecomputedStack, materialize, segment_count
from graphcomp.ops import get_op
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

    def runner(self, binding: dict[str, int]) -> Any:
        """After a first run under ``binding``: a call that runs the step on checked inputs,
        writes the new values into the parameters and returns the outputs (``Steps.runner``;
        the ``Function`` calls it without checking again); None before, or where the
        outputs or new values share a parameter's memory."""
        steps = self._steps.get(tuple(sorted(binding.items())))
        return steps.runner() if steps is not None else None


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

# ops whose results that own their memory are new arrays (not an input, nor one kept elsewhere)
FRESH_KINDS = frozenset({"elementwise", "reduction", "linalg"})
FOLD_BYTES = 1 << 20  # largest value of constants that the straight-line function keeps

# ops whose implementation may raise for the call's data or shapes (bad ids, an empty max)
RAISING = frozenset({*INDEX_OPERAND, *IN_PLACE_IMPLS, SCAN, "permute", "reduce_max", "argmax"})
# An elementwise result of at least this many elements goes into the buffer of an input read
# for the last time where it can (``Steps._reused_buffers``): ewise's first interpreted step
# took 6,000-6,600 minor page faults against 7,700-9,700 (2026-12-07, docs/performance.md).
REUSE_MIN_SIZE = 1 << 16


def _elementwise_ufunc(op: str) -> np.ufunc | None:
    """The ufunc that an elementwise op's numpy implementation applies (its registry entry's
    ``numpy_ufunc``), else None."""
    if op in (SCAN, SCAN_OUTPUT):
        return None
    definition = get_op(op)
    return definition.numpy_ufunc if definition.kind == "elementwise" else None


class Steps:
    """``evaluate`` of one program under one binding, prepared: a step per computed node
    (id, implementation, input ids, attributes, shape, the ids read for the last time). The
    first run checks each result's shape against its rule, as ``evaluate`` does every time,
    and records what the straight-line function of later runs relies on (``Observed``)."""

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
        # the straight-line function (numpy_lines.py), made after the first run
        self.ufuncs = {k: get_op(node.op).numpy_ufunc for k, node in enumerate(self.nodes)
                       if node.op not in (SCAN, SCAN_OUTPUT) and k not in self.materialized
                       and get_op(node.op).numpy_ufunc is not None}
        self._op_names = [node.op for node in self.nodes]
        self._kinds = [None if node.op in (SCAN, SCAN_OUTPUT) else get_op(node.op).kind
                       for node in self.nodes]
        self.constant_ids = {i for i, _ in self.constants}
        self.dense_updates = self._dense_update_candidates()
        self.written_in_place: set[int] = set()
        self.observed: Observed | None = None
        self.fast: Any = None
        self._runner: Any = None

    def _dense_update_candidates(self) -> dict[int, int]:
        """{new value node id: parameter id} of the updates whose value is a ufunc step of
        their own parameter, which the straight-line function may write in place."""
        counts: dict[int, int] = {}
        for _, value in self.program.updates:
            counts[value.id] = counts.get(value.id, 0) + 1
        return {value.id: param.id for param, value in self.program.updates
                if counts[value.id] == 1 and value.id not in self.outputs
                and param.id not in self.outputs and value.op not in IN_PLACE_IMPLS}

    def _reused_buffers(self) -> dict[int, tuple[np.ufunc, int]]:
        """{step index: (its ufunc, the input id whose buffer it writes into)}: elementwise
        steps of ``REUSE_MIN_SIZE`` elements or more with an input of the same shape and
        dtype that dies there, made by a ufunc step and read only by ufunc steps (so no view
        of it exists), where the ufunc's own result dtype is the node's (no cast)."""
        ufuncs = {node.id: _elementwise_ufunc(node.op) for node in self.nodes}
        readers_ok: dict[int, bool] = {}
        for node in self.nodes:
            for i in node.inputs:
                readers_ok[i.id] = readers_ok.get(i.id, True) and ufuncs[node.id] is not None
        reuse = {}
        for k, (node, step) in enumerate(zip(self.nodes, self.steps, strict=True)):
            shape, drop, fn = step[4], step[7], ufuncs[node.id]
            if fn is None or k in self.materialized or int(np.prod(shape)) < REUSE_MIN_SIZE:
                continue
            try:
                natural = fn.resolve_dtypes((*(i.dtype for i in node.inputs), None))[-1]
            except (TypeError, ValueError):  # no loop for those dtypes: impl decides
                continue
            if natural != node.dtype:
                continue
            for i in node.inputs:
                if (i.id in drop and ufuncs.get(i.id) is not None and readers_ok[i.id]
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
        if self.fast is not None:
            return self.fast(inputs)
        values: dict[int, Any] = dict(zip(self.inputs, inputs, strict=True))
        storage = self.program.graph.parameter_values
        for i in self.parameters:
            values[i] = storage[i]
        values.update(self.constants)
        k = 0
        checking = not self.checked
        fresh = set(self.in_place.values())  # parameters no earlier result is a view of
        accepted: set[tuple[int, int]] = set()  # (ids node, rows) that steps have accepted
        observed, owned = Observed(), set[int]()
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
                    if (reuse is not None and reuse[1] not in self.constant_ids
                            and node_id not in self.dense_updates):
                        # the same ufunc, into a dying input's buffer (not a folded value's;
                        # a dense update goes into its parameter later instead)
                        raw = result = reuse[0](*args, out=values[reuse[1]])
                    else:
                        reuse = None
                        raw = result = impl(args, attrs.copy(), shape)
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
                    if checking:
                        self._observe(k, raw, args, values, owned, observed, reuse)
        except InputError as exc:  # bad data: say which node (and placeholder) met it
            raise self.input_error(k, exc) from None
        outputs, news = [values[i] for i in self.outputs], [values[i] for i in self.updates]
        if checking:
            self.checked = True
            self._prepare_fast(observed, outputs, news)
        return outputs, news

    def input_error(self, k: int, exc: InputError) -> InputError:
        """The error to raise for ``exc`` met at step ``k``: it names the node (and the
        placeholder that fed bad ids); a scan's body node named itself already."""
        node = self.nodes[k]
        if node.op == SCAN:
            return exc
        message = (index_error_message(node, str(exc)) if node.op in INDEX_OPERAND
                   else f"{node.describe()}: {exc}")
        return InputError(message)

    def _observe(self, k: int, raw: Any, args: list[Any], values: dict[int, Any],
                 owned: set[int], observed: Observed, reuse: tuple | None = None) -> None:
        """The first run's facts about step ``k`` for the straight-line function: whether
        its result is an array of its dtype already, and which buffer may take it (a dead
        input that this step list made and nothing live shares, or the parameter that the
        result updates). A step that wrote into a dying input's buffer (``reuse``) does so
        in the straight-line function too: called without ``out=``, its ufunc may return
        another dtype than the node's."""
        node_id, _, ids, _, shape, dtype, scan, drop = self.steps[k]
        if reuse is not None:
            observed.exact.add(k)
            observed.out_into[k] = ids.index(reuse[1])
            owned.add(node_id)
            return
        if scan or not (type(raw) is np.ndarray and raw.dtype == dtype):
            if not scan and self._foldable(k, values[node_id]):
                observed.folded[k] = values[node_id]
            return
        observed.exact.add(k)
        if self._foldable(k, raw):
            observed.folded[k] = raw
            return
        if self._op_names[k] == "where" and zero_select(args, ids[2] in self.constant_ids, shape):
            observed.zero_select.add(k)
        kind = self._kinds[k]
        if k not in self.ufuncs or not shape or kind != "elementwise":
            if (shape and raw.base is None and kind in FRESH_KINDS and k not in self.in_place
                    and k not in self.materialized and all(raw is not a for a in args)):
                owned.add(node_id)  # a new array that only this step list holds
            return
        live = [v for i, v in values.items() if i != node_id]

        def free(position: int) -> bool:
            array = args[position]
            return (ids[position] in drop and array.shape == shape and array.dtype == dtype
                    and not shares_with_live(array, live))

        param = self.dense_updates.get(node_id)
        if (param is not None and param in ids and args[ids.index(param)].flags.writeable
                and not any(later in RAISING for later in self._op_names[k + 1:])
                and free(ids.index(param))):
            observed.param_in_place[k] = ids.index(param)
            return
        for position, i in enumerate(ids):
            if i in owned and free(position):
                observed.out_into[k] = position
                break
        if raw.base is None:
            owned.add(node_id)

    def _foldable(self, k: int, result: np.ndarray) -> bool:
        """Whether step ``k`` computes the same small value at every call: a deterministic
        op of constants (and of steps folded already), so later calls read the first's."""
        node_id, _, ids, *_ = self.steps[k]
        if (ids and all(i in self.constant_ids for i in ids) and result.nbytes <= FOLD_BYTES
                and self._kinds[k] not in (None, "random")):
            self.constant_ids.add(node_id)
            return True
        return False

    def _prepare_fast(self, observed: Observed, outputs: list[Any], news: list[Any]) -> None:
        """After the first run: the straight-line function that later runs call."""
        storage = self.program.graph.parameter_values
        targets = [storage[param.id] for param, _ in self.program.updates]
        self.written_in_place = {self.steps[k][0] for k in observed.param_in_place} | {
            self.steps[k][0] for k in self.in_place
            if self.steps[k][1] is IN_PLACE_IMPLS[self.nodes[k].op]}
        observed.runner_safe = all(
            isinstance(o, np.ndarray) and not any(np.may_share_memory(o, t) for t in targets)
            for o in outputs) and all(
            value_id in self.written_in_place or not any(
                np.may_share_memory(value, t) for t in targets if t is not own)
            for value_id, value, own in zip(self.updates, news, targets, strict=True))
        self.observed = observed
        self.fast = generate(self, observed, runner=False)

    def runner(self) -> Any:
        """A call that runs the step, writes the new values into the parameters' storage and
        returns the outputs (none shares a parameter's memory); None before the first run
        or where an output or new value shares a parameter's memory."""
        if self.observed is None or not self.observed.runner_safe:
            return None
        if self._runner is None:
            self._runner = generate(self, self.observed, runner=True)
            self._runner.outputs_share_parameters = False
        return self._runner


def make_plan(program: Program) -> Plan:
    """(node, numpy implementation, input ids) of each scheduled node, looked up once."""
    # A scan stacks its carries and residuals only when a gradient reads them (and keeps a
    # stacked carry in the buffer of a stack read that holds the same values: shared_stacks).
    stacking: dict[int, set[int]] = {}
    for n in program.schedule:
        if n.op == SCAN_OUTPUT:
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
    outputs in ``stacked`` (the outputs read) are filled, the others are empty; a stacked
    carry that ``shared_stacks`` pairs with another read stack is a view of its buffer (one
    row longer). ``shape`` is ``(T,)``."""
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
    stacked_outputs = [*ys, *stacks]
    _share_buffers(shared_stacks(body, stacked), stacked_outputs, n_carry, trip,
                   attrs["reverse"])
    ys, stacks = stacked_outputs[:n_ys], stacked_outputs[n_ys:]
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


def _share_buffers(shared: dict[int, int], outputs: list[np.ndarray], n_carry: int,
                   trip: int, reverse: bool) -> None:
    """Each stacked carry of ``shared`` and the stack it pairs with become two views of one
    buffer of ``trip + 1`` rows, shifted by a row: ``carries[t + 1]`` is ``other[t]`` (the
    carry step ``t + 1`` starts from is the value step ``t`` made; reversed: ``t - 1``).
    ``outputs`` are the scan's outputs after its final carries."""
    for carry_index, other_index in shared.items():
        i, j = carry_index - n_carry, other_index - n_carry
        stack = outputs[i]
        buffer = np.empty((trip + 1, *stack.shape[1:]), stack.dtype)
        earlier, later = buffer[:-1], buffer[1:]
        outputs[i], outputs[j] = (later, earlier) if reverse else (earlier, later)


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
    pairs = [(read.index(i - first), read.index(j - first))  # a carry kept with its value
             for i, j in shared_stacks(body, stacked, k).items()]
    checkpoints = Checkpoints(step, carries, xs, invariants, trip, k, reverse, described, pairs)
    outputs: list[Any] = [np.empty((0,), leaf.dtype) for leaf in leaves]
    for which, i in enumerate(read):
        outputs[i] = RecomputedStack(checkpoints, which)
    return tuple(carry + ys + outputs)


def compile_numpy(program: Program, **options: object) -> NumpyExecutable:
    """The numpy backend needs no compilation: it interprets ``program``."""
    return NumpyExecutable(program)
