"""Graph-level clean-ups on the backend IR: dead-value elimination, CSE, constant folding.

Each pass returns a new ``LoweredProgram`` and leaves its argument untouched.
"""

from __future__ import annotations

import numpy as np

from graphcomp.ir import static_shape
from graphcomp.ops import get_op
from graphcomp.passes.lowered import LOp, LoweredProgram, size_key

FOLD_LIMIT = 4096  # largest constant (elements) that folding may create


def eliminate_dead(lp: LoweredProgram) -> LoweredProgram:
    """Drop values that no output or update needs (inputs are kept: they are the interface).

    >>> # lp = eliminate_dead(lp)
    """
    live: set[int] = set(lp.roots) | set(lp.inputs) | {p for p, _ in lp.updates}
    for op in reversed(list(lp.ops.values())):
        if op.id in live:
            live.update(op.inputs)
    result = lp.copy()
    result.ops = {i: op for i, op in result.ops.items() if i in live}
    return result


def _attrs_key(attrs: dict) -> tuple:
    items = []
    for key in sorted(attrs):
        value = attrs[key]
        if isinstance(value, np.ndarray):
            value = (value.dtype.str, value.shape, value.tobytes())
        elif isinstance(value, np.dtype):
            value = value.str
        items.append((key, repr(value)))
    return tuple(items)


def eliminate_common(lp: LoweredProgram) -> LoweredProgram:
    """Merge values computed by the same op from the same inputs (and equal constants).

    >>> # lp = eliminate_common(lp)  # x*y computed twice becomes one value
    """
    result = lp.copy()
    replaced: dict[int, int] = {}
    seen: dict[tuple, int] = {}
    kept: dict[int, LOp] = {}
    for op in result.ops.values():
        op.inputs = [replaced.get(i, i) for i in op.inputs]
        if op.op in ("placeholder", "parameter"):
            kept[op.id] = op
            continue
        key = (op.op, tuple(op.inputs), _attrs_key(op.attrs), op.shape, op.dtype.str)
        if key in seen:
            survivor = kept[seen[key]]
            survivor.labels.extend(op.labels)
            replaced[op.id] = survivor.id
            continue
        seen[key] = op.id
        kept[op.id] = op
    result.ops = kept
    result.outputs = [replaced.get(i, i) for i in result.outputs]
    result.updates = [(p, replaced.get(v, v)) for p, v in result.updates]
    return result


def fold_constants(lp: LoweredProgram) -> LoweredProgram:
    """Evaluate ops whose inputs are all constants (small, static results only).

    >>> # lp = fold_constants(lp)  # cast(constant 2.0, f32) becomes a f32 constant
    """
    result = lp.copy()
    for op in result.ops.values():
        if op.is_source or not op.inputs or op.op == "dim_size":
            continue
        sources = [result.ops[i] for i in op.inputs]
        if not all(s.op == "constant" for s in sources):
            continue
        known, symbols = size_key(op.shape)
        if symbols or known > FOLD_LIMIT:
            continue
        if op.op == "broadcast_to" and sources[0].attrs["value"].size == 1:
            continue  # a broadcast scalar is a literal in a kernel; an array would be read
        args = [s.attrs["value"] for s in sources]
        shape = static_shape(op.shape)  # no symbols (checked above)
        with np.errstate(all="ignore"):
            value = get_op(op.op).numpy_impl(args, dict(op.attrs), shape)
        value = np.array(value, dtype=op.dtype).reshape(shape)
        op.op, op.inputs, op.attrs = "constant", [], {"value": value}
    return eliminate_dead(result)


