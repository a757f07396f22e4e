"""Kernels of the row-wise optimizer updates (``ops/sparse_updates.py``).

Each kernel touches only the rows its ids name: it normalises the ids (negative ones count
from the end, out of range raises), groups the positions of equal ids with a small hash
table (each distinct id's first position, in the order the ids come, and a chain from each
position to the next one holding the same id), and walks the groups. ``sparse_sgd`` and
``sparse_moment`` sum each group's rows in the order they come (as ``scatter_add`` does)
into one row of scratch, then write the row update; ``sparse_adam_step`` needs no sum. While
it works on one group it hints the table row (and Adam's moment rows) of a group a few
ahead into the caches, so the misses on a table larger than the caches overlap (prefetch.py).
Work and scratch are proportional to the number of ids, never to the table: with the update
written in place (``memory._in_place_updates``), a step touches the same number of rows for
1,000 rows as for 100,000 (each touched row of a table larger than the caches costs more).
Written elsewhere, the kernel first copies the whole table (the value of every untouched
row). The rows are written in the order their ids first come; each row's new value depends
only on its own group, so the order does not change the result.
"""

from __future__ import annotations

from graphcomp.backends.numba.expressions import literal
from graphcomp.backends.numba.kernels import CACHE_LINE_BYTES, PREFETCH_AHEAD, KernelText
from graphcomp.passes.fusion import Kernel
from graphcomp.passes.lowered import LoweredProgram

# Where each op reads its table, ids and (for the sums) rows.
_OPERANDS = {"sparse_sgd": (0, 1, 2), "sparse_moment": (0, 1, 2), "sparse_adam_step": (0, 3, None)}
# 2**64 / the golden ratio: Fibonacci hashing spreads consecutive ids over the slots.
_FIBONACCI = 11400714819323198485
# Where each op reads its scalars (learning rate, bias corrections), by name.
_SCALARS = {"sparse_sgd": {3: "lr"}, "sparse_moment": {}, "sparse_adam_step": {4: "lr", 5: "c1",
                                                                               6: "c2"}}


def sparse_update_kernel(lp: LoweredProgram, kernel: Kernel, in_place: bool) -> KernelText:
    """The kernel of one row-wise update; ``in_place``: ``out`` is the table itself.

    >>> # sparse_update_kernel(lp, kernel, kernel.root in memory.in_place)
    """
    op = lp.ops[kernel.root]
    dt = op.dtype.name
    table_at, ids_at, rows_at = _OPERANDS[op.op]
    literals = {k: literal(lp.ops[v].attrs["value"].item(), op.dtype)
                for k, v in enumerate(op.inputs)
                if lp.ops[v].op == "constant" and lp.ops[v].attrs["value"].size == 1}
    arrays = [k for k in range(len(op.inputs)) if k not in literals]
    inner = " * ".join(["1", *[f"a0.shape[{k}]" for k in range(1, op.ndim)]])
    body = [
        (f"size = a{table_at}.shape[0]", ""),
        (f"inner = {inner}", ""),
        (f"n = a{ids_at}.size", ""),
        ("table = a0.reshape((size, inner))", ""),
        ("target = out.reshape((size, inner))", ""),
    ]
    if not in_place:
        body += [("for r in range(size):", ""), ("    for c in range(inner):", ""),
                 ("        target[r, c] = table[r, c]", "the untouched rows")]
    body += _grouped_positions(f"a{ids_at}", op.op)
    if rows_at is not None:
        body += [(f"rows = a{rows_at}.reshape((n, inner))", ""),
                 (f"acc = np.empty(inner, dtype=np.{dt})", "")]
    body += [(f"{name} = {literals.get(k, f'a{k}[()]')}", "")
             for k, name in _SCALARS[op.op].items()]
    hinted = ["a0"]
    if op.op == "sparse_adam_step":
        body += [("m = a1.reshape((size, inner))", ""), ("v = a2.reshape((size, inner))", "")]
        hinted += ["a1", "a2"]
    body += [(f"hint{k} = {name}.reshape({name}.size)", "") for k, name in enumerate(hinted)]
    body += [("for g in range(groups):", ""), ("    q = heads[g]", ""), ("    r = keys[q]", "")]
    body += _prefetch_group(len(hinted), op.dtype.itemsize)
    if rows_at is not None:
        body += [
            ("    for c in range(inner):", ""),
            (f"        acc[c] = np.{dt}(0.0) + rows[q, c]", "0 + first row, as scatter_add"),
            ("    q = following[q]", ""),
            ("    while q >= 0:", ""),
            ("        for c in range(inner):", ""),
            ("            acc[c] += rows[q, c]", "repeated ids add up in order"),
            ("        q = following[q]", ""),
        ]
    body += [("    for c in range(inner):", ""),
             (f"        target[r, c] = {_row_update(op.op, op.attrs, dt)}", op.describe())]
    flat_args = tuple(arrays.index(k) for k in (ids_at, rows_at) if k is not None)
    return KernelText([f"a{k}" for k in arrays] + ["out"], body,
                      [op.inputs[k] for k in arrays], flat_args=flat_args,
                      functions={"prefetch"})


