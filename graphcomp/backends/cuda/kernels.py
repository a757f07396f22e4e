"""CUDA kernel text: fused elementwise kernels, block reductions and a tiled matrix product.

Each writer returns a ``DeviceKernel``: the parameter names and body lines of one
``@cuda.jit`` function (``render.py`` writes the ``def``), the values it reads in parameter
order, and how it is launched. Kernel texts hold no sizes: loop extents are arguments, so
one kernel serves every binding of the symbolic dims and equal kernels are compiled once.

Launches: ``elements``: a grid-stride loop over the output's elements (one thread each);
``rows``: one block per output element of a reduction, ``REDUCE_THREADS`` threads adding
strided parts of it, then a tree in shared memory (the order depends only on the sizes, so
the result is the same on every run); ``tiles``: ``TILE`` x ``TILE`` blocks of the product.

Buffers of rank 0 are passed as one-element 1-D arrays (read as ``a0[0]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from graphcomp.backends.cuda.op_table import ROUNDING_BIAS, template_for
from graphcomp.backends.numba.expressions import ExpressionWriter, Index, literal
from graphcomp.passes.fusion import Kernel
from graphcomp.passes.lowered import Dim, LOp, LoweredProgram

Launch = Literal["elements", "rows", "tiles"]
REDUCE_THREADS = 128  # threads per block of a reduction (a power of two)
TILE = 16  # the tiled product's block edge


@dataclass(frozen=True)
class DeviceKernel:
    """One kernel's code and how a call passes its arguments and launches it.

    ``reads``: the buffers passed as ``a0, a1, ...``, then ``out``; ``extents``: shapes
    whose sizes follow as ``n0, n1, ...`` (one per axis); ``launch_shape``: the shape
    whose elements (``elements``) or output elements (``rows``) the grid covers."""

    params: tuple[str, ...]
    body: tuple[str, ...]
    reads: tuple[int, ...]
    launch: Launch
    extents: tuple[Dim, ...]
    launch_shape: tuple[Dim, ...]
    uses_dims: bool = False
    comment: str = ""
    transposed: tuple[bool, bool] = (False, False)  # tiled product: operands read as .T
    block: int = 0  # threads per block of a reduction, or the tile edge of a product

    def code_key(self) -> str:
        """The code without comments (they name the nodes of one use): equal keys share one
        compiled kernel."""
        return ",".join(self.params) + "\n" + "\n".join(
            line.split("  # ", 1)[0] for line in self.body)


class _Reads:
    """Names the buffers a body reads ``a0, a1, ...`` in first-read order."""

    def __init__(self) -> None:
        self.order: list[int] = []

    def __call__(self, value_id: int, index: Index) -> str:
        if value_id not in self.order:
            self.order.append(value_id)
        name = f"a{self.order.index(value_id)}"
        return f"{name}[{', '.join(index)}]" if index else f"{name}[0]"


class CudaExpressionWriter(ExpressionWriter):
    """The numba backend's expression writer with the CUDA op templates (``op_table.py``)."""

    def _elementwise(self, op: LOp, index: Index) -> str:
        template = template_for(op.op, op.describe())
        if op.op == "cast" and op.dtype == np.dtype("bool"):
            template = "({0} != 0)"
        args = [self.value_at(i, self._operand_index(index, self.lp.ops[i].shape, op.shape))
                for i in op.inputs]
        code = template.format(*args, to=op.dtype.name, dtype=op.dtype.name,
                               big=ROUNDING_BIAS.get(op.dtype.name, 0.0))
        return self._temp(code, op.describe())


def _unravel(var: str, extents: list[str], names: list[str]) -> list[str]:
    """Lines splitting flat index ``var`` into ``names`` over ``extents`` (C order)."""
    lines, rest = [], var
    for k in range(len(names) - 1, 0, -1):
        lines.append(f"{names[k]} = {rest} % {extents[k]}")
        lines.append(f"r{k} = {rest} // {extents[k]}")
        rest = f"r{k}"
    if names:
        lines.append(f"{names[0]} = {rest}")
    return lines


def _body_lines(writer: ExpressionWriter, indent: str) -> list[str]:
    return [f"{indent}{line}  # {comment}" if comment else indent + line
            for line, comment in writer.lines]


