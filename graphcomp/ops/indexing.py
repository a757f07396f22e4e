"""Gather and its adjoint: ``take`` (embedding lookup) and ``scatter_add``; ``check_index``,
which passes class labels through unchanged and refuses one outside ``[0, size)``.

Index rule (docs/guarantees.md, "Index checks"): ``take`` and ``scatter_add`` index an axis the
way numpy does (``-k`` counts from the end, anything outside ``[-size, size)`` is an error);
class labels (``one_hot``, integer labels of ``softmax_cross_entropy``) must lie in
``[0, classes)``: a label of -1 is an error, not the last class. Every backend raises
``InputError`` at call time, naming the node and, when the indices are a placeholder's values
(through reshapes), that placeholder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import DTypeError, InputError, ShapeError
from graphcomp.ir import DimTable, Node, shape_str
from graphcomp.ops import functions as F
from graphcomp.ops.registry import OpDef, Sample, register


def _check_indices(indices: Node) -> None:
    if indices.dtype.kind != "i":
        raise DTypeError(f"indices must be int32 or int64, got {indices.dtype}")


def _take_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    x, indices = nodes
    _check_indices(indices)
    axis = attrs["axis"]
    if isinstance(dims.resolve(x.shape[axis]), str):
        raise ShapeError("cannot take along a symbolic dimension")
    return x.shape[:axis] + indices.shape + x.shape[axis + 1 :], x.dtype


# Where each index op reads its indices, and the ops whose output holds exactly the values of
# their first input (so a bad index there is a bad value of that input).
INDEX_OPERAND = {"take": 1, "scatter_add": 1, "check_index": 0, "permute": 1}
_SAME_VALUES = frozenset({"reshape", "stop_gradient", "check_index"})


def index_problem(indices: np.ndarray, size: int, op: str) -> str | None:
    """What is wrong with ``indices`` for index op ``op`` over ``size`` positions (None: nothing).

    ``take`` and ``scatter_add`` accept ``[-size, size)`` (numpy's rule); ``check_index`` (class
    labels) accepts ``[0, size)``.

    >>> index_problem(np.array([0, 8]), 8, "check_index")
    'label 8 is out of range for 8 classes (labels must lie in [0, 8))'
    """
    low = 0 if op in ("check_index", "permute") else -size
    if not indices.size or (indices.min() >= low and indices.max() < size):
        return None
    bad = indices[(indices < low) | (indices >= size)].flat[0]
    if op == "check_index":
        return f"label {bad} is out of range for {size} classes (labels must lie in [0, {size}))"
    return f"{op}: index {bad} is out of range for an axis of size {size}"


def index_source(node: Node) -> Node | None:
    """The placeholder whose values are ``node``'s indices (through reshapes), if there is one."""
    current = node.inputs[INDEX_OPERAND[node.op]]
    while current.op in _SAME_VALUES or _widening_int_cast(current):
        current = current.inputs[0]
    return current if current.op == "placeholder" else None


def _widening_int_cast(node: Node) -> bool:
    if node.op != "cast":
        return False
    source = node.inputs[0].dtype
    return source.kind == node.dtype.kind == "i" and node.dtype.itemsize >= source.itemsize


def indexed_size(node: Node, shape_of: Any) -> int:
    """How many positions index op ``node`` indexes (``shape_of(node)``: a concrete shape)."""
    if node.op == "check_index":
        return int(node.attrs["size"])
    return int(shape_of(node.inputs[0])[node.attrs["axis"]])


def index_error_message(node: Node, problem: str) -> str:
    """The call-time error for bad indices of ``node``: the node, the problem, the placeholder."""
    source = index_source(node)
    if source is None:
        return f"{node.describe()}: {problem}"
    title = f"{source.name!r} (%{source.id})" if source.name else f"%{source.id}"
    return f"{node.describe()}: {problem}, read from placeholder {title}"


def _bounds_checked(indices: np.ndarray, size: int, op: str) -> np.ndarray:
    problem = index_problem(indices, size, op)
    if problem is not None:
        raise InputError(problem)
    return indices


def _take_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x, indices = xs
    axis = attrs["axis"]
    return np.take(x, _bounds_checked(indices, x.shape[axis], "take"), axis=axis)


def _scatter_add_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    base, indices, updates = nodes
    _check_indices(indices)
    axis = attrs["axis"]
    expected = base.shape[:axis] + indices.shape + base.shape[axis + 1 :]
    if len(expected) != updates.ndim:
        raise ShapeError(f"updates must have shape {shape_str(expected)}")
    for a, b in zip(expected, updates.shape, strict=True):
        dims.unify(a, b)
    if updates.dtype != base.dtype:
        raise DTypeError(f"updates dtype {updates.dtype} differs from base dtype {base.dtype}")
    return base.shape, base.dtype


def _scatter_add_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    base, indices, updates = xs
    axis = attrs["axis"]
    out = np.array(base, copy=True)
    k = indices.ndim
    moved = np.moveaxis(updates, list(range(axis, axis + k)), list(range(k)))
    target = np.moveaxis(out, axis, 0)
    np.add.at(target, _bounds_checked(indices, base.shape[axis], "scatter_add"), moved)
    return out


def _check_index_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (labels,) = nodes
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"labels must be integers, got {labels.dtype}")
    if not isinstance(attrs["size"], int) or attrs["size"] < 0:
        raise ShapeError(f"the number of classes must be an int >= 0, got {attrs['size']!r}")
    return labels.shape, labels.dtype


def _check_index_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    return np.array(_bounds_checked(xs[0], attrs["size"], "check_index"), copy=True)


def _check_index_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    labels = np.array([3, 0, 1, 3, 2], dtype="int64")
    return [
        Sample((labels,), {"size": 4}, symbolic=({0: "N"},), smooth=False),
        Sample((labels.astype("int32").reshape(5, 1),), {"size": 5}, smooth=False),
    ]


def _vjp_take(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    x, indices = ins
    return [F.scatter_add(F.zeros_like(x), indices, g, axis=attrs["axis"]), None]


def _vjp_scatter_add(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    indices = ins[1]
    return [g, None, F.take(g, indices, axis=attrs["axis"])]


def _take_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    table = rng.standard_normal((6, 3)).astype(dtype)
    return [
        Sample(
            (table, np.array([0, 5, 2, 2], dtype="int64")), {"axis": 0}, symbolic=({}, {0: "N"})
        ),
        Sample((table, np.array([[1, 0], [2, 2]], dtype="int32")), {"axis": 1}),
    ]


def _scatter_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    base = rng.standard_normal((5, 3)).astype(dtype)
    indices = np.array([0, 4, 4, 1], dtype="int64")
    updates = rng.standard_normal((4, 3)).astype(dtype)
    return [Sample((base, indices, updates), {"axis": 0})]


register(
    OpDef(
        name="take",
        kind="index",
        infer=_take_rule,
        numpy_impl=_take_impl,
        vjp=_vjp_take,
        samples=_take_samples,
        doc="gather along an axis (numpy take; negative indices count from the end)",
    )
)

register(
    OpDef(
        name="scatter_add",
        kind="index",
        infer=_scatter_add_rule,
        numpy_impl=_scatter_add_impl,
        vjp=_vjp_scatter_add,
        samples=_scatter_samples,
        doc="base with updates added at indices along an axis (repeated indices accumulate)",
    )
)

register(
    OpDef(
        name="check_index",
        kind="index",
        infer=_check_index_rule,
        numpy_impl=_check_index_impl,
        differentiable=False,
        samples=_check_index_samples,
        doc="class labels, unchanged; InputError for one outside [0, size) (one_hot's check)",
    )
)
