"""Batch small matrix products into large ones where the data dependencies allow.

An unrolled RNN makes ~5 small GEMMs per step; BLAS is fast only on large ones. Two rewrites
of the backend IR turn independent products into one:

* **Shared right operand.** Products ``A_i @ W`` with one ``W``, none feeding another's ``A``,
  become one product of the row-stacked ``A_i``; each old product is a row block of it (a
  contiguous slice, which fusion reads as a view). Stacking the consecutive ``x[t]`` of one
  source is a free slice of the source, not a copy.
* **Sum of products.** A tree of adds over leaves ``transpose(A_i) @ G_i`` (a weight's gradient
  summed over unrolled steps) becomes ``transpose(stacked A) @ (stacked G)``; other leaves are
  still added.
* **Sum of column sums.** A tree of adds over leaves ``reduce_sum(G_i)`` over the same axes,
  axis 0 among them (a bias gradient summed over steps), becomes one ``reduce_sum`` per row
  stack of ``G_i`` that exists already (the weight gradients' stacks of the same ``G_i``) or
  is free (consecutive ``x[t]``); other leaves are still added.

A stack that copies (a concatenate) takes at most ``STACK_PARTS`` parts: longer groups become
one product per chunk. Row blocks need a known size: values whose row count is symbolic are
left alone.

>>> # lp = batch_matmuls(eliminate_common(lp))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.passes.lowered import Dim, LOp, LoweredProgram
from graphcomp.passes.simplify import eliminate_common

MIN_GROUP = 2  # products worth batching together
# Parts one concatenate stacks: longer sums become one product per chunk. A stack the memory
# plan places (memory.py) copies nothing; one that copies has a flat loop per part. Larger
# stacks make larger products, which run faster: the rnn's (T=32) weight gradients as 2
# products instead of 8 took its step from 1.28 to 1.08 ms (same process, interleaved).
STACK_PARTS = 32


def batch_matmuls(lp: LoweredProgram) -> LoweredProgram:
    """Apply both rewrites (see the module docstring); the result is in topological order.

    Values computed only for a replaced product stay behind: run ``eliminate_dead`` after.

    >>> # lp = eliminate_dead(batch_matmuls(lp))  # 32 x[t] @ Wx become one GEMM
    """
    result = _reorder(lp.copy())
    made: set[int] = set()  # stacked products are not stacked again (chunks stay chunks)
    # One group at a time: each rewrite adds dependencies (the stacked product needs every
    # A_i), so independence is re-checked on the rewritten program.
    while (group := _shared_right_group(result, made)) is not None:
        made.update(_stack_shared_right(result, group))
        result = _reorder(result)
    # Sums are disjoint (an inner add or a product leaf feeds one add only): rewriting one
    # leaves the others' consumers and order as they were.
    consumers, position = result.consumers(), {v: k for k, v in enumerate(result.ops)}
    for root, leaves in _sum_trees(result):
        _stack_sum(result, root, leaves, consumers, position)
    # Column sums last, so they find the stacks of G the products made; the trees are found
    # again because a sum may hold both kinds of leaves.
    result = _reorder(result)
    consumers = result.consumers()
    for root, leaves in _sum_trees(result):
        _stack_column_sums(result, root, leaves, consumers)
    # Both rewrites may stack the same x[t] slices, and the same gradients twice.
    result = eliminate_common(_reorder(result))
    return _reorder(_share_stacks(result))


# ---------------------------------------------------------------- building new values


def _new_op(lp: LoweredProgram, op: str, inputs: list[int], attrs: dict[str, Any],
            shape: tuple[Dim, ...], dtype: np.dtype, label: str) -> int:
    """Append a value to ``lp.ops`` (``_reorder`` moves it to its first use)."""
    value = max(lp.ops) + 1
    lp.ops[value] = LOp(value, op, inputs, attrs, shape, dtype, [label])
    return value


def _unit_slice(lp: LoweredProgram, value: int) -> tuple[int, int] | None:
    """(source, t) when ``value`` is ``source[t]``: a reshape of a one-index slice of the
    leading axis of ``source`` that keeps every other axis whole."""
    op = lp.ops[value]
    if op.op != "reshape":
        return None
    sliced = lp.ops[op.inputs[0]]
    if sliced.op != "slice":
        return None
    source = lp.ops[sliced.inputs[0]]
    if tuple(sliced.shape) != (1, *op.shape) or tuple(source.shape[1:]) != tuple(op.shape):
        return None
    starts, stops, steps = (sliced.attrs[k] for k in ("starts", "stops", "steps"))
    if any(s != 0 for s in starts[1:]) or any(s != 1 for s in steps[1:]):
        return None
    if tuple(stops[1:]) != tuple(source.shape[1:]):
        return None
    if not isinstance(starts[0], int) or stops[0] != starts[0] + 1:
        return None
    return source.id, starts[0]


def _slice_order(lp: LoweredProgram, values: Sequence[int]) -> list[int] | None:
    """``values`` sorted by t when they are the consecutive ``source[t]`` of one source."""
    units = [unit for v in values if (unit := _unit_slice(lp, v)) is not None]
    if len(units) != len(values) or len({u[0] for u in units}) != 1:
        return None
    index = {u[1]: v for u, v in zip(units, values, strict=True)}
    t0 = min(index)
    if sorted(index) != list(range(t0, t0 + len(values))):
        return None
    return [index[t] for t in range(t0, t0 + len(values))]


def _chunks(items: list, size: int = STACK_PARTS) -> list[list]:
    """Consecutive runs of at most ``size`` items, the short one first: two sums over steps
    0..T-1 and 1..T-1 then cut at the same steps, and share their stacks."""
    first = len(items) % size or size
    return [items[:first]] + [items[k:k + size] for k in range(first, len(items), size)]


def _stack_rows(lp: LoweredProgram, values: Sequence[int], label: str) -> int:
    """A new value holding ``values`` (equal shapes, known row count) one under another,
    along axis 0.

    Consecutive ``x[t]`` of one source in ascending order are one slice of it (a view, no copy);
    anything else is a concatenate (a copy).
    """
    first = lp.ops[values[0]]
    rows, rest = _rows(first), tuple(first.shape[1:])
    k = len(values)
    unit = _unit_slice(lp, values[0])
    if unit is not None and _slice_order(lp, values) == list(values):
        source_id, t0 = unit
        source = lp.ops[source_id]
        ndim = source.ndim
        attrs = {"starts": (t0,) + (0,) * (ndim - 1),
                 "stops": (t0 + k, *source.shape[1:]), "steps": (1,) * ndim}
        block = _new_op(lp, "slice", [source.id], attrs, (k, *source.shape[1:]),
                        first.dtype, f"slice of {source.describe()} for {label}")
        return _new_op(lp, "reshape", [block], {"shape": (k * rows, *rest)},
                       (k * rows, *rest), first.dtype, f"rows for {label}")
    return _new_op(lp, "concatenate", list(values), {"axis": 0}, (k * rows, *rest),
                   first.dtype, f"rows for {label}")


def _batch_label(product: LOp, count: int) -> str:
    """``"%9 matmul ×32 batched"``: the first product a new value stands for, and how many."""
    name = product.labels[0] if product.labels else f"%{product.id} {product.op}"
    return f"{name} ×{count} batched"


def _batchable(op: LOp) -> bool:
    """A 2-D float value with a known row count (its rows can be stacked)."""
    return op.ndim == 2 and op.dtype.kind == "f" and isinstance(op.shape[0], int)


def _rows(op: LOp) -> int:
    """The row count of a value that is stacked: every rewrite checks that it is known."""
    rows = op.shape[0]
    assert isinstance(rows, int), f"{op.describe()} has a symbolic row count"
    return rows


# ---------------------------------------------------------------- shared right operand


def _ancestor_masks(lp: LoweredProgram) -> tuple[dict[int, int], dict[int, int]]:
    """(bit of each value, bits of all values it depends on), over schedule positions."""
    bit = {value: 1 << position for position, value in enumerate(lp.ops)}
    ancestors: dict[int, int] = {}
    for op in lp.ops.values():
        mask = 0
        for source in op.inputs:
            mask |= ancestors[source] | bit[source]
        ancestors[op.id] = mask
    return bit, ancestors


def _shared_right_group(lp: LoweredProgram, skip: set[int]) -> list[int] | None:
    """The first group (schedule order) of ≥ 2 independent products ``A_i @ W`` with one W
    and equal A shapes, or None."""
    candidates: dict[tuple, list[int]] = {}
    for op in lp.ops.values():
        if op.op != "matmul" or op.ndim != 2 or op.id in skip:
            continue
        left, right = (lp.ops[i] for i in op.inputs)
        if _batchable(left) and right.ndim == 2 and right.dtype == left.dtype:
            candidates.setdefault((right.id, left.shape, left.dtype.str), []).append(op.id)
    groups = [ids for ids in candidates.values() if len(ids) >= MIN_GROUP]
    if not groups:
        return None
    bit, ancestors = _ancestor_masks(lp)
    for ids in groups:
        chosen: list[int] = []
        chosen_bits = 0
        # Schedule order: a later product never feeds an earlier one's A, so checking that no
        # chosen product feeds this A keeps the group independent.
        for product in ids:
            left_id = lp.ops[product].inputs[0]
            if (ancestors[left_id] | bit[left_id]) & chosen_bits:
                continue
            chosen.append(product)
            chosen_bits |= bit[product]
        if len(chosen) >= MIN_GROUP:
            return chosen
    return None


def _stack_shared_right(lp: LoweredProgram, group: list[int]) -> list[int]:
    """One product of the stacked A's (per chunk, unless the A's stack for free); each old
    product becomes its row block. Returns the new products."""
    left_of = {p: lp.ops[p].inputs[0] for p in group}
    in_order = _slice_order(lp, list(left_of.values()))
    if in_order is not None:
        product_of = {left: p for p, left in left_of.items()}
        pieces = [[product_of[left] for left in in_order]]
    else:
        pieces = [piece for piece in _chunks(group) if len(piece) >= MIN_GROUP]
    return [_stack_piece(lp, piece) for piece in pieces]


def _stack_piece(lp: LoweredProgram, piece: list[int]) -> int:
    """Rewrite the products ``piece`` (one W) as blocks of one new product; return its id."""
    first = lp.ops[piece[0]]
    right = first.inputs[1]
    rows, columns = first.shape
    k = len(piece)
    label = _batch_label(first, k)
    stacked = _stack_rows(lp, [lp.ops[p].inputs[0] for p in piece], label)
    batched = _new_op(lp, "matmul", [stacked, right], {}, (k * rows, columns), first.dtype,
                      label)
    # Each product becomes blocks[t], the same alias pattern as x[t]; a 2-D row slice would be
    # inlined into each consumer's kernel with its offset baked in (one kernel per step).
    blocks = _new_op(lp, "reshape", [batched], {"shape": (k, rows, columns)},
                     (k, rows, columns), first.dtype, f"blocks of {label}")
    for block, product_id in enumerate(piece):
        one = _new_op(lp, "slice", [blocks], {"starts": (block, 0, 0),
                                              "stops": (block + 1, rows, columns),
                                              "steps": (1, 1, 1)},
                      (1, rows, columns), first.dtype, f"block {block} of {label}")
        product = lp.ops[product_id]
        product.op, product.inputs, product.attrs = "reshape", [one], {"shape": (rows, columns)}
    return batched


# ---------------------------------------------------------------- sum of products


def _pure_add(lp: LoweredProgram, op: LOp, like: LOp) -> bool:
    """An add of two values with ``like``'s shape and dtype (no broadcasting, no promotion)."""
    return op.op == "add" and op.shape == like.shape and op.dtype == like.dtype and all(
        lp.ops[i].shape == like.shape and lp.ops[i].dtype == like.dtype for i in op.inputs)


