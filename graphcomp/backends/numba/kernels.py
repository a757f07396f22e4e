"""Kernel text: one loop-nest function per kernel of the fusion plan.

Every writer returns a ``KernelText``: parameter names, body lines and what the driver must
pass. Kernels take their buffers as arguments and write into ``out``; loop extents come from
``out.shape`` or explicit ``n<k>`` arguments, never from baked-in sizes, so one kernel serves
every layer of the same structure (the codegen deduplicates identical texts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from graphcomp.backends.numba.expressions import ExpressionWriter, Index, literal
from graphcomp.backends.numba.op_table import kernel_for
from graphcomp.passes.fusion import MAX_LOOP_SUMS, Kernel, loop_shape
from graphcomp.passes.lowered import BACKEND_OPS, LoweredProgram, size_key

# prange over the elements of a loop nest, measured on the 2-core machine (tanh(a*b+c), 2^22
# float32): serial 3.3 ms, prange 8.0 ms (numpy 8.4 ms): parfors vectorise worse. So nested
# elementwise kernels stay serial (the threshold is never reached); flat ``loop`` kernels run
# contiguous blocks in parallel instead (LOOP_PARALLEL_MIN_ELEMENTS).
PARALLEL_MIN_ELEMENTS = 1 << 40
REDUCE_CHUNK = 1024  # elements per scratch chunk in a vectorised full reduction
# A flat loop over a static shape of at least this many elements runs as blocks of >= this
# size on numba's threads. Starting the parallel loop costs ~60 us here (sleeping OpenMP
# threads wake up: a 64-element parallel loop took 62 us against 0.3 us serial), so only
# loops whose serial time is well above that qualify: 2^19 elements are 0.1-2.5 ms of work.
# The block count depends only on the size, never on the thread count, so sums add up in the
# same order on every machine. Loops over symbolic shapes stay serial.
LOOP_PARALLEL_MIN_ELEMENTS = 1 << 19
LOOP_BLOCK_MIN_ELEMENTS = LOOP_PARALLEL_MIN_ELEMENTS // 2  # so a parallel loop has >= 2 blocks
LOOP_MAX_BLOCKS = 16
# The scratch vector the runtime passes: per block and per sum a chunk, then one partial sum
# per block and sum.
SCRATCH_SIZE = LOOP_MAX_BLOCKS * MAX_LOOP_SUMS * (REDUCE_CHUNK + 1)
# Gathers and row updates hint the rows this many ids ahead into the caches (prefetch.py):
# 4, 8 and 16 did alike on 512-byte rows of a 51 MB table (docs/performance.md, "word2vec").
PREFETCH_AHEAD = 8
CACHE_LINE_BYTES = 64


@dataclass
class KernelText:
    """A kernel's code, with the values (and extents) a call must pass, in order."""

    params: list[str]
    body: list[tuple[str, str]]  # (line, comment); lines are indented already
    reads: list[int]  # materialised values, in parameter order after the first ones
    flat: bool = False  # the driver passes 1-D views of every buffer
    # Positions in reads + writes passed as 1-D views although ``flat`` is False: operands
    # the kernel reshapes itself (ids, gathered rows), so the ids of a batch [N] and of a
    # batch of windows [N, 6] call one compiled specialisation instead of two.
    flat_args: tuple[int, ...] = ()
    # Loop extents to pass as n0, n1, ...: each the product of some dims (ints or symbols).
    extents: list[tuple] = field(default_factory=list)
    uses_dims: bool = False
    # Typed scalars to pass after the extents, as (number, dtype name): constants that would
    # otherwise make texts, and compiled kernels, differ (a random op's stream number).
    scalars: list[tuple[float, str]] = field(default_factory=list)
    uses_scratch: bool = False
    parallel: bool = False
    functions: set[str] = field(default_factory=set)
    doc: str = ""
    # Values written, passed after the reads (None: the kernel's root, as ``out``).
    writes: list[int] | None = None
    # Per read, how row i0 of the output reads it: "rows" (at its own row i0) or "whole" (i0
    # not used); None when a read mixes both, or for kernels that were not checked (rows.py).
    row_roles: list[str | None] | None = None

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
        self.indices: dict[int, set[Index]] = {}

    def __call__(self, value_id: int, index: Index) -> str:
        if value_id not in self.order:
            self.order.append(value_id)
        self.indices.setdefault(value_id, set()).add(tuple(index))
        name = f"{self.prefix}{self.order.index(value_id)}"
        if self.flat:
            return f"{name}[{index[0] if index else '0'}]"
        return f"{name}[{', '.join(index)}]" if index else f"{name}[()]"


