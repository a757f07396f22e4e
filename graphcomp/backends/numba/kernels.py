"""Kernel text: one loop-nest function per kernel of the fusion plan.

Every writer returns a ``KernelText``: parameter names, body lines and what the driver must
pass. Kernels take their buffers as arguments and write into ``out``; loop extents come from
``out.shape`` or explicit ``n<k>`` arguments, never from baked-in sizes, so one kernel serves
every layer of the same structure (the codegen deduplicates identical texts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphcomp.backends.numba.expressions import ExpressionWriter, Index, literal
from graphcomp.errors import CompileError
from graphcomp.ops import get_op
from graphcomp.passes.fusion import Kernel, reads_at_own_index
from graphcomp.passes.lowered import LoweredProgram, size_key

# prange measured on the 2-core machine (tanh(a*b+c), 2^22 float32): serial 3.3 ms, prange
# 8.0 ms (numpy 8.4 ms): thread start-up and a busy second core cost more than they save, and
# parfors vectorise worse. So no kernel is parallel below this size (today: none).
PARALLEL_MIN_ELEMENTS = 1 << 40
REDUCE_CHUNK = 1024  # elements per scratch chunk in a vectorised full reduction


@dataclass
class KernelText:
    """A kernel's code, with the values (and extents) a call must pass, in order."""

    params: list[str]
    body: list[tuple[str, str]]  # (line, comment); lines are indented already
    reads: list[int]  # materialised values, in parameter order after the first ones
    flat: bool = False  # the driver passes 1-D views of every buffer
    # Loop extents to pass as n0, n1, ...: each the product of some dims (ints or symbols).
    extents: list[tuple] = field(default_factory=list)
    uses_dims: bool = False
    uses_scratch: bool = False
    parallel: bool = False
    functions: set[str] = field(default_factory=set)
    doc: str = ""

    def code_key(self) -> str:
        """The kernel's code without comments: equal keys compile to the same function."""
        flags = f"{self.parallel}"
        return flags + "|" + ",".join(self.params) + "\n" + "\n".join(line for line, _ in self.body)


class _Reads:
    """Names the materialised buffers a body reads: a0, a1, … in first-read order."""

    def __init__(self, flat: bool, prefix: str = "a") -> None:
        self.flat = flat
        self.prefix = prefix
        self.order: list[int] = []

    def __call__(self, value_id: int, index: Index) -> str:
        if value_id not in self.order:
            self.order.append(value_id)
        name = f"{self.prefix}{self.order.index(value_id)}"
        if self.flat:
            return f"{name}[{index[0] if index else '0'}]"
        return f"{name}[{', '.join(index)}]" if index else f"{name}[()]"


def _loop_vars(n: int) -> Index:
    return tuple(f"i{k}" for k in range(n))


def _is_flat(lp: LoweredProgram, kernel: Kernel, inlined: set[int]) -> bool:
    """True when every buffer is read at the root's own index or at a single element."""
    return reads_at_own_index(lp, kernel)


def _parallel(lp: LoweredProgram, value: int) -> bool:
    known, symbols = size_key(lp.ops[value].shape)
    return not symbols and known >= PARALLEL_MIN_ELEMENTS


