"""Programs that hold ``scan`` on the numba backend: a sequence of compiled stages.

The lowered program is cut at each scan into *segments* (the ops between two scans), each
compiled by the ordinary pipeline (passes, fusion, memory plan, one generated module), and
*scan stages*. A scan's body is a program of its own, compiled once by the same pipeline
whatever the number of steps; its stage runs one loop over the leading axis that calls the
body's driver on the step's carry, the views ``x[t]`` and the invariants, then copies the
step's ``y`` into the stacked output and the new carry into a second carry buffer (the two
swap). With a Python body driver (the default) the loop is Python (``_BoundLoop.loop``); with
an njit one (``driver_jit=True``) it is ``scan_loop``, an njit function appended to the body's
module (``loop_text``), so the whole loop is one native call. Stacked outputs and carries are
allocated once per binding of the symbols and reused.

Values cross stages as arrays: a segment's inputs are the program's placeholders it reads and
the values earlier stages made (placeholders of its own program); parameters and constants
are read where they are used. All updates are applied by the last segment, after every stage
has read the old values.

>>> # exe = compile_staged(program, compile_body, compile_segment); exe.run(arrays, binding)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp.backends.numba.blas import blas_thread_count
from graphcomp.backends.numba.compile_job import CompileJob, driver_signature
from graphcomp.backends.numba.lanes import LaneWorker, lanes_array
from graphcomp.backends.numba.parallel import MIN_IDLE_CORES, others_busy_cores
from graphcomp.errors import CompileError
from graphcomp.ir import dim_factors, dim_value
from graphcomp.loops import LOOP_OPS, SCAN, SCAN_OUTPUT, ScanBody, shared_stacks
from graphcomp.loops.checkpoint import Checkpoints, RecomputedStack, segment_count
from graphcomp.passes.lowered import LOp, LoweredProgram
from graphcomp.passes.lowering import lower
from graphcomp.runtime.binding import check_inputs
from graphcomp.runtime.program import Program

NATIVE_LOOP = True  # append scan_loop to njit body modules (False: loop from Python)
# compiles a body's program; the callable it gets returns the loop's text for a body module
Compile = Callable[[Program, Callable[[Any], str]], Any]


def has_loops(program: Program) -> bool:
    """Whether ``program``'s schedule holds a scan."""
    return any(node.op in LOOP_OPS for node in program.schedule)


@dataclass
class Segment:
    """Ops between two scans, compiled into one generated module."""

    executable: Any  # NumbaExecutable
    inputs: list[int]  # value ids, in the order its driver takes them
    outputs: list[int]  # value ids later stages (or the program's outputs) read
    copied: list[bool]  # an output that may share a parameter's storage is copied

    def run(self, env: dict[int, np.ndarray], binding: dict[str, int]) -> list[np.ndarray]:
        """Run the segment on the values in ``env``; store what it makes there."""
        outputs, new_values = self.executable.run([env[i] for i in self.inputs], binding)
        for value, array, copied in zip(self.outputs, outputs, self.copied, strict=True):
            env[value] = array.copy() if copied else array
        return new_values


