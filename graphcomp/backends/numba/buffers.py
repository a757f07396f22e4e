"""Stage 1 of code generation: where every value of the step lives, as ``Buffer`` records.

Sources are the driver's arguments (inputs, parameters, array constants). A computed value
is a view of an arena slot (``memory.plan_memory`` chose the slot), the storage of the
parameter it overwrites in place, or an alias of another buffer (a reshape, or a contiguous
slice such as ``x[t]``).

>>> # buffers = source_buffers(lp, names); buffers.update(kernel_buffers(...))
"""

from __future__ import annotations

from graphcomp.backends.numba.names import Names
from graphcomp.backends.numba.program import Buffer
from graphcomp.passes.fusion import Kernel, slice_offset
from graphcomp.passes.lowered import LoweredProgram
from graphcomp.passes.memory import MemoryPlan

_SOURCE_HOMES = {"placeholder": "input", "parameter": "parameter", "constant": "constant"}


def source_buffers(lp: LoweredProgram, names: Names) -> dict[int, Buffer]:
    """Inputs, parameters and constants: the driver receives them as arrays."""
    return {op.id: Buffer(op.id, names[op.id], op.dtype, op.shape, _SOURCE_HOMES[op.op])  # type: ignore[arg-type]
            for op in lp.ops.values() if op.op in _SOURCE_HOMES}


def kernel_buffers(lp: LoweredProgram, memory: MemoryPlan, names: Names, kernel: Kernel,
                   comment: str) -> list[Buffer]:
    """The buffers a kernel writes (or, for an alias kernel, the view it makes)."""
    op = lp.ops[kernel.root]
    if kernel.kind == "alias":
        source = op.inputs[0]
        if op.op == "slice":
            return [Buffer(op.id, names[op.id], op.dtype, op.shape, "slice", source=source,
                           offset=tuple(slice_offset(lp, op.id)), comment=op.describe())]
        return [Buffer(op.id, names[op.id], op.dtype, op.shape, "alias", source=source,
                       comment=op.describe())]
    made = []
    for value in kernel.results:
        result = lp.ops[value]
        if value in memory.in_place:
            made.append(Buffer(value, names[value], result.dtype, result.shape, "in_place",
                               source=memory.in_place[value],
                               comment="written in place: no later step reads it"))
        else:
            made.append(Buffer(value, names[value], result.dtype, result.shape, "slot",
                               slot=memory.slot_of[value]))
    if kernel.root in memory.placed:  # a stack whose parts wrote into it: nothing to run
        last = made[-1]
        made[-1] = Buffer(last.value, last.name, last.dtype, last.shape, last.home, last.slot,
                          comment=f"{comment}: its parts were written in place")
    return made
