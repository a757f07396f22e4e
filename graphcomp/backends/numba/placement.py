"""Stage 3 of code generation: the driver's form, the lanes, and where each statement runs.

* ``choose_driver``: a short step gets an njit driver (one native call per step), a long one
  a Python driver (an njit driver links and re-optimises every kernel it calls), and so
  does a step with lazy Adam's row-wise updates.
* ``wants_lanes``: whether products are split between two threads (``lanes.py``).
* ``place_statements``: for a Python driver, which buffers ``bind()`` makes once per binding
  of the dims, which views of them the calls need (made once too), what each step runs, and
  which periodic runs of row-wise calls become row segments (``rows.py``).

>>> JIT_DRIVER_MAX_KERNELS, JIT_DRIVER_MAX_WORK
(32, 20000000)
"""

from __future__ import annotations

from collections.abc import Collection

from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba import rows as R
from graphcomp.backends.numba.calls import direct_matmul, gemm_work
from graphcomp.backends.numba.program import Buffer, Call, Segment, StepProgram
from graphcomp.ops.sparse_updates import SPARSE_UPDATE_OPS
from graphcomp.passes.fusion import FusionPlan
from graphcomp.passes.lowered import LoweredProgram, size_key

# Larger programs get a Python driver: compiling an njit driver re-optimises every kernel it
# calls, which costs more than the per-call dispatch saves once kernels are big (measured in
# docs/performance.md).
JIT_DRIVER_MAX_KERNELS = 32
# An njit driver also costs ~3 s more compile than a Python one (mlp with one hidden layer,
# 29 kernels: 6.6 s against 3.2 s), and saves ~1 us per kernel call: worth it only when a
# step is short. Steps with more known work than this (matmul flops plus elements written,
# symbols counted as 1) get a Python driver: ~30 us of calls is then 1-2 % of the step.
JIT_DRIVER_MAX_WORK = 20_000_000
# A step with lazy Adam's row-wise updates (ops/sparse_updates.py) gets a Python driver
# whatever its work: its update kernels (sparse_kernels.py: the ids grouped in a hash table,
# then the rows) are long to compile, and an njit driver compiles them and every other
# kernel again. The word2vec example's step: 6.8-6.9 s of CPU to compile against 11.2-11.5 s
# with main's njit driver and three kernels per table (load 8), for 0.46 against 0.35 ms a
# step with an njit driver over the same fused kernel. A step with SGD's row updates keeps
# the usual choice: the word2vec workload's step took 0.76-0.82 ms with a Python driver
# against 0.55-0.60 ms with its njit one (docs/performance.md, "word2vec: compile and step,
# lazy Adam's driver").
ROW_UPDATE_OPS_FOR_PYTHON_DRIVER = ("sparse_adam_step",)


def choose_driver(lp: LoweredProgram, plan: FusionPlan, driver_jit: bool | None,
                  in_place: Collection[int] = ()) -> bool:
    """True for an njit driver (``driver_jit`` forces the choice when not None; ``in_place``:
    the values written into their parameter's storage, as ``MemoryPlan.in_place``)."""
    if driver_jit is not None:
        return driver_jit
    if any(kernel.kind in ROW_UPDATE_OPS_FOR_PYTHON_DRIVER for kernel in plan.kernels):
        return False
    return (len(plan.kernels) <= JIT_DRIVER_MAX_KERNELS
            and known_work(lp, plan, in_place) <= JIT_DRIVER_MAX_WORK)


def wants_lanes(lp: LoweredProgram, plan: FusionPlan, uses_blas: bool) -> bool:
    """Whether some product reaches ``lanes.LANE_MIN_WORK`` multiply-adds (and lanes run)."""
    return uses_blas and L.SUPPORTED and any(
        gemm_work(lp, kernel) >= L.LANE_MIN_WORK for kernel in plan.kernels
        if kernel.kind == "matmul_acc"
        or (kernel.kind == "matmul" and direct_matmul(lp, plan, kernel)))


