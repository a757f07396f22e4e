"""Stage 2 of code generation: each kernel of the fusion plan becomes ``Call`` records.

A product calls a BLAS helper (``gemm_<sfx>``, ``gemm_acc_<sfx>``, or ``gemm_split``
when it is split between two lanes, see ``lanes.py``); a Python driver calls ``np.dot`` for
plain products (numpy's BLAS as well). Every other kernel calls a loop-nest function written
by ``kernels.py``; equal texts become one function (``KernelDef``), so repeated layers and
unrolled steps share one compiled kernel. Each call records the nodes it computes, its
arguments' types (a Python driver compiles its kernels eagerly) and, where it works row by
row, a ``RowCall`` for row segments.

>>> # statements, kernels = choose_calls(context)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from graphcomp.backends.numba import conv_kernels
from graphcomp.backends.numba import kernels as K
from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba import rows as R
from graphcomp.backends.numba.buffers import kernel_buffers
from graphcomp.backends.numba.expressions import DTYPE_SUFFIX
from graphcomp.backends.numba.names import Names
from graphcomp.backends.numba.program import (
    Arg,
    ArrayType,
    Buffer,
    Call,
    KernelDef,
    ValueType,
)
from graphcomp.backends.numba.random_kernels import random_kernel
from graphcomp.backends.numba.sparse_kernels import lazy_adam_kernel, sparse_update_kernel
from graphcomp.errors import CompileError
from graphcomp.ops.sparse_updates import SPARSE_UPDATE_OPS
from graphcomp.passes.fusion import FusionPlan, Kernel, loop_shape
from graphcomp.passes.lowered import LoweredProgram, size_key
from graphcomp.passes.memory import MemoryPlan

_WRITERS = {
    "elementwise": K.elementwise_kernel,
    "reduction": K.reduction_kernel,
    "pad": K.pad_kernel,
    "concatenate": K.concatenate_kernel,
    "take": K.take_kernel,
    "scatter_add": K.scatter_add_kernel,
    "check_index": K.check_index_kernel,
    "cumsum": K.scan_kernel,
    "cumprod": K.scan_kernel,
    "sort": K.sort_kernel,
    "argsort": K.sort_kernel,
    "permute": K.permute_kernel,
    "random_uniform": random_kernel,
    "random_normal": random_kernel,
    "random_randint": random_kernel,
    **conv_kernels.WRITERS,
}


@dataclass
class CallContext:
    """What choosing calls needs: the planned program, names, and the backend's choices."""

    lp: LoweredProgram
    plan: FusionPlan
    memory: MemoryPlan
    names: Names
    njit_driver: bool
    uses_blas: bool  # numpy's BLAS was found
    uses_lanes: bool
    arena_of_slot: dict[int, str]
    kernels: dict[str, KernelDef] = field(default_factory=dict)  # code key -> kernel
    blas_dtypes: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)

    @property
    def rows_wanted(self) -> bool:
        """Row segments run only in a Python driver with lanes."""
        return self.uses_lanes and not self.njit_driver


def choose_calls(ctx: CallContext) -> list[Buffer | Call]:
    """The driver's statements: each kernel's buffers, then its call; parameter copies last."""
    position = {value: index for index, value in enumerate(ctx.lp.ops)}
    statements: list[Buffer | Call] = []
    for kernel in ctx.plan.kernels:
        for member in kernel.computed:
            K.check_kernel_available(ctx.lp.ops[member].op, ctx.lp.ops[member].describe())
        nodes = tuple(sorted(kernel.computed, key=position.__getitem__))
        comment = ", ".join(ctx.lp.ops[i].describe() for i in nodes)
        statements += kernel_buffers(ctx.lp, ctx.memory, ctx.names, kernel, comment)
        if kernel.kind == "alias" or kernel.root in ctx.memory.placed:
            continue
        statements += _kernel_calls(ctx, kernel, nodes, comment)
    statements += _parameter_copies(ctx)
    return statements


def gemm_work(lp: LoweredProgram, kernel: Kernel) -> int:
    """Multiply-adds of a product kernel, symbols counted as 1."""
    op = lp.ops[kernel.root]
    a = lp.ops[op.inputs[0]]
    return size_key(op.shape)[0] * size_key(a.shape[-1:])[0]


