"""The CUDA step as records: planned by the shared passes, rendered by ``render.py``.

``plan_step`` runs over the same lowered program, fusion plan and memory plan as the numba
backend, with the numba backend's buffer records (``Buffer``: an arena slot, an input, a
parameter, the parameter a result is written into, or a view of another buffer). Each
kernel of the fusion plan becomes a ``DeviceCall`` of a device kernel or of an op's numpy
implementation on the host (``op_table.HOST_FALLBACK``).

Merged ``loop`` kernels (several flat kernels in one CPU loop) are split back into their
members before the memory plan: each member is a kernel of its own here (one launch each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graphcomp.backends.cuda.kernels import (
    DeviceKernel,
    KernelSet,
    elementwise_kernel,
    matmul_kernel,
    reduction_kernel,
)
from graphcomp.backends.cuda.op_table import HOST_FALLBACK
from graphcomp.backends.numba.buffers import kernel_buffers
from graphcomp.backends.numba.names import Names
from graphcomp.backends.numba.program import Buffer
from graphcomp.errors import CompileError
from graphcomp.passes.fusion import FusionPlan, Kernel
from graphcomp.passes.lowered import LoweredProgram
from graphcomp.passes.memory import MemoryPlan

CallTarget = Literal["kernel", "host"]


@dataclass(frozen=True)
class DeviceCall:
    """One call of the step: a device kernel (``function`` names it) or the numpy
    implementation of ``node``'s op on the host."""

    target: CallTarget
    function: str
    node: int
    kernel: DeviceKernel | None = None
    reason: str = ""  # host calls: why the op has no device kernel


@dataclass
class DeviceProgram:
    """The step: buffers made and calls run in schedule order, and the distinct kernels."""

    statements: list[Buffer | DeviceCall]
    kernels: KernelSet = field(default_factory=KernelSet)

    @property
    def calls(self) -> list[DeviceCall]:
        return [s for s in self.statements if isinstance(s, DeviceCall)]


def split_loops(plan: FusionPlan) -> FusionPlan:
    """The plan with every merged ``loop`` kernel replaced by its members, each writing a
    buffer of its own."""
    kernels: list[Kernel] = []
    materialised, inlined = set(plan.materialised), set(plan.inlined)
    for kernel in plan.kernels:
        if kernel.kind != "loop":
            kernels.append(kernel)
            continue
        for member in kernel.members:
            kernels.append(member)
            materialised.add(member.root)
            inlined.discard(member.root)
    return FusionPlan(kernels, materialised, inlined, set(plan.transposed_views))


def plan_step(lp: LoweredProgram, plan: FusionPlan, memory: MemoryPlan, names: Names,
              small: bool = False) -> DeviceProgram:
    """Records of every buffer and call of the step (see the module docstring); ``small``:
    small blocks, for the simulator, which runs each CUDA thread as a Python thread."""
    program = DeviceProgram([])
    for kernel in plan.kernels:
        root = lp.ops[kernel.root]
        program.statements += kernel_buffers(lp, memory, names, kernel, root.describe())
        if kernel.kind == "alias" or kernel.root in memory.placed:
            continue
        written = _device_kernel(lp, plan, kernel, small)
        if written is not None:
            name = program.kernels.add(written, root.op)
            program.statements.append(DeviceCall("kernel", name, root.id, written))
        elif root.op in HOST_FALLBACK:
            program.statements.append(DeviceCall("host", root.op, root.id,
                                                 reason=HOST_FALLBACK[root.op]))
        else:
            raise CompileError(f"{root.describe()}: the CUDA backend has no kernel and no host "
                               f"fallback for {root.op!r} (kernel kind {kernel.kind!r})")
    return program


def _device_kernel(lp: LoweredProgram, plan: FusionPlan, kernel: Kernel,
                   small: bool) -> DeviceKernel | None:
    root = lp.ops[kernel.root]
    if kernel.kind == "elementwise":
        return elementwise_kernel(lp, kernel)
    if kernel.kind == "reduction":
        return reduction_kernel(lp, kernel, threads=8 if small else 128)
    if kernel.kind == "matmul" and all(lp.ops[v].ndim == 2 for v in root.inputs):
        return matmul_kernel(lp, kernel, plan.transposed_views, tile=4 if small else 16)
    return None


def argument_types(lp: LoweredProgram, call: DeviceCall) -> list[tuple[str, int] | str]:
    """Each argument's type at this call: (dtype name, ndim) of an array, ``"int64"`` of an
    extent (for ``compile_ptx``; rank-0 buffers are passed as 1-D, reductions write flat)."""
    kernel = call.kernel
    assert kernel is not None
    arrays = {f"a{k}": lp.ops[v] for k, v in enumerate(kernel.reads)}
    arrays["out"] = lp.ops[call.node]
    types: list[tuple[str, int] | str] = []
    for param in kernel.params:
        if param == "dims":
            types.append(("int64", 1))
        elif param in arrays:
            ndim = 1 if param == "out" and kernel.launch == "rows" else arrays[param].ndim
            types.append((arrays[param].dtype.name, max(ndim, 1)))
        else:
            types.append("int64")
    return types