def known_work(lp: LoweredProgram, plan: FusionPlan, in_place: Collection[int] = ()) -> int:
    """A step's work as matmul flops plus elements its kernels write, symbols counted as 1.
    A row-wise update written in place (its value in ``in_place``) counts the rows its ids
    touch, so a step's driver does not change with the size of an embedding table.

    >>> # known_work(lp, plan) > JIT_DRIVER_MAX_WORK  # a long step: a Python driver
    """
    def count(shape: tuple) -> int:
        return size_key(shape)[0]

    work = 0
    for kernel in plan.kernels:
        if kernel.kind in ("matmul", "matmul_acc"):
            work += 2 * gemm_work(lp, kernel)
        elif kernel.kind in SPARSE_UPDATE_OPS and kernel.root in in_place:
            work += _touched_elements(lp, kernel.root)
        elif kernel.kind != "alias":
            work += sum(count(lp.ops[v].shape) for v in kernel.results)
            if kernel.kind == "loop":  # a sum's loop runs over its operand, not its result
                work += sum(count(lp.ops[lp.ops[m.root].inputs[0]].shape)
                            for m in kernel.members if lp.ops[m.root].op == "reduce_sum")
    return work


def _touched_elements(lp: LoweredProgram, value: int) -> int:
    """Elements a row-wise update writes: one row of the table per id (sparse_kernels.py)."""
    op = lp.ops[value]
    ids = lp.ops[op.inputs[3 if op.op == "sparse_adam_step" else 1]]
    return size_key(ids.shape)[0] * size_key(op.shape[1:])[0]


def place_statements(program: StepProgram) -> None:
    """Split a Python driver's statements between ``bind()`` and the step (in place).

    A buffer whose view depends only on the arenas (or on other bound buffers) is made once
    per binding; so is every flat or row view of such a buffer that a call takes. Inputs,
    parameters and whatever views them are made in the step. Then row segments replace the
    periodic runs of row-wise calls among the step's calls."""
    bound: set[int] = set()
    step: list[Buffer | Call] = []
    for statement in program.statements:
        if isinstance(statement, Buffer):
            if _bindable(statement, bound):
                bound.add(statement.value)
                program.bind_statements.append(statement)
            else:
                step.append(statement)
            continue
        for arg in statement.args:
            if (arg.kind == "array" and arg.view in ("flat", "matrix") and arg.value in bound
                    and arg.value not in program.transposed):
                key = (arg.value, arg.view)
                if key not in program.bound_views:
                    suffix = "flat" if arg.view == "flat" else "rows"
                    program.bound_views[key] = f"{program.buffers[arg.value].name}_{suffix}"
        step.append(statement)
    program.step_statements = _with_segments(step)
    program.segments = [s for s in program.step_statements if isinstance(s, Segment)]


def _bindable(buffer: Buffer, bound: set[int]) -> bool:
    if buffer.home == "slot":
        return True
    if buffer.home in ("alias", "slice"):
        return buffer.source in bound
    return False  # a view of an input or a parameter: it changes with every call


def _with_segments(step: list[Buffer | Call]) -> list[Buffer | Call | Segment]:
    """Replace each periodic run of row-wise calls by a ``Segment`` (rows.find_runs)."""
    rows = [s.row if isinstance(s, Call) else None for s in step]
    if not any(rows):
        return list(step)
    placed: list[Buffer | Call | Segment] = []
    position = 0
    for number, run in enumerate(R.find_runs(rows)):
        placed += step[position:run.start]
        position = run.start + run.period * run.repeats
        columns = R.segment_columns(rows, run)
        assert columns is not None  # find_runs keeps only runs that have columns
        calls = tuple(call for call in rows[run.start:position] if call is not None)
        placed.append(Segment(f"seg{number}", calls, R.Run(0, run.period, run.repeats), columns))
    placed += step[position:]
    return placed