def direct_matmul(lp: LoweredProgram, plan: FusionPlan, kernel: Kernel) -> bool:
    """A product that is one 2-D BLAS call (an N-d left operand's rows merged)."""
    op = lp.ops[kernel.root]
    a, b = (lp.ops[i] for i in op.inputs)
    if a.ndim == 2 and b.ndim == 2:
        return True
    return b.ndim == 2 and a.id not in plan.transposed_views


def _kernel_calls(ctx: CallContext, kernel: Kernel, nodes: tuple[int, ...], comment: str
                  ) -> list[Call]:
    op = ctx.lp.ops[kernel.root]
    if kernel.kind == "matmul" and direct_matmul(ctx.lp, ctx.plan, kernel):
        return [_product(ctx, kernel, nodes, comment, 1.0, 0.0)]
    if kernel.kind == "matmul_acc":
        calls = []
        c = op.inputs[2]
        if kernel.root not in ctx.memory.in_place:  # the accumulator starts as a copy of c
            calls.append(_copy(ctx, c, kernel.root, nodes, comment))
        calls.append(_product(ctx, kernel, nodes, comment, op.attrs["alpha"], 1.0))
        return calls
    return [_loop_nest(ctx, kernel, nodes, comment)]


def _split(ctx: CallContext, kernel: Kernel) -> bool:
    """Products of at least L.LANE_MIN_WORK multiply-adds (or of symbolic size) are split
    between this thread and the lane helper (lanes.py)."""
    return ctx.uses_lanes and (
        gemm_work(ctx.lp, kernel) >= L.LANE_MIN_WORK
        or any(not isinstance(d, int) for d in ctx.lp.ops[kernel.root].shape))


def gemm_name(ctx: CallContext, dtype: np.dtype, accumulate: bool = False) -> str:
    """The BLAS helper for ``dtype`` (recorded so the module defines it)."""
    if not ctx.uses_blas:
        if accumulate:
            raise CompileError("matmul_acc needs numpy's BLAS (see blas.py)")
        ctx.blas_dtypes.add("any")
        return "matmul_2d"
    ctx.blas_dtypes.add(dtype.name)
    return f"gemm{'_acc' if accumulate else ''}_{DTYPE_SUFFIX[dtype.name]}"


def _product(ctx: CallContext, kernel: Kernel, nodes: tuple[int, ...], comment: str,
             alpha: float, beta: float) -> Call:
    """``out = alpha * a @ b + beta * out`` as one BLAS call (split between lanes, the
    plain helper, or numpy's ``np.dot`` from a Python driver)."""
    op = ctx.lp.ops[kernel.root]
    a, b = op.inputs[:2]
    scalars = (Arg.scalar(alpha, op.dtype), Arg.scalar(beta, op.dtype))
    accumulate = kernel.kind == "matmul_acc"
    if _split(ctx, kernel):
        gemm_name(ctx, op.dtype)
        args = (*[_split_operand(ctx, v) for v in (a, b)], _rows_view(ctx, kernel.root),
                *scalars, Arg.special("lanes"))
        matrix: ArrayType = (op.dtype.name, 2, "C")
        types: tuple[ValueType, ...] = (matrix, "int64", matrix, "int64", matrix,
                                        op.dtype.name, op.dtype.name, ("int64", 2, "C"))
        # lanes/code.py: one function, compiled once per dtype
        call = Call("gemm_split", "gemm_split", args, nodes, comment, types)
        return _with_row(ctx, call, _gemm_row_call(ctx, kernel, alpha, beta, comment))
    operands = (_rows_view(ctx, a), Arg.array(b), _rows_view(ctx, kernel.root))
    if accumulate:
        helper = gemm_name(ctx, op.dtype, accumulate=True)
        types = (_type(ctx, a), _type(ctx, b), _type(ctx, kernel.root), op.dtype.name,
                 op.dtype.name)
        return Call("gemm_acc", helper, (*operands, *scalars), nodes, comment, types)
    if not ctx.njit_driver:
        return Call("dot", "np.dot", operands, nodes, comment)
    return Call("gemm", gemm_name(ctx, op.dtype), operands, nodes, comment)


