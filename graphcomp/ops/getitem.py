"""``x[index]`` with numpy's rules: basic slicing, negative steps and integer-array indexing.

Basic items (ints, slices with positive steps, ``None``, ``...``) become one strided slice and
a reshape. A slice with a negative step over a static axis becomes a ``take`` of the positions
numpy would visit. Integer arrays (lists, numpy arrays, one integer tensor) follow numpy's
advanced indexing: the index arrays broadcast together, and their shape replaces the indexed
axes in place when those are adjacent in the index, or goes first when they are not; an int
next to an array counts as an array. Gradients come from ``take`` (a scatter-add).

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((5, 4, 3), "float64", name="x")
...     y = x[::-1, [0, 2], 1:]
...     z = x[3, 1:, [0, 2]]
>>> y.shape, z.shape
((5, 2, 2), (2, 3))
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ir import user_source_line
from graphcomp.ir.dims import Dim
from graphcomp.ops import functions as F
from graphcomp.ops.tensor import Tensor


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` as numpy computes it (see the module docstring)."""
    items = _expand(x, index if isinstance(index, tuple) else (index,))
    if builtins.any(_is_array(i) for i in items):
        return _advanced(x, items)
    return _basic(x, items)


def _is_array(item: Any) -> bool:
    return isinstance(item, (Tensor, list, np.ndarray))


def _error(message: str) -> ShapeError:
    return ShapeError(f"{message} (at {user_source_line()})")


def _expand(x: Tensor, items: tuple) -> list[Any]:
    """The index with ``...`` replaced by full slices and missing trailing axes added."""
    if builtins.sum(1 for i in items if i is Ellipsis) > 1:
        raise _error("an index can only have a single ellipsis ('...')")
    for item in items:
        if isinstance(item, (bool, np.bool_)) or (
                _is_array(item) and not isinstance(item, Tensor)
                and np.asarray(item).dtype == np.bool_):
            raise _error(f"boolean index {item!r} is not supported; use gc.where")
    used = builtins.sum(1 for i in items if i is not None and i is not Ellipsis)
    if used > x.ndim:
        raise _error(f"too many indices for a tensor of rank {x.ndim}")
    expanded: list[Any] = []
    for item in items:
        if item is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - used))
        else:
            expanded.append(item)
    return expanded + [slice(None)] * (x.ndim - builtins.sum(1 for i in expanded if i is not None))


def _int_position(item: Any, d: Dim, axis: int) -> int:
    if isinstance(d, str):
        raise _error(f"cannot index symbolic dimension {d!r} with an int")
    i = int(item) + d if item < 0 else int(item)
    if not 0 <= i < d:
        raise _error(f"index {item} is out of range for axis {axis} of size {d}")
    return i


def _basic(x: Tensor, items: list[Any]) -> Tensor:
    """Ints, slices and ``None``: one strided slice, a reshape, and a ``take`` per slice with
    a negative step."""
    starts: list[int] = []
    stops: list[Dim] = []
    steps: list[int] = []
    out_shape: list[Dim] = []
    reversed_axes: list[tuple[int, np.ndarray]] = []  # (output axis, positions to take)
    axis = 0
    for item in items:
        if item is None:
            out_shape.append(1)
            continue
        d = x.shape[axis]
        if isinstance(item, (int, np.integer)):
            i = _int_position(item, d, axis)
            starts.append(i)
            stops.append(i + 1)
            steps.append(1)
        elif isinstance(item, slice):
            start, stop, step = _slice_bounds(item, d)
            if step < 0:  # whole axis here; the positions are taken afterwards
                assert isinstance(d, int)
                reversed_axes.append((len(out_shape), np.arange(d)[item]))
                start, stop, step = 0, d, 1
            starts.append(start)
            stops.append(stop)
            steps.append(step)
            out_shape.append(stop if isinstance(stop, str) else len(range(start, stop, step)))
        else:
            raise _error(f"unsupported index {item!r}")
        axis += 1
    result = F.reshape(F.slice_general(x, starts, stops, steps), out_shape)
    for out_axis, positions in reversed_axes:
        result = F.take(result, positions, axis=out_axis)
    return result