def elementwise_kernel(lp: LoweredProgram, kernel: Kernel) -> DeviceKernel:
    """A fused chain: each thread computes output elements through views and broadcasts."""
    root = lp.ops[kernel.root]
    reads = _Reads()
    writer = CudaExpressionWriter(lp, set(kernel.inlined), reads, set())
    index = tuple(f"i{k}" for k in range(root.ndim))
    result = writer.value_at(kernel.root, index, force=True)
    extents = [f"n{k}" for k in range(root.ndim)]
    body = ["start = cuda.grid(1)", "stride = cuda.gridsize(1)",
            "for t in range(start, total, stride):"]
    body += ["    " + line for line in _unravel("t", extents, list(index))]
    body += _body_lines(writer, "    ")
    body.append(f"    out[{', '.join(index) or '0'}] = {result}")
    params = [f"a{k}" for k in range(len(reads.order))] + ["out", *extents, "total"]
    if writer.uses_dims:
        params.append("dims")
    return DeviceKernel(tuple(params), tuple(body), tuple(reads.order), "elements",
                        root.shape, root.shape, writer.uses_dims, root.describe())


def reduction_kernel(lp: LoweredProgram, kernel: Kernel,
                     threads: int = REDUCE_THREADS) -> DeviceKernel:
    """``reduce_sum``/``reduce_prod``/``reduce_max``/``argmax`` of a fused input: one block
    per output element of ``threads`` threads (a power of two), float64 accumulators for float
    data (int64 for integers)."""
    root = lp.ops[kernel.root]
    source = lp.ops[root.inputs[0]]
    axes = (root.attrs["axis"],) if root.op == "argmax" else tuple(root.attrs["axes"])
    kept = [a for a in range(source.ndim) if a not in axes]
    reads = _Reads()
    writer = CudaExpressionWriter(lp, set(kernel.inlined), reads, set())
    index = tuple(f"i{k}" for k in range(source.ndim))
    value = writer.value_at(source.id, index, force=source.id in kernel.inlined)
    n = [f"n{k}" for k in range(source.ndim)]
    acc_type = "float64" if source.dtype.kind == "f" else "int64"
    body = ["tid = cuda.threadIdx.x",
            f"vals = cuda.shared.array({threads}, numba.{acc_type})"]
    if root.op == "argmax":
        body.append(f"idxs = cuda.shared.array({threads}, numba.int64)")
    body += ["for o in range(cuda.blockIdx.x, outs, cuda.gridDim.x):"]
    body += ["    " + line for line in _unravel("o", [n[a] for a in kept],
                                                [index[a] for a in kept])]
    body += ["    " + line for line in _start(root, source, acc_type)]
    body += [f"    for r in range(tid, inner, {threads}):"]
    body += ["        " + line for line in _unravel("r", [n[a] for a in axes],
                                                    [index[a] for a in axes])]
    body += _body_lines(writer, "        ")
    body += ["        " + line for line in _accumulate(root.op, value, "r")]
    body += ["    vals[tid] = acc"] + (["    idxs[tid] = best"] if root.op == "argmax" else [])
    body += ["    cuda.syncthreads()", f"    half = {threads // 2}",
             "    while half > 0:", "        if tid < half:"]
    body += ["            " + line for line in _combine(root.op)]
    body += ["        cuda.syncthreads()", "        half //= 2", "    if tid == 0:",
             f"        out[o] = {'idxs[0]' if root.op == 'argmax' else 'vals[0]'}",
             "    cuda.syncthreads()"]
    params = [f"a{k}" for k in range(len(reads.order))] + ["out", *n, "outs", "inner"]
    if writer.uses_dims:
        params.append("dims")
    return DeviceKernel(tuple(params), tuple(body), tuple(reads.order), "rows",
                        source.shape, tuple(source.shape[a] for a in kept), writer.uses_dims,
                        root.describe(), block=threads)


def _start(root: LOp, source: LOp, acc_type: str) -> list[str]:
    if root.op == "reduce_sum":
        return ["acc = 0.0" if acc_type == "float64" else "acc = 0"]
    if root.op == "reduce_prod":
        return ["acc = 1.0" if acc_type == "float64" else "acc = 1"]
    low = "-np.inf" if source.dtype.kind == "f" else str(np.iinfo(source.dtype).min)
    start = [f"acc = numba.{acc_type}({low})"]
    return [*start, "best = -1"] if root.op == "argmax" else start