def elementwise_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """A fused elementwise loop nest writing ``out`` (flattened when no index mapping)."""
    root = lp.ops[kernel.root]
    inlined = set(kernel.inlined)
    flat = _is_flat(lp, kernel, inlined)
    reads = _Reads(flat)
    functions: set[str] = set()
    writer = ExpressionWriter(lp, inlined, reads, functions, flat=flat)
    parallel = _parallel(lp, kernel.root)
    loop = "prange" if parallel else "range"
    if flat:
        index: Index = ("i",)
        if all(d == 1 for d in root.shape):
            index = ("0",)
        result = writer.value_at(kernel.root, index, force=True)
        head = [("n = out.shape[0]", ""), (f"for i in {loop}(n):", "")] if index == ("i",) else []
        indent = "    " * len(head[1:])
        store = f"out[{index[0]}] = {result}"
    else:
        index = _loop_vars(root.ndim)
        result = writer.value_at(kernel.root, index, force=True)
        extents = [f"n{k}" for k in range(root.ndim)]
        head = [(f"{', '.join(extents)}{',' if root.ndim == 1 else ''} = out.shape", "")]
        for depth, (var, extent) in enumerate(zip(index, extents, strict=True)):
            kind = loop if depth == 0 else "range"
            head.append(("    " * depth + f"for {var} in {kind}({extent}):", ""))
        indent = "    " * root.ndim
        store = f"out[{', '.join(index)}] = {result}"
    body = head + [(indent + line, comment) for line, comment in writer.lines]
    body.append((indent + store, ""))
    params = [f"a{k}" for k in range(len(reads.order))] + ["out"]
    if writer.uses_dims:
        params.append("dims")
    return KernelText(params, body, reads.order, flat=flat, uses_dims=writer.uses_dims,
                      parallel=parallel and (flat or root.ndim > 0), functions=functions)


