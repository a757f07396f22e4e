"""Code generation for the numba backend: a planned program in, one module's text out.

``generate`` runs the stages in order, each in a module of its own:

1. ``names``: a short, valid Python name for every value;
2. ``buffers`` and ``calls``: the step as records (``program.py``): where each value lives,
   and which kernel or BLAS helper computes each kernel of the fusion plan;
3. ``placement``: the driver's form (njit or Python), the lanes, what a Python driver makes
   once per binding, and the row segments;
4. ``render``: the texts: the driver's module and the library modules it imports (each
   kernel and helper a cached module of its own). No stage parses text another stage wrote.

The driver ``step`` receives the inputs, parameters, array constants, one flat arena per dtype
with the slot offsets for the current binding, the bound dims and a scratch vector. It carves
every buffer out of the arenas (views, no allocation), calls the kernels in schedule order and
finally copies new parameter values into the parameters' storage, so that every read during the
step saw the old values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphcomp.backends.numba.blas import numpy_blas
from graphcomp.backends.numba.calls import CallContext, choose_calls
from graphcomp.backends.numba.names import Names
from graphcomp.backends.numba.placement import (
    choose_driver,
    known_work,
    place_statements,
    wants_lanes,
)
from graphcomp.backends.numba.program import Buffer, Call, DriverArgument, StepProgram, ValueType
from graphcomp.backends.numba.render import render_modules
from graphcomp.backends.numba.sparse_kernels import fuse_lazy_adam
from graphcomp.passes.fusion import FusionPlan
from graphcomp.passes.lowered import LoweredProgram
from graphcomp.passes.memory import MemoryPlan

__all__ = ["DriverArgument", "GeneratedModule", "generate", "known_work"]

# Names the module defines itself: no value may take them.
_RESERVED = ("math", "np", "njit", "prange", "numba_config", "step", "bind", "lanes", "dims",
             "offsets", "scratch", "copy_flat", "InputError", "BlasLibrary")


@dataclass
class GeneratedModule:
    """The module text and what the runtime needs to call its driver."""

    source: str  # the driver's module: what runs (it imports ``libraries``)
    arguments: list[DriverArgument]
    arena_dtypes: list[np.dtype]
    kernel_count: int = 0
    kernel_calls: int = 0
    driver_jit: bool = True
    # Argument types of every kernel call, for eager compilation when the driver is Python:
    # kernel name -> {((dtype name, ndim, layout) or "int64", ...)}.
    kernel_signatures: dict[str, set[tuple[ValueType, ...]]] = field(default_factory=dict)
    uses_lanes: bool = False  # the driver takes a lanes array (lanes.py) after the parameters
    program: StepProgram | None = None  # the records the text was rendered from
    names: Names | None = None
    # The modules the driver's module imports (kernels, helpers), each after its own imports.
    libraries: tuple[str, ...] = ()
    display: str = ""  # the whole program as one text, for reading (f.source)


def generate(lp: LoweredProgram, plan: FusionPlan, memory: MemoryPlan, *,
             fastmath: bool = False, driver_jit: bool | None = None,
             lanes: bool = True) -> GeneratedModule:
    """The module text for a planned program (``lanes=False``: products never split).

    >>> # module = generate(lp, plan_kernels(lp), plan_memory(lp, plan))
    """
    plan = fuse_lazy_adam(lp, plan, memory)
    names = Names(lp, reserved=_RESERVED)
    blas = numpy_blas()
    njit_driver = choose_driver(lp, plan, driver_jit, memory.in_place)
    arena_dtypes = sorted({s.dtype for s in memory.slots}, key=lambda d: d.str)
    ctx = CallContext(lp, plan, memory, names, njit_driver, uses_blas=blas is not None,
                      uses_lanes=lanes and wants_lanes(lp, plan, blas is not None),
                      arena_of_slot={s.index: f"arena_{s.dtype.name}" for s in memory.slots})
    statements = choose_calls(ctx)
    buffers = {s.value: s for s in statements if isinstance(s, Buffer)}
    for op in lp.ops.values():
        if op.is_source:
            buffers[op.id] = Buffer(op.id, names[op.id], op.dtype, op.shape, "input")
    program = StepProgram(
        value_count=len(lp.ops), symbols=list(lp.symbols), buffers=buffers,
        statements=statements,
        transposed={v: lp.ops[v].inputs[0] for v in plan.transposed_views},
        shapes={v: op.shape for v, op in lp.ops.items()},
        kernels=list(ctx.kernels.values()),
        arguments=_driver_arguments(lp, statements, arena_dtypes, ctx.uses_lanes),
        arena_dtypes=arena_dtypes, fastmath=fastmath, blas_dtypes=ctx.blas_dtypes,
        uses_blas=blas is not None, uses_lanes=ctx.uses_lanes, functions=ctx.functions,
        kernel_calls=len(plan.kernels), driver="njit" if njit_driver else "python")
    if not njit_driver:
        place_statements(program)
    rendered = render_modules(program, names, blas)
    return GeneratedModule(rendered.source, program.arguments,
                           arena_dtypes, len(program.kernels), len(plan.kernels),
                           njit_driver, program.signatures(), ctx.uses_lanes, program, names,
                           rendered.libraries, rendered.display)


def _driver_arguments(lp: LoweredProgram, statements: list[Buffer | Call],
                      arena_dtypes: list[np.dtype], uses_lanes: bool) -> list[DriverArgument]:
    """The driver's parameters: inputs, parameters, the lanes array, the array constants the
    step reads, one arena per dtype, the slot offsets, the bound dims and the scratch vector."""
    read = {a.value for s in statements if isinstance(s, Call) for a in s.args}
    read |= {s.source for s in statements if isinstance(s, Buffer)}
    arguments = [DriverArgument("input", v, lp.ops[v].dtype, lp.ops[v].ndim) for v in lp.inputs]
    arguments += [DriverArgument("parameter", v, lp.ops[v].dtype, lp.ops[v].ndim)
                  for v in lp.parameters()]
    if uses_lanes:
        arguments.append(DriverArgument("lanes", None, np.dtype("int64"), 2))
    arguments += [DriverArgument("constant", v, lp.ops[v].dtype, lp.ops[v].ndim)
                  for v in lp.constants() if v in read]
    arguments += [DriverArgument("arena", None, d, 1) for d in arena_dtypes]
    arguments += [DriverArgument("offsets", None, np.dtype("int64"), 1),
                  DriverArgument("dims", None, np.dtype("int64"), 1),
                  DriverArgument("scratch", None, np.dtype("float64"), 1)]
    return arguments