def _rows_view(ctx: CallContext, value: int) -> Arg:
    """A product operand or output: an N-d one with its leading axes merged into rows."""
    return Arg.array(value, "matrix" if ctx.lp.ops[value].ndim > 2 else "whole")


def _split_operand(ctx: CallContext, value: int) -> Arg:
    """A ``gemm_split`` operand: a transposed one as its C-ordered base with flag 1."""
    if value in ctx.plan.transposed_views:
        return replace(Arg.array(ctx.lp.ops[value].inputs[0]), flag=1)
    return replace(_rows_view(ctx, value), flag=0)


def _copy(ctx: CallContext, source: int, target: int, nodes: tuple[int, ...], comment: str
          ) -> Call:
    types = (_type(ctx, source, flat=True), _type(ctx, target, flat=True))
    return Call("copy", "copy_flat", (Arg.array(source, "flat"), Arg.array(target, "flat")),
                nodes, comment, types)


def _parameter_copies(ctx: CallContext) -> list[Call]:
    """New parameter values land last: every kernel before read the old ones."""
    copies = []
    for param, value in ctx.lp.updates:
        if ctx.lp.ops[ctx.memory.base(value)].op == "parameter":
            continue  # written in place, or a parameter's old value the runtime copies
        copies.append(_copy(ctx, value, param, (),
                            f"update {ctx.lp.ops[param].describe()}"))
    return copies


def _type(ctx: CallContext, value: int, flat: bool = False) -> ArrayType:
    """An argument's type for eager compilation. A transposed view is typed "A": the ``.T``
    of a C array with an axis of one (a batch of one, a layer one wide) is C- and
    F-contiguous at once, and numba then types it C, so an "F" signature would not match."""
    op = ctx.lp.ops[value]
    layout = "A" if value in ctx.plan.transposed_views else "C"
    return (op.dtype.name, 1 if flat else op.ndim, layout)


def _kernel_text(ctx: CallContext, kernel: Kernel) -> K.KernelText:
    op = ctx.lp.ops[kernel.root]
    if kernel.kind == "loop":
        return K.loop_kernel(ctx.lp, kernel, ctx.memory.in_place)
    if kernel.kind == "matmul":
        return K.batched_matmul_kernel(ctx.lp, kernel, gemm_name(ctx, op.dtype))
    if kernel.kind == "sparse_adam_step" and kernel.inlined:  # sparse_kernels.fuse_lazy_adam
        return lazy_adam_kernel(ctx.lp, kernel)
    if kernel.kind in SPARSE_UPDATE_OPS:
        return sparse_update_kernel(ctx.lp, kernel, kernel.root in ctx.memory.in_place)
    writer = _WRITERS.get(kernel.kind)
    if writer is None:
        raise CompileError(f"the numba backend cannot compile {op.describe()} ({op.op})")
    return writer(ctx.lp, kernel)


def _loop_nest(ctx: CallContext, kernel: Kernel, nodes: tuple[int, ...], comment: str) -> Call:
    """A call of the kernel's loop-nest function (one function per distinct text)."""
    text = _kernel_text(ctx, kernel)
    ctx.functions |= text.functions
    key = text.code_key()
    if key not in ctx.kernels:
        ctx.kernels[key] = KernelDef(f"k{len(ctx.kernels)}", text, comment)
    name = ctx.kernels[key].name
    writes = [kernel.root] if text.writes is None else text.writes
    values = [*text.reads, *writes]
    flat = [text.flat or (k in text.flat_args and v not in ctx.plan.transposed_views)
            for k, v in enumerate(values)]
    args = [Arg.array(v, "flat" if f else "whole") for v, f in zip(values, flat, strict=True)]
    types: list[ValueType] = [_type(ctx, v, f) for v, f in zip(values, flat, strict=True)]
    if text.uses_scratch:
        args.append(Arg.special("scratch"))
        types.append(("float64", 1, "C"))
    args += [Arg.size(extent) for extent in text.extents]
    types += ["int64"] * len(text.extents)
    args += [Arg.scalar(number, np.dtype(dtype)) for number, dtype in text.scalars]
    types += [dtype for _, dtype in text.scalars]
    if text.uses_dims:
        args.append(Arg.special("dims"))
        types.append(("int64", 1, "C"))
    call = Call("kernel", name, tuple(args), nodes, comment, tuple(types))
    return _with_row(ctx, call, _kernel_row_call(ctx, kernel, name, text, writes, comment))