def reduction_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``reduce_sum``/``reduce_max``/``argmax`` over a fused input expression.

    Kept axes form the outer loops and reduced axes the inner ones; accumulators are float64
    for float data (int64 for integers). A full sum whose input is read without index mapping
    runs in chunks: the fused input is evaluated into a float64 scratch (a loop LLVM
    vectorises, transcendentals included), then added up.
    """
    root = lp.ops[kernel.root]
    source = lp.ops[root.inputs[0]]
    inlined = set(kernel.inlined)
    if root.op == "argmax":
        axes: tuple[int, ...] = (root.attrs["axis"],)
    else:
        axes = tuple(root.attrs["axes"])
    kept = [a for a in range(source.ndim) if a not in axes]
    probe = Kernel(source.id, "elementwise", [i for i in kernel.inlined if i != source.id])
    if (root.op == "reduce_sum" and not kept and source.id in inlined and source.dtype.kind == "f"
            and _is_flat(lp, probe, inlined)):
        return _chunked_sum(lp, kernel, source.id, inlined)

    if (root.op == "reduce_sum" and source.dtype.kind == "f" and kept == [source.ndim - 1]
            and source.ndim >= 2):
        return _column_sum(lp, kernel, source.id, inlined)
    reads = _Reads(False)
    functions: set[str] = set()
    index = _loop_vars(source.ndim)
    keepdims = root.attrs.get("keepdims", False)
    out_index = [("0" if a in axes else index[a]) for a in range(source.ndim)] if keepdims else [
        index[a] for a in kept]
    out_ref = f"out[{', '.join(out_index)}]" if out_index else "out[()]"
    is_float = source.dtype.kind == "f"
    body: list[tuple[str, str]] = []
    depth = 0

    def emit(line: str, comment: str = "") -> None:
        body.append(("    " * depth + line, comment))

    for axis in kept:
        emit(f"for i{axis} in range(n{axis}):")
        depth += 1

    def expression_at(idx: Index) -> ExpressionWriter:
        writer = ExpressionWriter(lp, inlined, reads, functions)
        writer.value_at(source.id, idx, force=source.id in inlined)
        return writer

    if root.op == "argmax":
        axis = axes[0]
        first = expression_at(tuple("0" if a == axis else v for a, v in enumerate(index)))
        for line, comment in first.lines:
            emit(line, comment)
        emit(f"best = {first.lines[-1][0].split(' = ')[0]}")
        emit("best_index = 0")
        emit(f"for i{axis} in range(1, n{axis}):")
        depth += 1
        writer = expression_at(index)
        for line, comment in writer.lines:
            emit(line, comment)
        value = writer.lines[-1][0].split(" = ")[0]
        emit(f"if {value} > best or ({value} != {value} and best == best):")
        emit(f"    best = {value}")
        emit(f"    best_index = i{axis}")
        depth -= 1
        emit(f"{out_ref} = best_index", root.describe())
        uses_dims = first.uses_dims or writer.uses_dims
    else:
        if root.op == "reduce_sum":
            emit("acc = 0.0" if is_float else "acc = 0")
        elif is_float:
            emit("acc = -np.inf")
        else:
            emit(f"acc = {literal(np.iinfo(source.dtype).min, source.dtype)}")
        for axis in axes:
            emit(f"for i{axis} in range(n{axis}):")
            depth += 1
        writer = expression_at(index)
        for line, comment in writer.lines:
            emit(line, comment)
        value = writer.lines[-1][0].split(" = ")[0]
        if root.op == "reduce_sum":
            emit(f"acc += {value}")
        else:
            emit(f"if {value} > acc or {value} != {value}:")
            emit(f"    acc = {value}")
        depth -= len(axes)
        emit(f"{out_ref} = acc", root.describe())
        uses_dims = writer.uses_dims
    params = [f"a{k}" for k in range(len(reads.order))] + ["out"]
    params += [f"n{a}" for a in range(source.ndim)]
    if uses_dims:
        params.append("dims")
    return KernelText(params, body, reads.order, extents=[(d,) for d in source.shape],
                      uses_dims=uses_dims, functions=functions)


def _column_sum(lp: LoweredProgram, kernel: Kernel, source_id: int,
                inlined: set[int]) -> KernelText:
    """Sum over every axis but the last: rows outer, a float64 scratch row inner (contiguous,
    vectorised), in chunks of the last axis."""
    root = lp.ops[kernel.root]
    source = lp.ops[source_id]
    last = source.ndim - 1
    reads = _Reads(False)
    functions: set[str] = set()
    writer = ExpressionWriter(lp, inlined, reads, functions)
    index = _loop_vars(source.ndim)
    value = writer.value_at(source_id, index, force=source_id in inlined)
    out_ref = "out[" + ", ".join(["0"] * (root.ndim - 1) + ["start + j"]) + "]"
    body: list[tuple[str, str]] = [
        (f"for start in range(0, n{last}, {REDUCE_CHUNK}):", ""),
        (f"    m = min({REDUCE_CHUNK}, n{last} - start)", ""),
        ("    for j in range(m):", ""),
        ("        scratch[j] = 0.0", ""),
    ]
    depth = 1
    for axis in range(last):
        body.append(("    " * depth + f"for i{axis} in range(n{axis}):", ""))
        depth += 1
    body.append(("    " * depth + "for j in range(m):", ""))
    depth += 1
    body.append(("    " * depth + f"i{last} = start + j", ""))
    body += [("    " * depth + line, comment) for line, comment in writer.lines]
    body.append(("    " * depth + f"scratch[j] += {value}", ""))
    body += [("    for j in range(m):", ""), (f"        {out_ref} = scratch[j]", root.describe())]
    params = [f"a{k}" for k in range(len(reads.order))] + ["out", "scratch"]
    params += [f"n{a}" for a in range(source.ndim)]
    if writer.uses_dims:
        params.append("dims")
    return KernelText(params, body, reads.order, extents=[(d,) for d in source.shape],
                      uses_dims=writer.uses_dims, uses_scratch=True, functions=functions)


def _chunked_sum(lp: LoweredProgram, kernel: Kernel, source_id: int,
                 inlined: set[int]) -> KernelText:
    root = lp.ops[kernel.root]
    # Chunk views (b0 = a0[start:start + m]) indexed by the loop variable: LLVM then knows the
    # index is in range and vectorises the body; ``a0[start + j]`` kept it scalar (3x slower).
    reads = _Reads(True, prefix="b")
    functions: set[str] = set()
    writer = ExpressionWriter(lp, inlined, reads, functions, flat=True)
    value = writer.value_at(source_id, ("j",), force=True)
    views = [(f"    b{k} = a{k}[start:start + m]", "") for k in range(len(reads.order))]
    body: list[tuple[str, str]] = [
        ("total = 0.0", ""),
        (f"for start in range(0, n0, {REDUCE_CHUNK}):", ""),
        (f"    m = min({REDUCE_CHUNK}, n0 - start)", ""),
        *views,
        ("    for j in range(m):", ""),
    ]
    body += [("        " + line, comment) for line, comment in writer.lines]
    partial = [f"s{k}" for k in range(8)]
    body += [
        (f"        scratch[j] = {value}", ""),
        ("    # Eight partial sums hide the add latency; each adds in a fixed order.", ""),
        (f"    {' = '.join(partial)} = 0.0", ""),
        ("    for j in range(0, m - 7, 8):", ""),
        *[(f"        s{k} += scratch[j + {k}]" if k else "        s0 += scratch[j]", "")
          for k in range(8)],
        ("    for j in range(m - m % 8, m):", ""),
        ("        s0 += scratch[j]", ""),
        ("    total += ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))", ""),
        ("out[0] = total", root.describe()),
    ]
    params = [f"a{k}" for k in range(len(reads.order))] + ["out", "scratch", "n0"]
    if writer.uses_dims:
        params.append("dims")
    extent = tuple(lp.ops[source_id].shape)
    return KernelText(params, body, reads.order, flat=True, extents=[extent],
                      uses_dims=writer.uses_dims, uses_scratch=True, functions=functions)


# ---------------------------------------------------------------- non-fused ops


def _nest(shape_vars: list[str], extents: list[str], depth: int = 0) -> list[str]:
    return ["    " * (depth + k) + f"for {v} in range({n}):"
            for k, (v, n) in enumerate(zip(shape_vars, extents, strict=True))]


def pad_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Fill ``out`` with the pad value, then place ``x`` at stride ``interior + 1``."""
    op = lp.ops[kernel.root]
    x = lp.ops[op.inputs[0]]
    r = x.ndim
    fill = literal(op.attrs["value"], op.dtype)
    idx = [f"i{k}" for k in range(r)]
    target = [
        _affine_text(lo, interior + 1, v)
        for lo, interior, v in zip(op.attrs["lo"], op.attrs["interior"], idx, strict=True)
    ]
    body = [("flat = out.reshape(out.size)", ""), ("for i in range(flat.shape[0]):", ""),
            (f"    flat[i] = {fill}", "")]
    if r == 0:
        body.append(("out[()] = a0[()]", op.describe()))
    else:
        extents = [f"a0.shape[{k}]" for k in range(r)]
        body += [(line, "") for line in _nest(idx, extents)]
        store = f"out[{', '.join(target)}] = a0[{', '.join(idx)}]"
        body.append(("    " * r + store, op.describe()))
    return KernelText(["a0", "out"], body, [x.id])