def _loop_vars(n: int) -> Index:
    return tuple(f"i{k}" for k in range(n))


def _parallel(lp: LoweredProgram, value: int) -> bool:
    known, symbols = size_key(lp.ops[value].shape)
    return not symbols and known >= PARALLEL_MIN_ELEMENTS


def elementwise_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """A fused elementwise loop nest writing ``out`` through index mapping (broadcasts,
    transposes, strided slices). Kernels that read every buffer at their own index are
    ``loop`` kernels instead (see ``loop_kernel``)."""
    root = lp.ops[kernel.root]
    inlined = set(kernel.inlined)
    reads = _Reads(False)
    functions: set[str] = set()
    writer = ExpressionWriter(lp, inlined, reads, functions)
    parallel = _parallel(lp, kernel.root)
    loop = "prange" if parallel else "range"
    index = _loop_vars(root.ndim)
    result = writer.value_at(kernel.root, index, force=True)
    extents = [f"n{k}" for k in range(root.ndim)]
    head = [(f"{', '.join(extents)}{',' if root.ndim == 1 else ''} = out.shape", "")
            ] if root.ndim else []
    for depth, (var, extent) in enumerate(zip(index, extents, strict=True)):
        kind = loop if depth == 0 else "range"
        head.append(("    " * depth + f"for {var} in {kind}({extent}):", ""))
    indent = "    " * root.ndim
    store = f"out[{', '.join(index)}] = {result}" if index else f"out[()] = {result}"
    body = head + [(indent + line, comment) for line, comment in writer.lines]
    body.append((indent + store, ""))
    params = [f"a{k}" for k in range(len(reads.order))] + ["out"]
    if writer.uses_dims:
        params.append("dims")
    return KernelText(params, body, reads.order, uses_dims=writer.uses_dims,
                      parallel=parallel and root.ndim > 0, functions=functions,
                      row_roles=[_row_role(reads.indices[v], root.ndim) for v in reads.order])


def _row_role(indices: set[Index], ndim: int) -> str | None:
    """"rows" when every read is at the output's own row (index i0 first, nowhere else),
    "whole" when none uses i0, else None."""
    listed = list(indices)
    uses = [[re.search(r"\bi0\b", part) is not None for part in index] for index in listed]
    if ndim and all(len(index) == ndim and index[0] == "i0" and not any(used[1:])
                    for index, used in zip(listed, uses, strict=True)):
        return "rows"
    if not any(any(used) for used in uses):
        return "whole"
    return None