# ---------------------------------------------------------------- row-wise calls (rows.py)


def _with_row(ctx: CallContext, call: Call, row: R.RowCall | None) -> Call:
    return replace(call, row=row) if ctx.rows_wanted and row is not None else call


def _row_arg(ctx: CallContext, value: int, role: str | None, rows: int, written: bool = False,
             shape: tuple | None = None) -> R.RowArg | None:
    """``value`` as an argument of a call over ``rows`` rows (None: not row-wise)."""
    op = ctx.lp.ops[value]
    if role is None:
        return None
    given = tuple(op.shape) if shape is None else shape
    if value in ctx.plan.transposed_views or not all(isinstance(d, int) for d in given):
        return None
    shape = tuple(int(d) for d in given)
    if role != "whole" and (not shape or shape[0] != rows):
        return None
    base = ctx.memory.base(value)
    slot = ctx.memory.slot_of.get(base)
    arena = ctx.arena_of_slot[slot] if slot is not None else None
    name = ctx.names[ctx.memory.in_place.get(value, value)]  # in place: the parameter's
    return R.RowArg(name, value, op.dtype.name, shape, role, written, arena,
                    view_shape=tuple(op.shape))


def _gemm_row_call(ctx: CallContext, kernel: Kernel, alpha: float, beta: float,
                   comment: str) -> R.RowCall | None:
    """A split product as row-wise work: rows of ``a`` and of the output, ``b`` whole."""
    from graphcomp.backends.numba.render import row_template

    op = ctx.lp.ops[kernel.root]
    a, b = op.inputs[:2]
    if ctx.lp.ops[a].ndim != 2 or op.ndim != 2 or not isinstance(op.shape[0], int):
        return None
    rows = op.shape[0]
    if b in ctx.plan.transposed_views:
        b_arg = _row_arg(ctx, ctx.lp.ops[b].inputs[0], "whole", rows)
        b_arg = None if b_arg is None else replace(b_arg, transposed=True)
    else:
        b_arg = _row_arg(ctx, b, "whole", rows)
    args = (_row_arg(ctx, a, "rows", rows), b_arg, _row_arg(ctx, kernel.root, "rows", rows, True))
    if any(arg is None for arg in args):
        return None
    helper = f"gemm_acc_{DTYPE_SUFFIX[op.dtype.name]}"
    scalars = (Arg.scalar(alpha, op.dtype), Arg.scalar(beta, op.dtype))
    return R.RowCall(row_template(helper, 3, scalars), args, rows, comment)  # type: ignore[arg-type]


def _kernel_row_call(ctx: CallContext, kernel: Kernel, name: str, text: K.KernelText,
                     writes: list[int], comment: str) -> R.RowCall | None:
    """An elementwise or flat-loop kernel as row-wise work (see ``KernelText.row_roles``)."""
    from graphcomp.backends.numba.render import row_template

    if (kernel.kind not in ("elementwise", "loop") or text.parallel or text.uses_scratch
            or text.uses_dims or text.scalars):
        return None
    if kernel.kind == "elementwise" and (text.row_roles is None or None in text.row_roles):
        return None
    shape = tuple(loop_shape(ctx.lp, kernel) if kernel.kind == "loop"
                  else ctx.lp.ops[kernel.root].shape)
    if not shape or not all(isinstance(d, int) for d in shape):
        return None
    rows = shape[0]
    if kernel.kind == "loop":
        if text.extents != [shape]:
            return None
        args = [_row_arg(ctx, v, "flat_rows", rows, v in writes, shape)
                for v in [*text.reads, *writes]]
    else:
        if text.extents or text.row_roles is None:
            return None
        args = [_row_arg(ctx, v, role, rows)
                for v, role in zip(text.reads, text.row_roles, strict=True)]
        args += [_row_arg(ctx, v, "rows", rows, True) for v in writes]
    if any(arg is None for arg in args):
        return None
    template = row_template(name, len(args), (), element_count=kernel.kind == "loop")
    return R.RowCall(template, tuple(args), rows, comment)  # type: ignore[arg-type]