@dataclass
class ScanLoop:
    """One scan: its body's executable and the loop that calls it once per step."""

    op: LOp
    body: ScanBody
    y_out: list[Any]  # the body's ys that something reads (Nodes): the only ones computed
    executable: Any  # the body's NumbaExecutable (or staged executable: nested scans)
    inputs: list[int]  # init leaves, xs leaves, invariants
    outputs: dict[int, int]  # scan_output value id -> its place in the loop's results
    stack_carries: bool
    native: bool  # the body's module holds ``scan_loop`` (loop_text)
    stacked: tuple[int, ...] = ()  # the carry leaves whose stacks something reads
    checkpoint: int | None = None  # gc.scan(..., checkpoint=k): stacks are recomputed
    real_ys: int = 0  # with a checkpoint: how many of y_out are ys (the rest: residuals)
    shares: dict[int, int] = field(default_factory=dict)  # carry leaf -> y_out: shared_stacks
    _bound: dict[tuple, _BoundLoop] = field(default_factory=dict)
    lanes: np.ndarray | None = None  # the lanes, while the loop runs holding them

    def run(self, env: dict[int, np.ndarray], binding: dict[str, int]) -> None:
        """Run every step; store the scan's outputs in ``env``."""
        # The loop is compiled for writeable C-ordered arrays, as the drivers are.
        arrays = [a if isinstance(a, RecomputedStack)  # read step by step (loops/checkpoint.py)
                  or (a.flags.writeable and a.flags.c_contiguous) else np.array(a, order="C")
                  for a in (env[i] for i in self.inputs)]
        n_carry, n_xs = len(self.body.carry_in), len(self.body.x_in)
        carry, xs = arrays[:n_carry], arrays[n_carry:n_carry + n_xs]
        invariants = arrays[n_carry + n_xs:]
        trip = xs[0].shape[0] if xs else int(self.op.shape[0])
        key = (trip, *[a.shape for a in arrays])
        bound = self._bound.get(key) or self._bind(key, carry, xs, invariants, trip)
        # The body's products are small: OpenBLAS's second thread only adds a hand-over per
        # product, and on a busy machine a wait for a descheduled thread (rnn_scan backward
        # loop, load 7 on 2 cores: 382 ms with two threads, 7.6 ms with one).
        counts = blas_thread_count()
        threads = counts[0]() if counts is not None else 1
        if threads > 1 and counts is not None:
            counts[1](1)
        try:
            if self.checkpoint is not None:
                results = self._checkpointed(bound, carry, xs, invariants, trip)
            else:
                results = bound.loop(carry, xs, invariants, trip, self.op.attrs["reverse"])
        finally:
            if threads > 1 and counts is not None:
                counts[1](threads)
        for value, index in self.outputs.items():
            env[value] = results[index]

    def _bind(self, key: tuple, carry: list[np.ndarray], xs: list[np.ndarray],
              invariants: list[np.ndarray], trip: int) -> _BoundLoop:
        body = self.body
        one_step = [x[0] if trip and isinstance(x, np.ndarray) else np.empty(x.shape[1:], x.dtype)
                    for x in xs]
        _, binding = check_inputs(body.inputs, carry + one_step + invariants, body.dims)
        full = trip if self.checkpoint is None else 0  # checkpointed: recomputed stacks
        ys = [np.empty((trip if j < self.real_ys else full, *_shape(y.shape, binding)), y.dtype)
              for j, y in enumerate(self.y_out)]
        stacks = [np.empty((full if i in self.stacked else 0, *c.shape), c.dtype)
                  for i, c in enumerate(carry)]
        carries = [[np.empty_like(c) for c in carry] for _ in range(2)]
        shared = _share_stacks(self, ys, stacks, trip)
        bound = _BoundLoop(self._step(binding), carries, ys, stacks, self.stack_carries)
        bound.shared = shared
        if self.native and all(isinstance(x, np.ndarray) for x in xs):
            views, tail = self.executable.bound_buffers(binding)
            if all(isinstance(v, np.ndarray) for v in views):  # else: an input passes through
                bound.native = (self.executable.module_function("scan_loop"), (*views, *tail))
        self._bound[key] = bound
        return bound

    def _checkpointed(self, bound: _BoundLoop, init: list[np.ndarray], xs: list[Any],
                      invariants: list[np.ndarray], trip: int) -> list[Any]:
        """The loop of a checkpointed scan: the ys and the carry every ``k`` steps; the stacks
        something reads are ``RecomputedStack`` (loops/checkpoint.py)."""
        k, reverse = self.checkpoint or 1, self.op.attrs["reverse"]
        n_carry, n_ys = len(init), self.real_ys
        residuals = self.y_out[n_ys:]
        keep = segment_count(trip, k) if self.stacked or residuals else 0
        carries = [np.empty((keep, *c.shape), c.dtype) for c in init]
        carry, spare = bound.carries
        for buffer, value in zip(carry, init, strict=True):
            np.copyto(buffer, value)
        for i in range(trip):
            t = trip - 1 - i if reverse else i
            if keep and i % k == 0:
                for stack, c in zip(carries, carry, strict=True):
                    stack[i // k] = c
            outputs = bound.step([*carry, *[x[t, ...] for x in xs], *invariants])
            for y, value in zip(bound.ys[:n_ys], outputs[n_carry:], strict=False):
                y[t] = value
            for buffer, value in zip(spare, outputs[:n_carry], strict=True):
                np.copyto(buffer, value)
            carry, spare = spare, carry

        def step(c: list[np.ndarray], x: list[np.ndarray], v: list[np.ndarray]) -> tuple:
            outputs = bound.step([*c, *x, *v])
            return outputs[:n_carry], outputs[n_carry + n_ys:]

        described = [("carry", i, init[i].shape, init[i].dtype) for i in self.stacked]
        described += [("value", j, bound.ys[n_ys + j].shape[1:], r.dtype)
                      for j, r in enumerate(residuals)]
        # a carry kept with the value it is made from: (carry, value) positions in described
        pairs = [(self.stacked.index(i), len(self.stacked) + j - n_ys)
                 for i, j in self.shares.items()]
        saved = Checkpoints(step, carries, xs, invariants, trip, k, reverse, described, pairs)
        lazy = [RecomputedStack(saved, which) for which in range(len(described))]
        stacks: list[Any] = list(bound.stacks)
        for which, i in enumerate(self.stacked):
            stacks[i] = lazy[which]
        return [*carry, *bound.ys[:n_ys], *lazy[len(self.stacked):], *stacks]

    def _step(self, binding: dict[str, int]) -> Callable[[Sequence[np.ndarray]], list]:
        """One call of the body from Python: its runner, or its general run."""
        executable = self.executable
        lane_runner = getattr(executable, "lane_runner", None)
        split = lane_runner(binding) if lane_runner is not None else None
        if split is not None:  # its products take the lanes the loop holds, if it holds them
            off = lanes_array(enabled=False)

            def step_in_lanes(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
                return split(inputs, off if self.lanes is None else self.lanes)
            return step_in_lanes
        step = executable.runner(binding) if hasattr(executable, "runner") else None
        if step is None:
            def step(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
                return executable.run(inputs, binding)[0]
        return step


@dataclass
class _BoundLoop:
    """The buffers of one scan for one binding: two carries that swap, stacked ys and carries."""

    step: Callable[[Sequence[np.ndarray]], list[np.ndarray]]
    carries: list[list[np.ndarray]]
    ys: list[np.ndarray]
    stacks: list[np.ndarray]  # of length 0 when nothing reads them
    stack_carries: bool
    native: tuple | None = None  # scan_loop and the body's output views and driver tail
    shared: dict[int, int] = field(default_factory=dict)  # carry -> y: one buffer (_share_stacks)
    _plan: _LoopPlan | None = None
    _cached: tuple | None = None  # the last call's xs and invariants, each step's arguments

    def loop(self, init: list[np.ndarray], xs: list[np.ndarray], invariants: list[np.ndarray],
             trip: int, reverse: bool) -> list[np.ndarray]:
        if self.native is not None:
            carry, spare = self.carries
            for buffer, value in zip(carry, init, strict=True):
                np.copyto(buffer, value)
            function, buffers = self.native
            function(trip, reverse, self.stack_carries, *carry, *spare, *xs, *invariants,
                     *self.ys, *self.stacks, *buffers)
            return [*(carry if trip % 2 == 0 else spare), *self.ys, *self.stacks]
        plan = self._plan or self._make_plan(trip, reverse)
        for buffer, value in zip(plan.first, init, strict=True):
            buffer[...] = value
        step = self.step
        for arguments, copies in zip(self._arguments(plan, xs, invariants), plan.copies,
                                     strict=True):
            outputs = step(arguments)
            for buffer, k in copies:
                buffer[...] = outputs[k]
        return plan.results

    def _make_plan(self, trip: int, reverse: bool) -> _LoopPlan:
        """Where each step reads its carry and writes its results (see _LoopPlan)."""
        order = list(range(trip - 1, -1, -1) if reverse else range(trip))
        n_carry = len(self.carries[0])
        reads: list[list[np.ndarray]] = [[] for _ in order]
        copies: list[list[tuple[np.ndarray, int]]] = [[] for _ in order]
        first, final = [], []
        for i in range(n_carry):
            stack = self.stacks[i]
            if len(stack) != trip or trip == 0:  # not stacked: two buffers that swap
                buffers = [self.carries[0][i], self.carries[1][i]]
                for s in range(trip):
                    reads[s].append(buffers[s % 2])
                    copies[s].append((buffers[(s + 1) % 2], i))
                first.append(buffers[0])
                final.append(buffers[trip % 2])
                continue
            # Stacked: step t reads its carry from stack[t], where the previous step wrote it.
            shared = self.shared.get(i)  # stack[next t] is ys[shared][t]: written as a y
            for s, t in enumerate(order):
                reads[s].append(stack[t, ...])
                last = s == trip - 1
                if shared is None:
                    target = self.carries[0][i] if last else stack[order[s + 1], ...]
                    copies[s].append((target, i))
            first.append(stack[order[0], ...])
            final.append(self.carries[0][i] if shared is None else
                         self.ys[shared][order[-1], ...])
        for j, y in enumerate(self.ys):
            for s, t in enumerate(order):
                copies[s].append((y[t, ...], n_carry + j))
        self._plan = _LoopPlan(order, reads, copies, first, [*final, *self.ys, *self.stacks])
        return self._plan

    def _arguments(self, plan: _LoopPlan, xs: list[Any], invariants: list[np.ndarray]
                   ) -> Iterable[list[Any]]:
        """Each step's arguments: its carry, the views x[t] and the invariants; kept while the
        same arrays come back (a segment's outputs are the same views at every call)."""
        if not all(isinstance(x, np.ndarray) for x in xs):
            # RecomputedStack (checkpoint=k): x[t] is a view of a segment that a later read
            # recomputes in place, so each step reads its x just before it runs.
            return ([*reads, *[x[t, ...] for x in xs], *invariants]
                    for t, reads in zip(plan.order, plan.reads, strict=True))
        given = (*xs, *invariants)
        cached = self._cached
        if cached is not None and len(cached[0]) == len(given) and all(
                a is b for a, b in zip(cached[0], given, strict=True)):
            return cached[1]
        arguments = [[*reads, *[x[t, ...] for x in xs], *invariants]
                     for t, reads in zip(plan.order, plan.reads, strict=True)]
        self._cached = (given, arguments)
        return arguments


@dataclass
class _LoopPlan:
    """One binding's Python loop: per step (in the order run) the carry views it reads and the
    (buffer, output index) copies after it; the buffers init goes to; the loop's results."""

    order: list[int]
    reads: list[list[np.ndarray]]
    copies: list[list[tuple[np.ndarray, int]]]
    first: list[np.ndarray]
    results: list[np.ndarray]


def _share_stacks(scan: ScanLoop, ys: list[np.ndarray], stacks: list[np.ndarray],
                  trip: int) -> dict[int, int]:
    """A stacked carry that is also a computed y (rnn: h_t is the new carry and a residual)
    is kept once (``shared_stacks``): its stack and that y's are two views of one
    (trip + 1)-row buffer, shifted by a row (stack[t + 1] is ys[j][t]; reversed:
    stack[t - 1]). Returns {carry: y}. A checkpointed scan's pairs share their recomputed
    segments instead (Checkpoints)."""
    if scan.checkpoint is not None:
        return {}
    for i, j in scan.shares.items():
        buffer = np.empty((trip + 1, *stacks[i].shape[1:]), stacks[i].dtype)
        later, earlier = buffer[1:], buffer[:-1]
        stacks[i], ys[j] = (later, earlier) if scan.op.attrs["reverse"] else (earlier, later)
    return dict(scan.shares)


def _shape(shape: Sequence[Any], binding: dict[str, int]) -> tuple[int, ...]:
    return tuple(dim_value(d, binding) for d in shape)


class StagedExecutable:
    """Runs the stages of a program that holds scans, in order (see the module's text)."""

    def __init__(self, program: Program, stages: list[Segment | ScanLoop],
                 sources: dict[int, LOp], compile_seconds: float) -> None:
        self.program = program
        self.stages = stages
        self.compile_seconds = compile_seconds
        executables = [stage.executable for stage in stages]
        self.cache_hit = all(getattr(e, "cache_hit", False) for e in executables)
        self.source = "\n".join(_stage_text(i, stage) for i, stage in enumerate(stages))
        self._inputs = [node.id for node in program.inputs]
        storage = program.graph.parameter_values
        self._storage = storage
        self._parameters = [(i, op.attrs["storage_id"]) for i, op in sources.items()
                            if op.op == "parameter"]
        self._constants = {i: np.array(op.attrs["value"], copy=True, order="C")
                           for i, op in sources.items() if op.op == "constant"}
        self._splits = any(getattr(getattr(stage.executable, "module", None), "uses_lanes", False)
                           for stage in stages)

    def run(self, inputs: Sequence[np.ndarray], binding: dict[str, int]
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        env: dict[int, np.ndarray] = dict(zip(self._inputs, inputs, strict=True))
        env.update(self._constants)
        for value, storage_id in self._parameters:
            env[value] = self._storage[storage_id]
        last = self.stages[-1]
        assert isinstance(last, Segment)
        for stage in self.stages[:-1]:
            if isinstance(stage, ScanLoop) and self._splits and _core_idle():
                self._loop_holding_lanes(stage, env, binding)
            else:
                stage.run(env, binding)
        outputs, new_values = last.executable.run([env[i] for i in last.inputs], binding)
        return outputs, new_values

    def _loop_holding_lanes(self, loop: ScanLoop, env: dict[int, np.ndarray],
                            binding: dict[str, int]) -> None:
        """Run a scan's loop with the lanes taken (lanes/worker.py): the helper keeps spinning
        through the loop and takes its half of the next segment's first product. Left to poll
        every 50 µs while a loop ran, it came late to that product, which then ran on one
        core (and its lateness made the next products run whole too)."""
        worker = LaneWorker.shared()
        lanes = worker.begin() if worker is not None else None
        loop.lanes = lanes
        try:
            loop.run(env, binding)
        finally:
            loop.lanes = None
            if lanes is not None and worker is not None:
                worker.end()

    def step_calls(self) -> list[tuple[str, list[tuple[int | None, str]]]]:
        """Each stage's calls (see gc.kernel_listing); a body's calls are indented under a
        line for its loop and name their values by description (they are the body's)."""
        listed = []
        for stage in self.stages:
            if isinstance(stage, Segment):
                listed += stage.executable.step_calls()
                continue
            listed.append((f"# loop: {stage.op.describe()}, T = {stage.op.shape[0]}", []))
            calls = getattr(stage.executable, "step_calls", None)
            for text, values in calls() if calls is not None else []:
                listed.append((f"    {text}", [(None, description) for _, description in values]))
        return listed


def _core_idle() -> bool:
    """Whether a core besides the loop's own is idle: other processes leave at least
    ``1 + MIN_IDLE_CORES`` of this process's cores free (``others_busy_cores``), or, before
    that has a window, the 1-minute load average leaves ``MIN_IDLE_CORES`` idle. A helper
    spinning through a loop on a busy machine takes time from the loop's own thread (lstm's
    fastest step at load 5: 28.9 ms holding the lanes, 22.4 ms not); the load average alone
    counted this process's own two busy threads, so a long run of loops let go of the lanes
    on an otherwise idle machine."""
    try:
        cores = len(os.sched_getaffinity(0))
        others = others_busy_cores()
        if others is not None:
            return cores - others >= 1 + MIN_IDLE_CORES
        return cores - os.getloadavg()[0] >= MIN_IDLE_CORES
    except (AttributeError, OSError):  # not Linux: no affinity or no load average
        return False


def _stage_text(index: int, stage: Segment | ScanLoop) -> str:
    if isinstance(stage, Segment):
        head = f"# ---- stage {index}: the ops between scans, one generated module"
        return f"{head}\n{stage.executable.source}"
    op = stage.op
    loop = ("scan_loop, at the end of the body's module below" if stage.native else
            "a Python loop over the body's step below")
    head = (f"# ---- stage {index}: {op.describe()}, reverse={op.attrs['reverse']}, "
            f"T = {op.shape[0]}: {loop}")
    return f"{head}\n{stage.executable.source}"


def compile_staged(program: Program, compile_body: Compile,
                   compile_segment: Callable[[Program, LoweredProgram], Any]
                   ) -> StagedExecutable:
    """Cut ``program`` at its scans and compile every stage.

    ``compile_body`` compiles a body's program (with the options of the enclosing compile);
    ``compile_segment`` runs the passes and code generation on a segment's lowered program.
    """
    start = time.perf_counter()
    lp = lower(program)
    groups = _split(lp)
    reads = [_reads(lp, group, last=(i == len(groups) - 1)) for i, group in enumerate(groups)]
    position = {value: i for i, value in enumerate(lp.ops)}
    stages: list[Segment | ScanLoop] = []
    sources: dict[int, LOp] = {}
    for i, group in enumerate(groups):
        later = set().union(*reads[i + 1:]) if i + 1 < len(groups) else set()
        if isinstance(group, int):
            stages.append(_scan_loop(lp, group, later, compile_body))
            sources.update({v: lp.ops[v] for v in lp.ops[group].inputs if lp.ops[v].is_source})
            continue
        last = i == len(groups) - 1
        if not group and not last:
            continue
        _check_not_recomputed(lp, reads[i])
        outputs = list(lp.outputs) if last else sorted(set(group) & later, key=position.__getitem__)
        seg = _segment_program(program, lp, group, reads[i], outputs, position, last)
        executable = compile_segment(seg[0], seg[1])
        memory = executable.memory
        copied = [memory.base(v) not in memory.slot_of for v in outputs]
        stages.append(Segment(executable, seg[1].inputs, outputs, copied))
    return StagedExecutable(program, stages, sources, time.perf_counter() - start)


def _check_not_recomputed(lp: LoweredProgram, values: set[int]) -> None:
    """A checkpointed scan's stacked residuals exist one segment at a time: only scans read
    them (a gradient of its gradient does not compile on numba)."""
    for value in values:
        op = lp.ops[value]
        scan = lp.ops[op.inputs[0]] if op.op == SCAN_OUTPUT else None
        if scan is not None and scan.attrs.get("checkpoint") is not None:
            body: ScanBody = scan.attrs["body"]
            if op.attrs["index"] >= len(body.carry_out) + len(body.y_out):
                raise CompileError(
                    f"scan at {body.source} with checkpoint={scan.attrs['checkpoint']}: its "
                    "stacked residuals are recomputed one segment at a time and only scans can "
                    "read them; a gradient of its gradient compiles on backend='numpy' only")


def _split(lp: LoweredProgram) -> list[list[int] | int]:
    """Segments (lists of op ids) and scans (an op id), in schedule order; sources belong to
    no segment (each stage reads them where they are), scan outputs to their scan."""
    groups: list[list[int] | int] = [[]]
    for op in lp.ops.values():
        if op.op == SCAN:
            groups += [op.id, []]
        elif op.op != SCAN_OUTPUT and not op.is_source:
            group = groups[-1]
            assert isinstance(group, list)
            group.append(op.id)
    return groups


def _reads(lp: LoweredProgram, group: list[int] | int, last: bool) -> set[int]:
    """The values a stage reads from outside itself."""
    if isinstance(group, int):
        return set(lp.ops[group].inputs)
    own = set(group)
    values = {i for op in group for i in lp.ops[op].inputs if i not in own}
    if last:  # the outputs and updates are the last segment's
        values |= set(lp.outputs) | {v for pair in lp.updates for v in pair}
    return values - own


def _scan_loop(lp: LoweredProgram, scan_id: int, later: set[int], compile_body: Compile
               ) -> ScanLoop:
    op = lp.ops[scan_id]
    body: ScanBody = op.attrs["body"]
    read = {v.id: v.attrs["index"] for v in lp.ops.values()
            if v.op == SCAN_OUTPUT and v.inputs == [scan_id] and v.id in later}
    # Only the ys something reads are computed (a reverse scan's gradients of xs often
    # are not), and the residuals a gradient reads are stacked as more ys: results hold the
    # carry, those ys, those residuals, then the stacked carries.
    n_carry, n_y = len(body.carry_out), len(body.y_out)
    first_res = 2 * n_carry + n_y
    kept = [k for k in range(n_y) if n_carry + k in read.values()]
    stacked = [r for r in range(len(body.residuals)) if first_res + r in read.values()]
    y_out = [body.y_out[k] for k in kept] + [body.residuals[r] for r in stacked]
    position = {**{i: i for i in range(n_carry)},
                **{n_carry + k: n_carry + j for j, k in enumerate(kept)},
                **{first_res + r: n_carry + len(kept) + j for j, r in enumerate(stacked)},
                **{n_carry + n_y + i: n_carry + len(y_out) + i for i in range(n_carry)}}
    outputs = {value: position[index] for value, index in read.items()}
    program = Program(body.graph, list(body.inputs), [*body.carry_out, *y_out], [],
                      body.graph.schedule([*body.carry_out, *y_out]), body.dims)
    ranks = [n.ndim for n in (*body.carry_in, *body.x_in, *y_out)]
    native: list[bool] = []
    carry_stacks = tuple(i for i in range(n_carry) if n_carry + n_y + i in read.values())

    def text(module: Any) -> str:
        native.append(NATIVE_LOOP and module.driver_jit and not module.uses_lanes
                      and 0 not in ranks and op.attrs.get("checkpoint") is None)
        tail = len(module.arguments) - len(body.inputs)
        return loop_text(body, y_out, tail, carry_stacks) if native[0] else ""

    try:
        executable = compile_body(program, text)
    except CompileError as exc:
        raise CompileError(f"{op.describe()} (body traced at {body.source}): {exc}") from None
    if native and native[0] and not getattr(executable, "planned_only", False):
        _compile_loop(executable, body, y_out)
    # position in the loop's results less n_carry: a place in y_out
    shares = {index - n_carry - n_y: position[other] - n_carry for index, other
              in shared_stacks(body, set(read.values()), op.attrs.get("checkpoint")).items()}
    return ScanLoop(op, body, y_out, executable, list(op.inputs), outputs, bool(carry_stacks),
                    bool(native and native[0]), carry_stacks, op.attrs.get("checkpoint"),
                    len(kept), shares)


def _compile_loop(executable: Any, body: ScanBody, y_out: list[Any]) -> None:
    """Compile ``scan_loop`` now (with the body), for the types its stage passes."""
    from numba import from_dtype, types

    def arrays(nodes: Sequence[Any], extra: int) -> list[Any]:
        return [types.Array(from_dtype(n.dtype), n.ndim + extra, "C") for n in nodes]

    driver = driver_signature(CompileJob.of(executable.module).driver_arguments)
    carry = arrays(body.carry_in, 0)
    signature = (types.int64, types.boolean, types.boolean, *carry, *carry,
                 *arrays(body.x_in, 1), *arrays(body.invariant_in, 0),
                 *arrays(y_out, 1), *arrays(body.carry_in, 1),
                 *arrays([*body.carry_out, *y_out], 0), *driver[len(body.inputs):])
    function = executable.module_function("scan_loop")
    if signature not in function.signatures:
        function.compile(signature)
    function.disable_compile()


def loop_text(body: ScanBody, y_out: list[Any], tail: int, stacked: Sequence[int] = ()) -> str:
    """``scan_loop``, appended to a body's module: the whole loop in one native call.

    Its arguments: the trip count, the direction, whether carries are stacked, the carry
    buffers and their spares (the two swap each step), the stacked xs, the invariants, the
    stacked ys and carries, the driver's output views, then the driver's trailing arguments.
    Only the carry leaves in ``stacked`` are stacked (the others' stacks have length 0).
    """
    def names(prefix: str, count: int) -> list[str]:
        return [f"{prefix}{i}" for i in range(count)]

    carry, spare = names("c", len(body.carry_in)), names("s", len(body.carry_in))
    xs, inv = names("x", len(body.x_in)), names("v", len(body.invariant_in))
    ys, stacks = names("y", len(y_out)), names("k", len(body.carry_in))
    outs, rest = names("o", len(carry) + len(y_out)), names("a", tail)
    args = ", ".join(["trip", "reverse", "stacking", *carry, *spare, *xs, *inv, *ys, *stacks,
                      *outs, *rest])
    step_args = ", ".join([*carry, *[f"{x}[t]" for x in xs], *inv, *rest])
    lines = [
        "", "", "# ---- the scan's loop (graphcomp/backends/numba/stages.py)", "", "",
        "@njit(cache=True, nogil=True, error_model=\"numpy\", no_cfunc_wrapper=True)",
        f"def scan_loop({args}):",
        "    for i in range(trip):",
        "        t = trip - 1 - i if reverse else i",
        *(["        if stacking:"] if stacked else []),
        *[f"            {stacks[i]}[t] = {carry[i]}" for i in stacked],
        f"        step({step_args})",
        *[f"        {y}[t] = {o}" for y, o in zip(ys, outs[len(carry):], strict=True)],
        *[f"        {s}[:] = {o}" for s, o in zip(spare, outs[:len(carry)], strict=True)],
        *[f"        {c}, {s} = {s}, {c}" for c, s in zip(carry, spare, strict=True)],
        "    return trip",
    ]
    return "\n".join(lines) + "\n"


def _segment_program(program: Program, lp: LoweredProgram, group: list[int], reads: set[int],
                     outputs: list[int], position: dict[int, int], last: bool
                     ) -> tuple[Program, LoweredProgram]:
    """A segment as a program of its own: values made by other stages become placeholders."""
    ops: dict[int, LOp] = {}
    inputs = []
    for value in sorted(reads, key=position.__getitem__):
        op = lp.ops[value]
        if op.op in ("parameter", "constant"):
            ops[value] = _copy(op)
        else:
            ops[value] = LOp(value, "placeholder", [], {}, op.shape, op.dtype, list(op.labels))
            inputs.append(value)
    for value in group:
        ops[value] = _copy(lp.ops[value])
    updates = list(lp.updates) if last else []
    used = {s for op in ops.values() for d in (*op.shape, *op.attrs.get("dims", ()))
            for s in dim_factors(d)[1]}
    seg_lp = LoweredProgram(ops=ops, inputs=inputs, outputs=list(outputs), updates=updates,
                            symbols=[s for s in lp.symbols if s in used],
                            graph_name=lp.graph_name)
    graph = program.graph
    seg_program = Program(graph, [graph.node(i) for i in inputs],
                          [graph.node(i) for i in outputs],
                          [(graph.node(p), graph.node(v)) for p, v in updates],
                          [graph.node(i) for i in group], program.dims)
    return seg_program, seg_lp


def _copy(op: LOp) -> LOp:
    return LOp(op.id, op.op, list(op.inputs), dict(op.attrs), op.shape, op.dtype, list(op.labels))