def reduction_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``reduce_sum``/``reduce_prod``/``reduce_max``/``argmax`` over a fused input expression.

    Kept axes form the outer loops and reduced axes the inner ones; accumulators are float64
    for float data (int64 for integers). (A full float sum of an expression read without
    index mapping is a ``loop`` kernel instead: see ``loop_kernel``.)
    """
    root = lp.ops[kernel.root]
    source = lp.ops[root.inputs[0]]
    inlined = set(kernel.inlined)
    if root.op == "argmax":
        axes: tuple[int, ...] = (root.attrs["axis"],)
    else:
        axes = tuple(root.attrs["axes"])
    kept = [a for a in range(source.ndim) if a not in axes]
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

    def emit_value(idx: Index) -> tuple[str, ExpressionWriter]:
        """Emit the statements of the reduced expression at ``idx``; return its name."""
        writer = ExpressionWriter(lp, inlined, reads, functions)
        value = writer.value_at(source.id, idx, force=source.id in inlined)
        for line, comment in writer.lines:
            emit(line, comment)
        return value, writer

    if root.op == "argmax":
        axis = axes[0]
        start, first = emit_value(tuple("0" if a == axis else v for a, v in enumerate(index)))
        emit(f"best = {start}")
        emit("best_index = 0")
        emit(f"for i{axis} in range(1, n{axis}):")
        depth += 1
        value, writer = emit_value(index)
        emit(f"if {value} > best or ({value} != {value} and best == best):")
        emit(f"    best = {value}")
        emit(f"    best_index = i{axis}")
        depth -= 1
        emit(f"{out_ref} = best_index", root.describe())
        uses_dims = first.uses_dims or writer.uses_dims
    else:
        if root.op in ("reduce_sum", "reduce_prod"):
            unit = 0 if root.op == "reduce_sum" else 1
            emit(f"acc = {unit}.0" if is_float else f"acc = {unit}")
        elif is_float:
            emit("acc = -np.inf")
        else:
            emit(f"acc = {literal(np.iinfo(source.dtype).min, source.dtype)}")
        for axis in axes:
            emit(f"for i{axis} in range(n{axis}):")
            depth += 1
        value, writer = emit_value(index)
        if root.op == "reduce_sum":
            emit(f"acc += {value}")
        elif root.op == "reduce_prod":
            emit(f"acc *= {value}")
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
    # A last axis that fits one chunk is looped over directly: numba then knows the index is
    # non-negative and drops its wraparound test, which otherwise keeps the loop from
    # vectorising (256x128 float32: 3.8 us against 17.4 us through ``start + j``).
    extent = source.shape[last]
    chunked = not (isinstance(extent, int) and extent <= REDUCE_CHUNK)
    start = "start + " if chunked else ""
    out_ref = "out[" + ", ".join(["0"] * (root.ndim - 1) + [f"{start}j"]) + "]"
    body: list[tuple[str, str]] = []
    depth = 0
    if chunked:
        body += [(f"for start in range(0, n{last}, {REDUCE_CHUNK}):", ""),
                 (f"    m = min({REDUCE_CHUNK}, n{last} - start)", "")]
        depth = 1
    pad = "    " * depth
    extent = "m" if chunked else f"n{last}"
    body += [(f"{pad}for j in range({extent}):", ""), (f"{pad}    scratch[j] = 0.0", "")]
    for axis in range(last):
        body.append(("    " * depth + f"for i{axis} in range(n{axis}):", ""))
        depth += 1
    if chunked:
        body.append(("    " * depth + "for j in range(m):", ""))
        depth += 1
        body.append(("    " * depth + f"i{last} = start + j", ""))
        accumulate = f"scratch[j] += {value}"
    else:
        body.append(("    " * depth + f"for i{last} in range(n{last}):", ""))
        depth += 1
        accumulate = f"scratch[i{last}] += {value}"
    body += [("    " * depth + line, comment) for line, comment in writer.lines]
    body.append(("    " * depth + accumulate, ""))
    body += [(f"{pad}for j in range({extent}):", ""),
             (f"{pad}    {out_ref} = scratch[j]", root.describe())]
    params = [f"a{k}" for k in range(len(reads.order))] + ["out", "scratch"]
    params += [f"n{a}" for a in range(source.ndim)]
    if writer.uses_dims:
        params.append("dims")
    return KernelText(params, body, reads.order, extents=[(d,) for d in source.shape],
                      uses_dims=writer.uses_dims, uses_scratch=True, functions=functions)


# ---------------------------------------------------------------- merged flat loops


def loop_kernel(lp: LoweredProgram, kernel: Kernel, in_place: dict[int, int]) -> KernelText:
    """One flat loop computing every member of a ``loop`` kernel at each element.

    Buffers are read once per element (``a<k>``) and results written at the end of the
    iteration (``o<k>``), after every read of that element, so a new parameter value can
    overwrite the parameter it was computed from: it is stored through the same argument
    (two arguments aliasing one buffer would make LLVM give up vectorising). Full sums go
    through a float64 scratch chunk and eight partial sums, in a fixed order. Large loops run
    as contiguous blocks under ``prange`` (see LOOP_PARALLEL_MIN_ELEMENTS).
    """
    shape = loop_shape(lp, kernel)
    members = [m.root for m in kernel.members]
    sums = [v for v in members if lp.ops[v].op == "reduce_sum"]
    computed = set(kernel.inlined) | (set(members) - set(sums))
    parallel = _loop_parallel(shape)
    chunked = bool(sums) or parallel
    var = "j" if chunked else "i"
    reads = _Reads(True)
    functions: set[str] = set()
    writer = ExpressionWriter(lp, computed, reads, functions, flat=True)
    results: dict[int, str] = {}
    for value in members:
        if value in sums:
            source = lp.ops[value].inputs[0]
            results[value] = writer.value_at(source, (var,), force=source in computed)
        else:
            results[value] = writer.value_at(value, (var,), force=True)
    # Name every written buffer: a parameter updated in place that the loop also reads is
    # written through its read argument.
    writes: list[int] = []
    out_name: dict[int, str] = {}
    for value in kernel.outputs:
        target = in_place.get(value)
        if target is not None and target in reads.order:
            out_name[value] = f"a{reads.order.index(target)}"
        else:
            out_name[value] = f"o{len(writes)}"
            writes.append(value)
    arrays = [f"a{k}" for k in range(len(reads.order))] + [f"o{k}" for k in range(len(writes))]
    stores = [(f"{out_name[v]}[{var}] = {results[v]}", lp.ops[v].describe())
              for v in kernel.outputs if v not in sums]
    sum_rows = {v: k for k, v in enumerate(sums)}
    stores += [(f"scratch[{_row(sum_rows[v], parallel)}{var}] = {results[v]}", "")
               for v in sums]
    lines = writer.lines + stores
    if not chunked:
        body = [("for i in range(n0):", "")] + [("    " + line, c) for line, c in lines]
    elif not parallel:
        body = [(f"total{k} = 0.0", "") for k in range(len(sums))]
        body += _chunk_loop("0", "n0", arrays, lines, len(sums), "    ", parallel)
    else:
        body = [
            ("# Blocks of a size fixed by n0: the same sums on any number of threads.", ""),
            (f"nb = min({LOOP_MAX_BLOCKS}, max(1, n0 // {LOOP_BLOCK_MIN_ELEMENTS}))", ""),
            ("per = -(-n0 // nb)", ""),
            (f"per = -(-per // {REDUCE_CHUNK}) * {REDUCE_CHUNK}", ""),
            ("for blk in prange(nb):", ""),
            ("    lo = blk * per", ""),
            ("    hi = min(n0, lo + per)", ""),
        ]
        body += [(f"    total{k} = 0.0", "") for k in range(len(sums))]
        body += _chunk_loop("lo", "hi", arrays, lines, len(sums), "        ", parallel)
        partial = LOOP_MAX_BLOCKS * MAX_LOOP_SUMS * REDUCE_CHUNK
        body += [(f"    scratch[{partial} + blk * {MAX_LOOP_SUMS} + {k}] = total{k}", "")
                 for k in range(len(sums))]
        for k in range(len(sums)):
            body += [(f"total{k} = 0.0", ""), ("for blk in range(nb):", ""),
                     (f"    total{k} += scratch[{partial} + blk * {MAX_LOOP_SUMS} + {k}]", "")]
    for k, value in enumerate(sums):
        if value in out_name:
            body.append((f"{out_name[value]}[0] = total{k}", lp.ops[value].describe()))
    params = arrays + (["scratch"] if sums else []) + ["n0"]
    if writer.uses_dims:
        params.append("dims")
    return KernelText(params, body, reads.order, flat=True, extents=[tuple(shape)],
                      uses_dims=writer.uses_dims, uses_scratch=bool(sums), parallel=parallel,
                      functions=functions, writes=writes)


def _loop_parallel(shape: tuple) -> bool:
    known, symbols = size_key(shape)
    return not symbols and known >= LOOP_PARALLEL_MIN_ELEMENTS


def _row(k: int, parallel: bool) -> str:
    """Where sum ``k``'s chunk starts in the scratch vector (per block when parallel)."""
    if parallel:
        return f"(blk * {MAX_LOOP_SUMS} + {k}) * {REDUCE_CHUNK} + "
    return f"{k * REDUCE_CHUNK} + " if k else ""


