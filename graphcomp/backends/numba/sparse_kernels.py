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

Lazy Adam's three updates of a table (both moments, then the step that reads them) run as
one kernel where all three are written in place (``fuse_lazy_adam``, ``lazy_adam_kernel``):
the ids are grouped once and each touched row of the table and its moments is visited once,
with the same formulas and roundings as the three kernels.
"""

from __future__ import annotations

from dataclasses import replace

from graphcomp.backends.numba.expressions import literal
from graphcomp.backends.numba.kernels import CACHE_LINE_BYTES, PREFETCH_AHEAD, KernelText
from graphcomp.passes.fusion import FusionPlan, Kernel
from graphcomp.passes.lowered import LoweredProgram
from graphcomp.passes.memory import MemoryPlan

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
        body += _summed_rows(dt)
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


def _summed_rows(dt: str) -> list[tuple[str, str]]:
    """Lines adding up, into ``acc``, the rows of the group whose first position is ``q``."""
    return [
        ("    for c in range(inner):", ""),
        (f"        acc[c] = np.{dt}(0.0) + rows[q, c]", "0 + first row, as scatter_add"),
        ("    q = following[q]", ""),
        ("    while q >= 0:", ""),
        ("        for c in range(inner):", ""),
        ("            acc[c] += rows[q, c]", "repeated ids add up in order"),
        ("        q = following[q]", ""),
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


def fuse_lazy_adam(lp: LoweredProgram, plan: FusionPlan, memory: MemoryPlan) -> FusionPlan:
    """``plan`` with each lazy Adam update of a table (two ``sparse_moment`` kernels and the
    ``sparse_adam_step`` that reads them) as one kernel at the step's place: the ids are
    grouped once and each touched row of the table and its moments is visited once
    (``lazy_adam_kernel``). Only where all three are written in place, nothing else reads the
    new moments, and no kernel between the moments and the step writes into the buffers of
    the moments' ids and rows (their slots may be reused once the moments are done)."""
    index = {k.root: i for i, k in enumerate(plan.kernels)}
    readers: dict[int, int] = {}
    for op in lp.ops.values():
        for value in op.inputs:
            readers[value] = readers.get(value, 0) + 1
    fused: dict[int, Kernel] = {}
    dropped: set[int] = set()
    for position, kernel in enumerate(plan.kernels):
        moments = _lazy_adam_moments(lp, plan, memory, kernel, index, readers)
        if moments is None:
            continue
        first = min(index[m] for m in moments)
        between = plan.kernels[first + 1:position]
        ids, rows = lp.ops[moments[0]].inputs[1:3]
        slots = {memory.slot_of.get(memory.base(v)) for v in (ids, rows)} - {None}
        if any(memory.slot_of.get(memory.base(r)) in slots for k in between for r in k.results):
            continue
        fused[position] = replace(kernel, inlined=[*kernel.inlined, *moments])
        dropped.update(index[m] for m in moments)
    if not fused:
        return plan
    kernels = [fused.get(i, k) for i, k in enumerate(plan.kernels) if i not in dropped]
    return replace(plan, kernels=kernels)


def _lazy_adam_moments(lp: LoweredProgram, plan: FusionPlan, memory: MemoryPlan,
                       kernel: Kernel, index: dict[int, int], readers: dict[int, int]
                       ) -> tuple[int, int] | None:
    """The (first, second) moment values a lazy Adam step kernel can take in, or None."""
    if kernel.kind != "sparse_adam_step" or kernel.root not in memory.in_place:
        return None
    op = lp.ops[kernel.root]
    new_m, new_v, ids = op.inputs[1:4]
    for value, power in ((new_m, 1), (new_v, 2)):
        moment = lp.ops[value]
        if (moment.op != "sparse_moment" or moment.attrs["power"] != power
                or value not in index or plan.kernels[index[value]].inlined
                or value not in memory.in_place or readers.get(value, 0) != 1
                or moment.inputs[1] != ids or value in lp.outputs):
            return None
    if lp.ops[new_m].inputs[2] != lp.ops[new_v].inputs[2]:
        return None
    return new_m, new_v


def lazy_adam_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """The kernel of a lazy Adam update taken in by ``fuse_lazy_adam``: per touched row, the
    rows summed, both moments, then the step from the moments just written (the formulas and
    roundings of the three separate kernels). Table, moments: updated in place."""
    op = lp.ops[kernel.root]
    new_m, new_v, ids = op.inputs[1:4]
    m_op, v_op = lp.ops[new_m], lp.ops[new_v]
    dt = op.dtype.name
    reads = [op.inputs[0], m_op.inputs[0], v_op.inputs[0], ids, m_op.inputs[2]]
    scalars = []
    for k, name in _SCALARS["sparse_adam_step"].items():
        value = lp.ops[op.inputs[k]]
        if value.op == "constant" and value.attrs["value"].size == 1:
            scalars.append((f"{name} = {literal(value.attrs['value'].item(), op.dtype)}", ""))
        else:
            scalars.append((f"{name} = a{len(reads)}[()]", ""))
            reads.append(op.inputs[k])
    body = [
        ("size = a0.shape[0]", ""),
        (f"inner = {' * '.join(['1', *[f'a0.shape[{k}]' for k in range(1, op.ndim)]])}", ""),
        ("n = a3.size", ""),
        ("table = a0.reshape((size, inner))", ""),
        ("m = a1.reshape((size, inner))", ""),
        ("v = a2.reshape((size, inner))", ""),
        *_grouped_positions("a3", "sparse_adam_step"),
        ("rows = a4.reshape((n, inner))", ""),
        (f"acc = np.empty(inner, dtype=np.{dt})", ""),
        *scalars,
        *[(f"hint{k} = {name}.reshape({name}.size)", "") for k, name in
          enumerate(("a0", "a1", "a2"))],
        ("for g in range(groups):", ""), ("    q = heads[g]", ""), ("    r = keys[q]", ""),
        *_prefetch_group(3, op.dtype.itemsize),
        *_summed_rows(dt),
        ("    for c in range(inner):", ""),
        (f"        m[r, c] = {_row_update('sparse_moment', m_op.attrs, dt).replace('table', 'm')}",
         m_op.describe()),
        (f"        v[r, c] = {_row_update('sparse_moment', v_op.attrs, dt).replace('table', 'v')}",
         v_op.describe()),
        (f"        table[r, c] = {_row_update('sparse_adam_step', op.attrs, dt)}",
         op.describe()),
    ]
    return KernelText([f"a{k}" for k in range(len(reads))], body, reads,
                      flat_args=(3, 4), functions={"prefetch"}, writes=[])