def _affine_text(start: int, step: int, var: str) -> str:
    term = var if step == 1 else f"{step} * {var}"
    return term if start == 0 else f"{start} + {term}"


def concatenate_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Copy each input into its range of ``out`` along the axis."""
    op = lp.ops[kernel.root]
    axis = op.attrs["axis"]
    r = op.ndim
    body: list[tuple[str, str]] = []
    offset = 0
    names = []
    for k, value in enumerate(op.inputs):
        name = f"a{k}"
        names.append(name)
        idx = [f"i{j}" for j in range(r)]
        target = list(idx)
        target[axis] = f"{offset} + i{axis}" if offset else f"i{axis}"
        extents = [f"{name}.shape[{j}]" for j in range(r)]
        body += [(line, "") for line in _nest(idx, extents)]
        body.append(("    " * r + f"out[{', '.join(target)}] = {name}[{', '.join(idx)}]",
                     op.describe() if k == 0 else ""))
        size = lp.ops[value].shape[axis]
        offset += size
    return KernelText(names + ["out"], body, list(op.inputs))


def _checked_index(pad: str, index_vars: list[str], message: str) -> list[tuple[str, str]]:
    """Lines reading index ``k`` from ``a1``, wrapping negatives and raising when out of range
    (``size`` is the indexed axis' length, set by the caller)."""
    idx_ref = f"a1[{', '.join(index_vars)}]" if index_vars else "a1[()]"
    return [
        (pad + f"k = {idx_ref}", ""),
        (pad + "if k < 0:", ""),
        (pad + "    k += size", ""),
        (pad + "if k < 0 or k >= size:", ""),
        (pad + f"    raise InputError({message!r})", ""),
    ]


def take_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Gather along an axis, with bounds checks (negative indices count from the end)."""
    op = lp.ops[kernel.root]
    x, indices = lp.ops[op.inputs[0]], lp.ops[op.inputs[1]]
    axis = op.attrs["axis"]
    pre = [f"i{k}" for k in range(axis)]
    mid = [f"j{k}" for k in range(indices.ndim)]
    post = [f"i{k}" for k in range(axis + 1, x.ndim)]
    out_idx = pre + mid + post
    extents = [f"out.shape[{k}]" for k in range(len(out_idx))]
    body = [(f"size = a0.shape[{axis}]", "")]
    body += [(line, "") for line in _nest(out_idx, extents)]
    pad = "    " * len(out_idx)
    body += _checked_index(pad, mid, "take: an index is out of range for the gathered axis")
    body.append((pad + f"out[{', '.join(out_idx) or '()'}] = a0[{', '.join(pre + ['k'] + post)}]",
                 op.describe()))
    return KernelText(["a0", "a1", "out"], body, [x.id, indices.id])


def scatter_add_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``out = base`` then add each update at its index (repeated indices accumulate)."""
    op = lp.ops[kernel.root]
    base, indices, updates = (lp.ops[i] for i in op.inputs)
    axis = op.attrs["axis"]
    pre = [f"i{k}" for k in range(axis)]
    mid = [f"j{k}" for k in range(indices.ndim)]
    post = [f"i{k}" for k in range(axis + 1, base.ndim)]
    upd_idx = pre + mid + post
    body = [
        ("flat_out = out.reshape(out.size)", ""),
        ("flat_base = a0.reshape(a0.size)", ""),
        ("for i in range(flat_out.shape[0]):", ""),
        ("    flat_out[i] = flat_base[i]", ""),
        (f"size = a0.shape[{axis}]", ""),
    ]
    body += [(line, "") for line in _nest(upd_idx, [f"a2.shape[{k}]" for k in range(len(upd_idx))])]
    pad = "    " * len(upd_idx)
    body += _checked_index(pad, mid, "scatter_add: an index is out of range for the axis")
    body.append((pad + f"out[{', '.join(pre + ['k'] + post)}] += a2[{', '.join(upd_idx) or '()'}]",
                 op.describe()))
    return KernelText(["a0", "a1", "a2", "out"], body, [base.id, indices.id, updates.id])


def batched_matmul_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """A loop of 2-D BLAS products over the (broadcast) batch axes."""
    op = lp.ops[kernel.root]
    a, b = (lp.ops[i] for i in op.inputs)
    batch = op.ndim - 2
    idx = [f"i{k}" for k in range(batch)]
    a_idx = _batch_index(idx, a.shape[:-2], op.shape[:-2])
    b_idx = _batch_index(idx, b.shape[:-2], op.shape[:-2])
    body = [(line, "") for line in _nest(idx, [f"out.shape[{k}]" for k in range(batch)])]
    pad = "    " * batch
    a_ref = f"a0[{', '.join(a_idx)}]" if a_idx else "a0"
    b_ref = f"a1[{', '.join(b_idx)}]" if b_idx else "a1"
    body.append((pad + f"np.dot({a_ref}, {b_ref}, out[{', '.join(idx)}])", op.describe()))
    return KernelText(["a0", "a1", "out"], body, [a.id, b.id])


def _batch_index(idx: list[str], shape: tuple, out_shape: tuple) -> list[str]:
    offset = len(out_shape) - len(shape)
    return [("0" if d == 1 and out_shape[k + offset] != 1 else idx[k + offset])
            for k, d in enumerate(shape)]


def check_kernel_available(op_name: str, label: str) -> None:
    """``CompileError`` naming the op when its registry entry has no numba kernel."""
    if op_name != "copy" and "numba" not in get_op(op_name).kernels:
        raise CompileError(
            f"op {op_name!r} ({label}) has no numba kernel; compile with backend='numpy' or "
            f"add kernels['numba'] to its registry entry"
        )