def _sum_trees(lp: LoweredProgram) -> list[tuple[int, list[int]]]:
    """(root, leaves) of each maximal tree of adds whose inner adds feed only their parent.

    Leaves are listed once per appearance in the sum.
    """
    consumers = lp.consumers()
    roots = set(lp.roots)
    absorbed: set[int] = set()
    trees: list[tuple[int, list[int]]] = []
    for op in reversed(list(lp.ops.values())):  # a tree's root before its inner adds
        if op.id in absorbed or not _pure_add(lp, op, op):
            continue
        leaves: list[int] = []
        stack = [op]
        while stack:
            node = stack.pop()
            for source in node.inputs:
                inner = lp.ops[source]
                if (source not in roots and consumers[source] == [node.id]
                        and node.inputs.count(source) == 1 and _pure_add(lp, inner, op)):
                    absorbed.add(source)
                    stack.append(inner)
                else:
                    leaves.append(source)
        trees.append((op.id, leaves[::-1]))
    return trees


def _transposed_product(lp: LoweredProgram, value: int, consumers: dict[int, list[int]],
                        roots: set[int]) -> tuple[int, int] | None:
    """(A, G) when ``value`` is ``transpose(A) @ G`` (2-D) used by one add and nothing else."""
    op = lp.ops[value]
    if op.op != "matmul" or op.ndim != 2 or value in roots or len(consumers[value]) != 1:
        return None
    left, right = (lp.ops[i] for i in op.inputs)
    if left.op != "transpose" or tuple(left.attrs["perm"]) != (1, 0):
        return None
    a = lp.ops[left.inputs[0]]
    if not (_batchable(a) and _batchable(right) and a.dtype == right.dtype == op.dtype):
        return None
    if a.shape[0] != right.shape[0]:
        return None
    return a.id, right.id