def isolate_outputs(lp: LoweredProgram) -> LoweredProgram:
    """Give an output its own copy when it would otherwise be read from storage after the step:
    an updated parameter (or a view of it), or a slice of another value's buffer; likewise a
    new parameter value that is a slice of a parameter.

    Backends that update parameters in place would otherwise return the new value; outputs
    must show the values from before the step's updates.

    >>> # lp = isolate_outputs(lp)
    """
    targets = {p for p, _ in lp.updates}
    result = lp.copy()
    next_id = max(result.ops, default=-1) + 1

    def chain(value: int) -> tuple[int, bool]:
        """(base value, whether a slice is on the way) through reshapes, identities, slices."""
        sliced = False
        while result.ops[value].op in ("reshape", "stop_gradient", "slice"):
            sliced |= result.ops[value].op == "slice"
            value = result.ops[value].inputs[0]
        return value, sliced

    def copy_of(value: int) -> int:
        nonlocal next_id
        source = result.ops[value]
        result.ops[next_id] = LOp(next_id, "copy", [value], {}, source.shape, source.dtype,
                                  [f"copy of {source.describe()}"])
        next_id += 1
        return next_id - 1

    for position, value in enumerate(result.outputs):
        base, sliced = chain(value)
        if base in targets or (sliced and base != value):
            result.outputs[position] = copy_of(value)
    for position, (param, value) in enumerate(result.updates):
        base, sliced = chain(value)
        if sliced and result.ops[base].op == "parameter":
            result.updates[position] = (param, copy_of(value))
    return result


def _constant_scalar(lp: LoweredProgram, value: int) -> float | None:
    """The value of a constant (or a broadcast of one) holding a single repeated number."""
    op = lp.ops[value]
    if op.op == "broadcast_to":
        op = lp.ops[op.inputs[0]]
    if op.op != "constant":
        return None
    values = np.asarray(op.attrs["value"])
    if values.size == 0 or not np.all(values == values.flat[0]):
        return None
    return float(values.flat[0])


def simplify_powers(lp: LoweredProgram) -> LoweredProgram:
    """Rewrite ``x ** c`` for a constant c of 1, 2 or 0.5 as x, x * x and sqrt(x), and
    ``x * 1`` (the seed of a gradient, say) as x.

    A general power is a scalar ``pow`` call that does not vectorise; ``x ** 2`` (squares in
    losses, the ``power`` in the VJP of ``x ** 2``) is then as fast as a multiply.

    >>> # lp = simplify_powers(lp)  # power(x, 2.0) becomes multiply(x, x)
    """
    result = lp.copy()
    for op in result.ops.values():
        if op.op == "multiply":
            for one, other in (op.inputs, op.inputs[::-1]):
                kept = result.ops[other]
                if _constant_scalar(result, one) != 1.0 or kept.dtype != op.dtype:
                    continue
                if kept.shape == op.shape:
                    op.op, op.inputs = "stop_gradient", [other]  # the identity view
                else:
                    op.op, op.inputs, op.attrs = "broadcast_to", [other], {"shape": op.shape}
                break
            continue
        if op.op != "power":
            continue
        base, exponent = (result.ops[i] for i in op.inputs)
        if exponent.op != "constant" or tuple(base.shape) != tuple(op.shape):
            continue
        values = np.asarray(exponent.attrs["value"])
        if values.size == 0 or not np.all(values == values.flat[0]):
            continue
        power = float(values.flat[0])
        if power == 1.0:
            # The backend IR's identity: a view of its input (no kernel, no copy).
            op.op, op.inputs = "stop_gradient", [base.id]
        elif power == 2.0:
            op.op, op.inputs = "multiply", [base.id, base.id]
        elif power == 0.5:
            op.op, op.inputs = "sqrt", [base.id]
    return eliminate_dead(result)


