"""Kernels of the row-wise optimizer updates (``ops/sparse_updates.py``).

Each kernel touches only the rows its ids name: it normalises the ids (negative ones count
from the end, out of range raises), orders their positions stably (a sort of the packed
``id * n + position``, or a merge argsort where that could overflow), and walks the groups of
equal ids. ``sparse_sgd`` and ``sparse_moment`` sum each group's rows in the order they come
(as ``scatter_add`` does) into one row of scratch, then write the row update;
``sparse_adam_step`` needs no sum. Work and scratch are proportional to the number of ids,
never to the table: with the update written in place (``memory._in_place_updates``), a step
touches the same number of rows for 1,000 rows as for 100,000 (each touched row of a table
larger than the caches costs more). Written elsewhere, the kernel first copies the whole
table (the value of every untouched row).
"""

from __future__ import annotations

from graphcomp.backends.numba.expressions import literal
from graphcomp.backends.numba.kernels import KernelText
from graphcomp.passes.fusion import Kernel
from graphcomp.passes.lowered import LoweredProgram

# Where each op reads its table, ids and (for the sums) rows.
_OPERANDS = {"sparse_sgd": (0, 1, 2), "sparse_moment": (0, 1, 2), "sparse_adam_step": (0, 3, None)}
# Ids are ordered by sorting ``id * n + position`` (unique values, so any sort gives the
# stable order) while that product stays below this bound; above it, a merge argsort.
PACK_LIMIT = 1 << 62
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
    body += _ordered_keys(f"a{ids_at}", op.op)
    if rows_at is not None:
        body += [(f"rows = a{rows_at}.reshape((n, inner))", ""),
                 (f"acc = np.empty(inner, dtype=np.{dt})", "")]
    body += [(f"{name} = {literals.get(k, f'a{k}[()]')}", "")
             for k, name in _SCALARS[op.op].items()]
    if op.op == "sparse_adam_step":
        body += [("m = a1.reshape((size, inner))", ""), ("v = a2.reshape((size, inner))", "")]
    body += [
        ("start = 0", ""),
        ("while start < n:", ""),
        ("    r = keys[order[start]]", ""),
        ("    stop = start + 1", ""),
        ("    while stop < n and keys[order[stop]] == r:", ""),
        ("        stop += 1", ""),
    ]
    if rows_at is not None:
        body += [
            ("    q = order[start]", ""),
            ("    for c in range(inner):", ""),
            (f"        acc[c] = np.{dt}(0.0) + rows[q, c]", "0 + first row, as scatter_add"),
            ("    for j in range(start + 1, stop):", ""),
            ("        q = order[j]", ""),
            ("        for c in range(inner):", ""),
            ("            acc[c] += rows[q, c]", "repeated ids add up in order"),
        ]
    body += [("    for c in range(inner):", ""),
             (f"        target[r, c] = {_row_update(op.op, op.attrs, dt)}", op.describe()),
             ("    start = stop", "")]
    return KernelText([f"a{k}" for k in arrays] + ["out"], body,
                      [op.inputs[k] for k in arrays])


def _ordered_keys(ids: str, op_name: str) -> list[tuple[str, str]]:
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
        (f"if n == 0 or size <= {PACK_LIMIT} // n:", "id * n + position fits in int64"),
        ("    packed = np.empty(n, dtype=np.int64)", ""),
        ("    for i in range(n):", ""),
        ("        packed[i] = keys[i] * n + i", ""),
        ("    packed.sort()", "unique values: the order is stable"),
        ("    order = np.empty(n, dtype=np.int64)", ""),
        ("    for i in range(n):", ""),
        ("        order[i] = packed[i] % n", ""),
        ("else:", ""),
        ("    order = np.argsort(keys, kind='mergesort')", "stable: equal ids keep their order"),
    ]


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