def _stack_sum(lp: LoweredProgram, root: int, leaves: list[int],
               consumers: dict[int, list[int]], position: dict[int, int]) -> None:
    """Rewrite one sum: same-shaped ``A_iᵀ G_i`` leaves become one product per chunk."""
    roots = set(lp.roots)
    groups: dict[tuple, list[tuple[int, int, int]]] = {}
    for leaf in leaves:
        if leaves.count(leaf) != 1:
            continue
        pair = _transposed_product(lp, leaf, consumers, roots)
        if pair is not None:
            a, g = (lp.ops[i] for i in pair)
            groups.setdefault((a.shape, g.shape), []).append((leaf, *pair))
    groups = {key: members for key, members in groups.items() if len(members) >= MIN_GROUP}
    if not groups:
        return
    terms: list[int] = []
    batched_leaves: set[int] = set()
    for members in groups.values():
        # Schedule order of the A's, so another sum over the same steps stacks its G's alike
        # (see _chunks, _share_stacks): dWh's h_0..h_30 pair with dz_1..dz_31, dWx's x[0..31]
        # with dz_0..dz_31.
        members.sort(key=lambda m: (position[m[1]], position[m[2]]))
        for piece in _chunks(members):
            if len(piece) < MIN_GROUP:
                continue
            first = lp.ops[piece[0][0]]
            label = _batch_label(first, len(piece))
            stacked_a = _stack_rows(lp, [a for _, a, _ in piece], label)
            stacked_g = _stack_rows(lp, [g for _, _, g in piece], label)
            rows, columns = lp.ops[stacked_a].shape
            transposed = _new_op(lp, "transpose", [stacked_a], {"perm": (1, 0)},
                                 (columns, rows), first.dtype, f"transpose for {label}")
            terms.append(_new_op(lp, "matmul", [transposed, stacked_g], {}, first.shape,
                                 first.dtype, label))
            batched_leaves.update(leaf for leaf, _, _ in piece)
    _replace_sum(lp, root, terms + [leaf for leaf in leaves if leaf not in batched_leaves])