def _chunk_loop(lo: str, hi: str, arrays: list[str], lines: list[tuple[str, str]], sums: int,
                pad: str, parallel: bool) -> list[tuple[str, str]]:
    """Chunks of REDUCE_CHUNK elements over [lo, hi): views of every array (indexing a view by
    the inner loop variable lets LLVM vectorise), the body, then each sum's partial sums."""
    outer = pad[:-4]
    body = [(f"{outer}for start in range({lo}, {hi}, {REDUCE_CHUNK}):", ""),
            (f"{pad}m = min({REDUCE_CHUNK}, {hi} - start)", "")]
    body += [(f"{pad}{name}c = {name}[start:start + m]", "") for name in arrays]
    body.append((f"{pad}for j in range(m):", ""))
    for line, comment in lines:
        for name in arrays:
            line = re.sub(rf"\b{name}\[j\]", f"{name}c[j]", line)
        body.append((f"{pad}    {line}", comment))
    for k in range(sums):
        row = _row(k, parallel)
        acc = [f"s{i}" for i in range(8)]
        body += [
            (f"{pad}{' = '.join(acc)} = 0.0", ""),
            (f"{pad}for j in range(0, m - 7, 8):", ""),
            *[(f"{pad}    s{i} += scratch[{row}j{f' + {i}' if i else ''}]", "") for i in range(8)],
            (f"{pad}for j in range(m - m % 8, m):", ""),
            (f"{pad}    s0 += scratch[{row}j]", ""),
            (f"{pad}total{k} += ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))", ""),
        ]
    return body


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
    """Copy each input into its range of ``out`` along the axis.

    Along the first axis (or after axes of size one) every input is one contiguous block of
    ``out``: a flat copy per input, with no sizes in the text (one kernel serves every
    concatenation of as many inputs; the loop vectorises)."""
    op = lp.ops[kernel.root]
    axis = op.attrs["axis"]
    r = op.ndim
    if all(d == 1 for d in op.shape[:axis]):
        names = [f"a{k}" for k in range(len(op.inputs))]
        body: list[tuple[str, str]] = [("flat = out.reshape(out.size)", ""), ("start = 0", "")]
        for k, name in enumerate(names):
            body += [
                (f"source = {name}.reshape({name}.size)", op.describe() if k == 0 else ""),
                ("target = flat[start:start + source.shape[0]]", ""),
                ("for i in range(source.shape[0]):", ""),
                ("    target[i] = source[i]", ""),
                ("start += source.shape[0]", ""),
            ]
        return KernelText(names + ["out"], body, list(op.inputs))
    body = []
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