def _slice_bounds(item: slice, d: Dim) -> tuple[int, Dim, int]:
    if isinstance(d, str):
        if item != slice(None) and item != slice(None, None, 1):
            raise _error(f"only ':' can slice symbolic dimension {d!r}")
        return 0, d, 1
    start, stop, step = item.indices(d)
    return (start, builtins.max(stop, start), step) if step > 0 else (start, stop, step)


def _advanced(x: Tensor, items: list[Any]) -> Tensor:
    """numpy's advanced indexing: ints next to arrays count as 0-d arrays; the index arrays
    broadcast together; their shape goes where the first of them was when they are adjacent
    in the index, first otherwise."""
    positions = [p for p, item in enumerate(items)
                 if _is_array(item) or isinstance(item, (int, np.integer))]
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    arrays = [p for p in positions if _is_array(items[p])]
    if len(arrays) == 1:
        return _one_array(x, items, arrays[0], adjacent)
    if builtins.any(isinstance(items[p], Tensor) for p in arrays):
        raise _error("an index tensor can only be combined with ints, slices, None and "
                     "'...', not with other array indices")
    kept = [slice(None) if p in positions else item for p, item in enumerate(items)]
    base = _basic(x, kept)
    axes = [_axis_after(kept, p) for p in positions]
    return _gather_many(base, axes, [items[p] for p in positions], adjacent)


def _axis_after(kept: list[Any], position: int) -> int:
    """The output axis of index item ``position`` (ints before it remove their axes)."""
    return builtins.sum(1 for item in kept[:position] if not isinstance(item, (int, np.integer)))


def _one_array(x: Tensor, items: list[Any], position: int, adjacent: bool) -> Tensor:
    """One index array (or tensor) and ints: the ints index first, then one ``take``."""
    kept = [slice(None) if p == position else item for p, item in enumerate(items)]
    base = _basic(x, kept)
    at = _axis_after(kept, position)
    item = items[position]
    index = item if isinstance(item, Tensor) else _checked(item, base, at)
    result = F.take(base, index, axis=at)
    if adjacent or at == 0:
        return result
    n_index = index.ndim
    order = list(range(at, at + n_index)) + list(range(at)) + list(
        range(at + n_index, result.ndim))
    return F.transpose(result, order)


def _checked(item: Any, base: Tensor, axis: int) -> np.ndarray:
    """A constant index array, made non-negative and checked against the axis size."""
    d = base.shape[axis]
    if isinstance(d, str):
        raise _error(f"integer-array index on symbolic dimension {d!r}: use an index tensor")
    index = np.asarray(item)
    if index.size and index.dtype.kind not in "iu":
        raise _error(f"index arrays must hold integers, got {index.dtype}")
    index = index.astype(np.int64)
    if index.size and (index.min() < -d or index.max() >= d):
        raise _error(f"index {index.min() if index.min() < -d else index.max()} is out of "
                     f"range for axis {axis} of size {d}")
    return np.where(index < 0, index + d, index)


def _gather_many(base: Tensor, axes: list[int], items: list[Any], adjacent: bool) -> Tensor:
    """Several constant index arrays: the indexed axes moved first and merged (static sizes),
    one ``take`` of the flat positions, the broadcast index shape put where numpy puts it."""
    indices = [_checked(item, base, a) for item, a in zip(items, axes, strict=True)]
    try:
        indices = list(np.broadcast_arrays(*indices))
    except ValueError:
        shapes = " ".join(str(list(np.shape(i))) for i in indices)
        raise _error(f"shape mismatch: index arrays of shapes {shapes} do not broadcast") from None
    sizes = [int(base.shape[a]) for a in axes]
    rest = [a for a in range(base.ndim) if a not in axes]
    moved = F.transpose(base, axes + rest)
    merged = F.reshape(moved, [int(np.prod(sizes)), *[base.shape[a] for a in rest]])
    flat = np.ravel_multi_index(tuple(indices), sizes) if indices[0].size else indices[0]
    result = F.take(merged, flat, axis=0)
    if not adjacent or axes[0] == 0:
        return result
    # adjacent: the index dims go where the first indexed axis was
    n_index = flat.ndim
    order = list(range(n_index, n_index + axes[0])) + list(range(n_index)) + list(
        range(n_index + axes[0], result.ndim))
    return F.transpose(result, order)