def _replace_sum(lp: LoweredProgram, root: int, terms: list[int]) -> None:
    """Make ``root`` the sum of ``terms`` (the first one new, made by the rewrite)."""
    total = lp.ops[root]
    if len(terms) == 1:
        # The whole sum is one new value: it takes the root's id, so consumers keep reading it.
        value = lp.ops.pop(terms[0])
        total.op, total.inputs, total.attrs = value.op, value.inputs, value.attrs
        total.labels = value.labels + total.labels
        return
    partial = terms[0]
    for term in terms[1:-1]:
        partial = _new_op(lp, "add", [partial, term], {}, total.shape, total.dtype,
                          f"partial sum of {total.describe()}")
    total.op, total.inputs, total.attrs = "add", [partial, terms[-1]], {}


# ---------------------------------------------------------------- sum of column sums


def _column_sum(lp: LoweredProgram, value: int, consumers: dict[int, list[int]],
                roots: set[int]) -> int | None:
    """G when ``value`` is ``reduce_sum(G)`` over axes that include 0, with G a float value
    of known row count, and ``value`` is used by one add and nothing else."""
    op = lp.ops[value]
    if op.op != "reduce_sum" or value in roots or len(consumers[value]) != 1:
        return None
    g = lp.ops[op.inputs[0]]
    if g.ndim == 0 or 0 not in op.attrs["axes"] or not isinstance(g.shape[0], int):
        return None
    if g.dtype.kind != "f" or g.dtype != op.dtype:
        return None
    return g.id