def _wrapped_index(pad: str, message: str) -> list[tuple[str, str]]:
    """Lines wrapping a negative index ``k`` and raising when it is out of range."""
    return [
        (pad + "if k < 0:", ""),
        (pad + "    k += size", ""),
        (pad + "if k < 0 or k >= size:", ""),
        (pad + f"    raise InputError({message!r})", ""),
    ]


def _row_views(ndim: int, axis: int, table: str, rows: str) -> list[tuple[str, str]]:
    """Lines viewing ``table`` as ``(outer, size, inner)`` around ``axis``, the indices ``a1``
    as ``ids`` (``n``) and ``rows`` as ``(outer, n, inner)``: a gathered or scattered slice is
    then ``inner`` contiguous elements, copied by one loop that vectorises."""
    outer = " * ".join(["1", *[f"{table}.shape[{k}]" for k in range(axis)]])
    inner = " * ".join(["1", *[f"{table}.shape[{k}]" for k in range(axis + 1, ndim)]])
    return [
        (f"size = {table}.shape[{axis}]", ""), (f"outer = {outer}", ""),
        (f"inner = {inner}", ""), ("n = a1.size", ""), ("ids = a1.reshape(n)", ""),
        (f"src = {table}.reshape((outer, size, inner))", ""),
        (f"rows = {rows}.reshape((outer, n, inner))", ""),
    ]