def _accumulate(op: str, value: str, position: str) -> list[str]:
    if op == "reduce_sum":
        return [f"acc += {value}"]
    if op == "reduce_prod":
        return [f"acc *= {value}"]
    if op == "reduce_max":
        return [f"if {value} > acc or {value} != {value}:", f"    acc = {value}"]
    # argmax: the first maximum of this thread's (increasing) positions; a NaN wins
    return [f"if best < 0 or (acc == acc and ({value} > acc or {value} != {value})):",
            f"    acc = {value}", f"    best = {position}"]


def _combine(op: str) -> list[str]:
    """Fold ``vals[tid + half]`` into ``vals[tid]`` (and the argmax positions)."""
    if op == "reduce_sum":
        return ["vals[tid] += vals[tid + half]"]
    if op == "reduce_prod":
        return ["vals[tid] *= vals[tid + half]"]
    if op == "reduce_max":
        return ["b = vals[tid + half]", "if b > vals[tid] or b != b:", "    vals[tid] = b"]
    return ["a = vals[tid]", "b = vals[tid + half]", "ia = idxs[tid]", "ib = idxs[tid + half]",
            "if ib >= 0 and (ia < 0 or (a == a and (b != b or b > a or (b == a and ib < ia)))"
            " or (a != a and b != b and ib < ia)):",
            "    vals[tid] = b", "    idxs[tid] = ib"]


def matmul_kernel(lp: LoweredProgram, kernel: Kernel, transposed: set[int],
                  tile: int = TILE) -> DeviceKernel:
    """``out = a @ b`` for 2-D operands in ``tile`` x ``tile`` shared-memory tiles; an
    operand that is a free transposed view is read from its base buffer as ``.T``."""
    root = lp.ops[kernel.root]
    flags = (root.inputs[0] in transposed, root.inputs[1] in transposed)
    reads = tuple(lp.ops[v].inputs[0] if v in transposed else v for v in root.inputs)
    acc = "float64" if root.dtype == np.dtype("float64") else "float32"
    a_at = "a0[kk, i]" if flags[0] else "a0[i, kk]"
    b_at = "a1[j, kk]" if flags[1] else "a1[kk, j]"
    zero = literal(0.0, root.dtype)
    body = [f"ta = cuda.shared.array(({tile}, {tile}), numba.{acc})",
            f"tb = cuda.shared.array(({tile}, {tile}), numba.{acc})",
            "tx = cuda.threadIdx.x", "ty = cuda.threadIdx.y",
            f"i = cuda.blockIdx.y * {tile} + ty", f"j = cuda.blockIdx.x * {tile} + tx",
            f"acc = {zero}", f"for k0 in range(0, n1, {tile}):",
            "    kk = k0 + tx", f"    ta[ty, tx] = {a_at} if i < n0 and kk < n1 else {zero}",
            "    kk = k0 + ty", f"    tb[ty, tx] = {b_at} if kk < n1 and j < n2 else {zero}",
            "    cuda.syncthreads()", f"    for k in range({tile}):",
            "        acc += ta[ty, k] * tb[k, tx]", "    cuda.syncthreads()",
            "if i < n0 and j < n2:", "    out[i, j] = acc"]
    m, k = lp.ops[root.inputs[0]].shape
    extents = (m, k, lp.ops[root.inputs[1]].shape[1])
    return DeviceKernel(("a0", "a1", "out", "n0", "n1", "n2"), tuple(body), reads, "tiles",
                        extents, root.shape, False, root.describe(), flags, tile)


@dataclass
class KernelSet:
    """Distinct kernels by code, each with its generated name."""

    names: dict[str, str] = field(default_factory=dict)  # code key -> name
    kernels: dict[str, DeviceKernel] = field(default_factory=dict)  # name -> kernel

    def add(self, kernel: DeviceKernel, hint: str) -> str:
        key = kernel.code_key()
        if key not in self.names:
            name = f"k{len(self.names)}_{hint}"
            self.names[key] = name
            self.kernels[name] = kernel
        return self.names[key]