def _stack_pieces(lp: LoweredProgram, parts: list[int]) -> list[tuple[list[int], int | None]]:
    """(piece, the stack that holds it or None) for the parts of ``parts`` that stack without
    a new copy: first the longest runs of consecutive parts of the row stacks already built (a
    whole stack, or a row block of it), then runs of consecutive ``x[t]`` of one source (a
    slice of it).

    Other parts are left out: a new concatenate costs as much as the sums it saves and adds
    compile time, and a G read only by its sum is computed inside the sum's kernel.
    """
    left = set(parts)
    stacks = sorted((op for op in lp.ops.values() if op.op == "concatenate"
                     and op.attrs["axis"] == 0 and len(set(op.inputs)) == len(op.inputs)
                     and all(isinstance(lp.ops[i].shape[0], int) for i in op.inputs)),
                    key=lambda op: -len(op.inputs))
    pieces: list[tuple[list[int], int | None]] = []
    for stack in stacks:
        for run in _runs([part if part in left else None for part in stack.inputs]):
            pieces.append((run, stack.id if run == stack.inputs else _row_block(lp, stack, run)))
            left.difference_update(run)
    steps: dict[int, dict[int, int]] = {}  # source -> t -> x[t]
    for part in left:
        if (unit := _unit_slice(lp, part)) is not None:
            steps.setdefault(unit[0], {})[unit[1]] = part
    for index in steps.values():
        ordered = [index.get(t) for t in range(min(index), max(index) + 1)]
        pieces += [(run, None) for run in _runs(ordered)]
    return pieces


def _row_block(lp: LoweredProgram, stack: LOp, run: list[int]) -> int:
    """A slice of ``stack`` (a concatenate along axis 0) holding its consecutive parts ``run``."""
    start = stack.inputs.index(run[0])
    offset = sum(_rows(lp.ops[part]) for part in stack.inputs[:start])
    rows = sum(_rows(lp.ops[part]) for part in run)
    rest = tuple(stack.shape[1:])
    attrs = {"starts": (offset,) + (0,) * len(rest), "stops": (offset + rows, *rest),
             "steps": (1,) * stack.ndim}
    return _new_op(lp, "slice", [stack.id], attrs, (rows, *rest), stack.dtype,
                   f"rows of {stack.describe()}")


def _runs(items: list[int | None]) -> list[list[int]]:
    """The runs of at least ``MIN_GROUP`` items between the Nones."""
    runs: list[list[int]] = [[]]
    for item in items:
        if item is None:
            runs.append([])
        else:
            runs[-1].append(item)
    return [run for run in runs if len(run) >= MIN_GROUP]