def take_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Gather along an axis, with bounds checks (negative indices count from the end): each
    index is read and checked once, then its slice copied as contiguous runs of ``inner``."""
    op = lp.ops[kernel.root]
    x, indices = lp.ops[op.inputs[0]], lp.ops[op.inputs[1]]
    body = _row_views(x.ndim, op.attrs["axis"], "a0", "out")
    line = max(1, CACHE_LINE_BYTES // x.dtype.itemsize)
    body += [("flat = a0.reshape(a0.size)", ""), ("for j in range(n):", "")]
    body += _prefetch_ahead("    ", line)
    body += [("    k = ids[j]", "")]
    body += _wrapped_index("    ", "take: an index is out of range for the gathered axis")
    body += [("    for o in range(outer):", ""), ("        for c in range(inner):", ""),
             ("            rows[o, j, c] = src[o, k, c]", op.describe())]
    return KernelText(["a0", "a1", "out"], body, [x.id, indices.id], flat_args=(1, 2),
                      functions={"prefetch"})


def _prefetch_ahead(pad: str, line: int) -> list[tuple[str, str]]:
    """Lines hinting the slices of the id ``PREFETCH_AHEAD`` places after ``j`` into the
    caches (``flat``: the table's elements), when a slice spans at least a cache line
    (``line`` elements): the loads of several rows then overlap (prefetch.py)."""
    return [
        (pad + f"if inner >= {line} and j + {PREFETCH_AHEAD} < n:", "rows a few ids ahead"),
        (pad + f"    ahead = ids[j + {PREFETCH_AHEAD}]", ""),
        (pad + "    if ahead < 0:", ""),
        (pad + "        ahead += size", ""),
        (pad + "    if ahead >= 0 and ahead < size:", "a bad id raises below, when reached"),
        (pad + "        for o in range(outer):", ""),
        (pad + "            first = (o * size + ahead) * inner", ""),
        (pad + f"            for c in range(0, inner, {line}):", ""),
        (pad + "                prefetch(flat, first + c)", ""),
        (pad + "            prefetch(flat, first + inner - 1)", "a slice may end in one more line"),
    ]


def scatter_add_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``out = base`` then add each update at its index (repeated indices accumulate, in
    order); each index is read and checked once, its slice added as contiguous runs."""
    op = lp.ops[kernel.root]
    base, indices, updates = (lp.ops[i] for i in op.inputs)
    body = [
        ("flat_out = out.reshape(out.size)", ""),
        ("flat_base = a0.reshape(a0.size)", ""),
        ("for i in range(flat_out.shape[0]):", ""),
        ("    flat_out[i] = flat_base[i]", ""),
    ]
    body += _row_views(base.ndim, op.attrs["axis"], "out", "a2")
    body += [("for j in range(n):", ""), ("    k = ids[j]", "")]
    body += _wrapped_index("    ", "scatter_add: an index is out of range for the axis")
    body += [("    for o in range(outer):", ""), ("        for c in range(inner):", ""),
             ("            src[o, k, c] += rows[o, j, c]", op.describe())]
    return KernelText(["a0", "a1", "a2", "out"], body, [base.id, indices.id, updates.id],
                      flat_args=(1, 2))


def check_index_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Copy class labels, raising on one outside ``[0, size)`` (no wrap-around for labels)."""
    op = lp.ops[kernel.root]
    idx = [f"i{k}" for k in range(op.ndim)]
    body = [(f"size = {int(op.attrs['size'])}", "")]
    body += [(line, "") for line in _nest(idx, [f"out.shape[{k}]" for k in range(op.ndim)])]
    pad = "    " * op.ndim
    ref = ", ".join(idx) or "()"
    body += [
        (pad + f"k = a0[{ref}]", ""),
        (pad + "if k < 0 or k >= size:", ""),
        (pad + "    raise InputError('a label is out of range for the classes')", ""),
        (pad + f"out[{ref}] = k", op.describe()),
    ]
    return KernelText(["a0", "out"], body, [op.inputs[0]])


def _lines_view(op_ndim: int, axis: int, names: list[str]) -> list[tuple[str, str]]:
    """Lines viewing each of ``names`` (C-contiguous, of one shape) as ``(outer, n, inner)``
    around ``axis``: every kernel along one axis is then the same three loops."""
    outer = " * ".join(["1", *[f"a0.shape[{k}]" for k in range(axis)]])
    inner = " * ".join(["1", *[f"a0.shape[{k}]" for k in range(axis + 1, op_ndim)]])
    lines = [(f"n = a0.shape[{axis}]", ""), (f"outer = {outer}", ""), (f"inner = {inner}", "")]
    lines += [(f"{name}v = {name}.reshape((outer, n, inner))", "") for name in names]
    return lines


def scan_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``cumsum``/``cumprod`` along an axis, in the input's dtype and numpy's order: each
    step combines the previous step's row of ``out`` with a row of the input (contiguous
    along the inner axes, so the inner loop vectorises)."""
    op = lp.ops[kernel.root]
    axis, reverse = op.attrs["axis"], op.attrs["reverse"]
    exclusive = op.attrs.get("exclusive", False)
    combine = "+" if op.op == "cumsum" else "*"
    step, prev = ("n - 1 - t", "j + 1") if reverse else ("t", "j - 1")
    source = "p" if exclusive else "j"
    first = literal(1, op.dtype) if exclusive else "a0v[o, j, i]"
    body = _lines_view(op.ndim, axis, ["a0", "out"])
    body += [
        ("for o in range(outer):", ""),
        ("    for t in range(n):", ""),
        (f"        j = {step}", ""),
        ("        if t == 0:", ""),
        ("            for i in range(inner):", ""),
        (f"                outv[o, j, i] = {first}", ""),
        ("        else:", ""),
        (f"            p = {prev}", ""),
        ("            for i in range(inner):", ""),
        (f"                outv[o, j, i] = outv[o, p, i] {combine} a0v[o, {source}, i]",
         op.describe()),
    ]
    return KernelText(["a0", "out"], body, [op.inputs[0]])


def sort_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``sort``/``argsort`` along an axis: each line is copied out and ordered by numba's
    stable merge sort (numpy's kind="stable": ties keep their order, NaN last)."""
    op = lp.ops[kernel.root]
    store = "order[j]" if op.op == "argsort" else "line[order[j]]"
    body = _lines_view(op.ndim, op.attrs["axis"], ["a0", "out"])
    body += [
        ("line = np.empty(n, dtype=a0.dtype)", ""),
        ("for o in range(outer):", ""),
        ("    for i in range(inner):", ""),
        ("        for j in range(n):", ""),
        ("            line[j] = a0v[o, j, i]", ""),
        ("        order = np.argsort(line, kind='mergesort')", ""),
        ("        for j in range(n):", ""),
        (f"            outv[o, j, i] = {store}", op.describe()),
    ]
    return KernelText(["a0", "out"], body, [op.inputs[0]])


def permute_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Gather each line along an axis by a permutation, raising if the indices of a line are
    not one (out of range or repeated)."""
    op = lp.ops[kernel.root]
    body = _lines_view(op.ndim, op.attrs["axis"], ["a0", "a1", "out"])
    body += [
        ("seen = np.zeros(n, dtype=np.bool_)", ""),
        ("for o in range(outer):", ""),
        ("    for i in range(inner):", ""),
        ("        for j in range(n):", ""),
        ("            seen[j] = False", ""),
        ("        for j in range(n):", ""),
        ("            k = a1v[o, j, i]", ""),
        ("            if k < 0 or k >= n or seen[k]:", ""),
        ("                raise InputError('permute: the indices are not a permutation')", ""),
        ("            seen[k] = True", ""),
        ("            outv[o, j, i] = a0v[o, k, i]", op.describe()),
    ]
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


def batched_matmul_kernel(lp: LoweredProgram, kernel: Kernel, dot: str) -> KernelText:
    """A loop of 2-D BLAS products (``dot(a, b, out)``) over the (broadcast) batch axes."""
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
    body.append((pad + f"{dot}({a_ref}, {b_ref}, out[{', '.join(idx)}])", op.describe()))
    return KernelText(["a0", "a1", "out"], body, [a.id, b.id], functions={dot})


def _batch_index(idx: list[str], shape: tuple, out_shape: tuple) -> list[str]:
    offset = len(out_shape) - len(shape)
    return [("0" if d == 1 and out_shape[k + offset] != 1 else idx[k + offset])
            for k, d in enumerate(shape)]


def check_kernel_available(op_name: str, label: str) -> None:
    """``CompileError`` naming the op when the numba op table has no entry for it."""
    if op_name not in BACKEND_OPS:
        kernel_for(op_name, label)