def _grouped_positions(ids: str, op_name: str) -> list[tuple[str, str]]:
    """Lines checking the ids into ``keys`` and grouping equal ones: ``heads[:groups]``, the
    first position of each distinct id in the order they come; ``following[p]``, the next
    position holding ``keys[p]`` (-1 after the last). An open-addressing hash table of at
    least ``2 n`` slots (Fibonacci hashing, linear probing) finds the group of each id: time
    and scratch follow the number of ids, never the table's size."""
    return [
        (f"flat_ids = {ids}.reshape(n)", ""),
        ("keys = np.empty(n, dtype=np.int64)", ""),
        ("for i in range(n):", ""),
        ("    k = np.int64(flat_ids[i])", ""),
        ("    if k < 0:", ""),
        ("        k += size", ""),
        ("    if k < 0 or k >= size:", ""),
        (f"        raise InputError('{op_name}: an id is out of range for the table')", ""),
        ("    keys[i] = k", ""),
        ("bits = 1", ""),
        ("while (1 << bits) < 2 * n:", ""),
        ("    bits += 1", ""),
        ("mask = (1 << bits) - 1", ""),
        ("last = np.full(1 << bits, -1, dtype=np.int64)", "per slot: the id's latest position"),
        ("following = np.full(max(n, 1), -1, dtype=np.int64)", ""),
        ("heads = np.empty(max(n, 1), dtype=np.int64)", ""),
        ("groups = 0", ""),
        ("for i in range(n):", ""),
        ("    k = keys[i]", ""),
        (f"    h = np.int64((np.uint64(k) * np.uint64({_FIBONACCI})) >> np.uint64(64 - bits))",
         ""),
        ("    while last[h] >= 0 and keys[last[h]] != k:", ""),
        ("        h = (h + 1) & mask", ""),
        ("    if last[h] < 0:", ""),
        ("        heads[groups] = i", "a new id"),
        ("        groups += 1", ""),
        ("    else:", ""),
        ("        following[last[h]] = i", ""),
        ("    last[h] = i", ""),
    ]


def _prefetch_group(tables: int, itemsize: int) -> list[tuple[str, str]]:
    """Lines hinting the row of the group ``PREFETCH_AHEAD`` groups ahead of ``g`` into the
    caches, in each of the flat views ``hint0``, ``hint1``, ... (the table, and Adam's
    moments; prefetch.py)."""
    line = max(1, CACHE_LINE_BYTES // itemsize)
    body = [(f"    if inner >= {line} and g + {PREFETCH_AHEAD} < groups:", "rows ahead"),
            (f"        first = keys[heads[g + {PREFETCH_AHEAD}]] * inner", "")]
    for k in range(tables):
        body += [(f"        for c in range(0, inner, {line}):", ""),
                 (f"            prefetch(hint{k}, first + c)", ""),
                 (f"        prefetch(hint{k}, first + inner - 1)", "")]
    return body


def _row_update(op_name: str, attrs: dict, dt: str) -> str:
    """The new value of element ``c`` of touched row ``r`` (the dense update's formula)."""
    if op_name == "sparse_sgd":
        return "table[r, c] - lr * acc[c]"
    if op_name == "sparse_moment":
        beta = float(attrs["beta"])
        term = "acc[c]" if attrs["power"] == 1 else "(acc[c] * acc[c])"
        return f"np.{dt}({beta!r}) * table[r, c] + np.{dt}({1.0 - beta!r}) * {term}"
    eps = float(attrs["eps"])
    return f"table[r, c] - lr * ((m[r, c] / c1) / (np.sqrt(v[r, c] / c2) + np.{dt}({eps!r})))"