def accumulate_products(lp: LoweredProgram) -> LoweredProgram:
    """Turn a parameter update ``p - c * (a @ b)`` (also ``p + c * (a @ b)``, ``p - a @ b``)
    into one backend op ``matmul_acc(a, b, p)`` with ``alpha = -c``: BLAS computes
    ``alpha * a @ b + p`` and, when the memory plan lets it, writes straight into ``p``.

    The gradient of a weight matrix then never exists as a buffer of its own, and the update
    costs no pass over the weights. Only 2-D float products whose result feeds nothing else.

    >>> # lp = accumulate_products(lp)  # subtract(W, multiply(0.1, matmul(xT, g))) -> matmul_acc
    """
    result = lp.copy()
    consumers = result.consumers()
    for param, value in result.updates:
        op = result.ops[value]
        if op.op not in ("add", "subtract") or op.inputs[0] != param or op.shape != \
                result.ops[param].shape:
            continue
        sign = -1.0 if op.op == "subtract" else 1.0
        term = result.ops[op.inputs[1]]
        scale = 1.0
        if term.op == "multiply" and len(consumers[term.id]) == 1:
            for constant, other in (term.inputs, term.inputs[::-1]):
                factor = _constant_scalar(result, constant)
                if factor is not None and result.ops[other].op == "matmul":
                    scale, term = factor, result.ops[other]
                    break
        if term.op != "matmul" or len(consumers[term.id]) != 1 or term.ndim != 2:
            continue
        if term.shape != op.shape or term.dtype != op.dtype or op.inputs[1] == param:
            continue
        a, b = term.inputs
        op.op, op.inputs, op.attrs = "matmul_acc", [a, b, param], {"alpha": sign * scale}
        op.labels = [*op.labels, *term.labels]
    return eliminate_dead(result)


def join_pads(lp: LoweredProgram) -> LoweredProgram:
    """Rewrite a sum of zero pads that tile one axis, ``pad(a) + pad(b) + ...``, as
    ``concatenate([a, b, ...])``.

    The gradient of a value read through disjoint slices (an LSTM's four gates cut from one
    product) is such a sum: one zero-filled buffer per slice and one add over them all
    became one copy per part.

    >>> # lp = join_pads(lp)  # add(pad(a, lo=(0, 0), hi=(0, 4)), pad(b, lo=(0, 4)...))
    """
    result = lp.copy()
    consumers = result.consumers()
    roots = set(result.roots)
    covered: set[int] = set()
    for op in reversed(list(result.ops.values())):
        if op.op != "add" or op.id in covered:
            continue
        leaves, inner = _add_leaves(result, op, consumers, roots)
        joined = _tiling(result, op, leaves)
        if joined is None:
            continue
        covered |= inner
        axis, parts = joined
        op.op, op.inputs, op.attrs = "concatenate", parts, {"axis": axis}
    return eliminate_dead(result)


def _add_leaves(lp: LoweredProgram, root: LOp, consumers: dict[int, list[int]],
                roots: set[int]) -> tuple[list[LOp], set[int]]:
    """The terms of the add tree under ``root`` (adds used only there are opened) and the
    adds opened."""
    leaves: list[LOp] = []
    inner: set[int] = set()
    stack = [root]
    while stack:
        op = stack.pop()
        for value in op.inputs:
            term = lp.ops[value]
            opened = (term.op == "add" and len(consumers[value]) == 1 and value not in roots
                      and term.shape == root.shape)
            if opened:
                inner.add(value)
                stack.append(term)
            else:
                leaves.append(term)
    return leaves, inner


def _tiling(lp: LoweredProgram, root: LOp, leaves: list[LOp]) -> tuple[int, list[int]] | None:
    """(axis, inputs in order) when ``leaves`` are zero pads of ``root``'s shape and dtype
    that tile one axis exactly; None otherwise."""
    if len(leaves) < 2:
        return None
    axes = set()
    for pad in leaves:
        if pad.op != "pad" or pad.shape != root.shape or pad.dtype != root.dtype:
            return None
        if any(pad.attrs["interior"]) or float(pad.attrs["value"]) != 0.0:
            return None
        axes |= {i for i, (lo, hi) in enumerate(zip(pad.attrs["lo"], pad.attrs["hi"],
                                                     strict=True)) if lo or hi}
    if len(axes) != 1:
        return None
    (axis,) = axes
    end = 0
    parts = []
    for pad in sorted(leaves, key=lambda p: p.attrs["lo"][axis]):
        if pad.attrs["lo"][axis] != end:
            return None  # a gap or an overlap
        size = lp.ops[pad.inputs[0]].shape[axis]
        if not isinstance(size, int):
            return None
        end += size
        parts.append(pad.inputs[0])
    return (axis, parts) if end == root.shape[axis] else None