def _stack_column_sums(lp: LoweredProgram, root: int, leaves: list[int],
                       consumers: dict[int, list[int]]) -> None:
    """Rewrite one sum: ``reduce_sum(G_i)`` leaves with equal G shapes and axes become one
    ``reduce_sum`` per stack of ``G_i`` (see ``_stack_pieces``)."""
    roots = set(lp.roots)
    groups: dict[tuple, dict[int, int]] = {}  # G -> its leaf, per shape, dtype and axes
    for leaf in leaves:
        g = _column_sum(lp, leaf, consumers, roots) if leaves.count(leaf) == 1 else None
        if g is not None:
            op, source = lp.ops[leaf], lp.ops[g]
            key = (source.shape, source.dtype.str, op.attrs["axes"], op.attrs["keepdims"])
            groups.setdefault(key, {}).setdefault(g, leaf)
    terms: list[int] = []
    batched_leaves: set[int] = set()
    for leaf_of in groups.values():
        for piece, stack in _stack_pieces(lp, list(leaf_of)):
            first = lp.ops[leaf_of[piece[0]]]
            label = _batch_label(first, len(piece))
            if stack is None:
                stack = _stack_rows(lp, piece, label)
            terms.append(_new_op(lp, "reduce_sum", [stack], dict(first.attrs), first.shape,
                                 first.dtype, label))
            batched_leaves.update(leaf_of[g] for g in piece)
    if terms:
        _replace_sum(lp, root, terms + [leaf for leaf in leaves if leaf not in batched_leaves])


# ---------------------------------------------------------------- shared stacks


def _share_stacks(lp: LoweredProgram) -> LoweredProgram:
    """A row stack whose parts are a consecutive run of a larger stack's parts becomes a row
    block of it (a view): the gradients of Wh (steps 1..T-1) inside those of Wx (0..T-1)."""
    stacks = [op for op in lp.ops.values() if op.op == "concatenate" and op.ndim == 2
              and op.attrs["axis"] == 0 and isinstance(op.shape[0], int)]
    if len(stacks) < MIN_GROUP:
        return lp
    for small in stacks:
        bit, ancestors = _ancestor_masks(_reorder(lp))  # each change adds a dependency
        k = len(small.inputs)
        for large in stacks:
            n = len(large.inputs)
            if large is small or large.op != "concatenate" or n <= k:
                continue
            if large.shape[1:] != small.shape[1:] or large.dtype != small.dtype:
                continue
            start = next((s for s in range(n - k + 1)
                          if large.inputs[s:s + k] == small.inputs), None)
            # The large stack must not wait for a value that needs the small one.
            if start is None or ancestors[large.id] & bit[small.id]:
                continue
            rows = _rows(lp.ops[small.inputs[0]])  # a concatenate's parts have known rows
            if any(lp.ops[i].shape[0] != rows for i in large.inputs[:start]):
                continue
            small.op, small.inputs = "slice", [large.id]
            small.attrs = {"starts": (start * rows, 0), "stops": (start * rows + _rows(small),
                                                                  small.shape[1]),
                           "steps": (1, 1)}
            small.labels.append(f"rows of {large.labels[0]}")
            break
    return lp


# ---------------------------------------------------------------- order


def _reorder(lp: LoweredProgram) -> LoweredProgram:
    """Topological order that keeps the current order where dependencies allow: each value
    is placed where it stands, after pulling forward any input not placed yet."""
    placed: dict[int, LOp] = {}
    for start in lp.ops:
        stack = [start]
        visiting = {start}
        while stack:
            value = stack[-1]
            if value in placed:
                stack.pop()
                continue
            pending = next((i for i in lp.ops[value].inputs if i not in placed), None)
            if pending is None:
                placed[value] = lp.ops[value]
                stack.pop()
                visiting.discard(value)
            elif pending in visiting:
                raise RuntimeError(f"batch_matmuls made a cycle through %{pending}")
            else:
                visiting.add(pending)
                stack.append(pending)
    lp.ops = placed
    return lp
