"""numpy functions built from graphcomp's primitives: no registry entry, no kernel of their own.

Each is a few primitives whose values, gradients and kernels are already tested; the
composites' own tests (``tests/ops/test_composites.py``) check them against numpy's formula,
against finite differences and on the numba backend. Transcendentals go through ``exp``,
``log`` and ``log1p``, so their loops vectorise like those do.

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 8), "float32", name="x")
...     v = gc.var(x, axis=1, ddof=1)
>>> v.shape, v.dtype
(('N',), dtype('float32'))
"""

from __future__ import annotations

import builtins
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ir import user_source_line
from graphcomp.ops import functions as F
from graphcomp.ops.functions import AxisLike
from graphcomp.ops.tensor import Tensor, as_tensor

LN2 = math.log(2.0)
LN10 = math.log(10.0)


# ================================================================ statistics


def var(x: Any, axis: AxisLike = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
    """Variance over axes, dividing by ``n - ddof`` (numpy's ``var``). ``gc.var(x, axis=0)``"""
    x = F._to_float(x)
    axes = F._normalize_axes(axis, x.ndim)
    deviation = x - F.mean(x, axis=axes, keepdims=True)
    total = F.sum(deviation * deviation, axis=axes, keepdims=keepdims)
    sizes = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in sizes):
        return total / float(math.prod(sizes) - ddof)
    return total / (F.dim_size(x, axes, x.dtype) - float(ddof))


def std(x: Any, axis: AxisLike = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
    """Standard deviation, ``sqrt(var(x, axis, ddof))``. ``gc.std(x, axis=-1, keepdims=True)``"""
    return F.sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims))


# ================================================================ elementwise


def log2(x: Any) -> Tensor:
    """Base-2 logarithm. ``gc.log2(p)``"""
    return F.log(x) * (1.0 / LN2)


def log10(x: Any) -> Tensor:
    """Base-10 logarithm. ``gc.log10(x)``"""
    return F.log(x) * (1.0 / LN10)


def exp2(x: Any) -> Tensor:
    """``2 ** x``. ``gc.exp2(x)``"""
    return F.exp(F._to_float(x) * LN2)


def reciprocal(x: Any) -> Tensor:
    """``1 / x`` (integers give floats, unlike numpy's integer reciprocal). ``gc.reciprocal(x)``"""
    return 1.0 / F._to_float(x)


def logaddexp(a: Any, b: Any) -> Tensor:
    """``log(exp(a) + exp(b))`` without overflow. ``gc.logaddexp(a, b)``

    Both infinite and equal (``-inf``, ``-inf``) gives NaN where numpy gives ``-inf``.
    """
    a_, b_ = F._promote(F._to_float(a), F._to_float(b))
    return F.maximum(a_, b_) + F.log1p(F.exp(-F.abs(a_ - b_)))


def logaddexp2(a: Any, b: Any) -> Tensor:
    """``log2(2**a + 2**b)`` without overflow. ``gc.logaddexp2(a, b)``"""
    a_, b_ = F._promote(F._to_float(a), F._to_float(b))
    return logaddexp(a_ * LN2, b_ * LN2) * (1.0 / LN2)


def tan(x: Any) -> Tensor:
    """Tangent, ``sin(x) / cos(x)``. ``gc.tan(x)``"""
    x = F._to_float(x)
    return F.sin(x) / F.cos(x)


def sinh(x: Any) -> Tensor:
    """Hyperbolic sine (through ``expm1``: accurate near 0). ``gc.sinh(x)``"""
    x = F._to_float(x)
    return (F.expm1(x) - F.expm1(-x)) * 0.5


def cosh(x: Any) -> Tensor:
    """Hyperbolic cosine. ``gc.cosh(x)``"""
    x = F._to_float(x)
    return (F.exp(x) + F.exp(-x)) * 0.5


def deg2rad(x: Any) -> Tensor:
    """Degrees to radians. ``gc.deg2rad(angle)``"""
    return F._to_float(x) * (math.pi / 180.0)


def rad2deg(x: Any) -> Tensor:
    """Radians to degrees. ``gc.rad2deg(angle)``"""
    return F._to_float(x) * (180.0 / math.pi)


# ================================================================ shape and layout


def swapaxes(x: Any, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes. ``gc.swapaxes(x, 0, 1)``"""
    x = as_tensor(x)
    (a,) = F._normalize_axes(axis1, x.ndim)
    (b,) = F._normalize_axes(axis2, x.ndim)
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return F.transpose(x, order)


def moveaxis(x: Any, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
    """Move axes to new positions, the others keeping their order. ``gc.moveaxis(x, 0, -1)``"""
    x = as_tensor(x)
    sources = _axes_list(source, x.ndim)
    destinations = _axes_list(destination, x.ndim)
    if len(sources) != len(destinations):
        raise ShapeError(f"moveaxis: {len(sources)} source axes but {len(destinations)} "
                         f"destinations (at {user_source_line()})")
    rest = [a for a in range(x.ndim) if a not in sources]
    order: list[int] = [-1] * x.ndim
    for s, d in zip(sources, destinations, strict=True):
        order[d] = s
    fill = iter(rest)
    return F.transpose(x, [a if a >= 0 else next(fill) for a in order])


def _axes_list(axes: int | Sequence[int], ndim: int) -> list[int]:
    """Axes in the order given (``_normalize_axes`` sorts them), each checked and made >= 0."""
    return [F._normalize_axes(a, ndim)[0] for a in ([axes] if isinstance(axes, int) else axes)]


def atleast_1d(x: Any) -> Tensor:
    """``x`` with at least one axis. ``gc.atleast_1d(scalar)``"""
    x = as_tensor(x)
    return F.reshape(x, (1,)) if x.ndim == 0 else x


def atleast_2d(x: Any) -> Tensor:
    """``x`` with at least two axes (new ones in front). ``gc.atleast_2d(v)``"""
    x = atleast_1d(x)
    return F.expand_dims(x, 0) if x.ndim == 1 else x


def atleast_3d(x: Any) -> Tensor:
    """``x`` with at least three axes, as numpy places them. ``gc.atleast_3d(m)``"""
    x = as_tensor(x)
    if x.ndim == 0:
        return F.reshape(x, (1, 1, 1))
    if x.ndim == 1:
        return F.expand_dims(x, (0, 2))
    return F.expand_dims(x, 2) if x.ndim == 2 else x


def hstack(tensors: Sequence[Any]) -> Tensor:
    """Join along the second axis (the first for 1-D). ``gc.hstack([a, b])``"""
    parts = [atleast_1d(t) for t in tensors]
    return F.concatenate(parts, axis=0 if parts and parts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Any]) -> Tensor:
    """Join along the first axis, 1-D inputs as rows. ``gc.vstack([a, b])``"""
    return F.concatenate([atleast_2d(t) for t in tensors], axis=0)


def outer(a: Any, b: Any) -> Tensor:
    """Outer product of two vectors: ``out[i, j] = a[i] * b[j]``. ``gc.outer(u, v)``"""
    a_, b_ = F._promote(a, b)
    for t in (a_, b_):
        if t.ndim != 1:
            raise ShapeError(f"outer takes vectors, not shape {list(t.shape)}; reshape first "
                             f"(at {user_source_line()})")
    return F.expand_dims(a_, 1) * F.expand_dims(b_, 0)


def _static_square(x: Tensor, what: str) -> tuple[int, int]:
    rows, cols = x.shape[-2], x.shape[-1]
    if not (isinstance(rows, int) and isinstance(cols, int)):
        raise ShapeError(f"{what} needs static sizes on its last two axes, not "
                         f"{list(x.shape)} (at {user_source_line()})")
    return rows, cols


def tril(x: Any, k: int = 0) -> Tensor:
    """Lower triangle of the last two axes, zeros above diagonal ``k``. ``gc.tril(scores)``"""
    x = as_tensor(x)
    rows, cols = _static_square(x, "tril")
    mask = np.tri(rows, cols, k, dtype=bool)
    return F.where(mask, x, F.zeros_like(x))


def triu(x: Any, k: int = 0) -> Tensor:
    """Upper triangle of the last two axes, zeros below diagonal ``k``. ``gc.triu(m, 1)``"""
    x = as_tensor(x)
    rows, cols = _static_square(x, "triu")
    mask = ~np.tri(rows, cols, k - 1, dtype=bool)
    return F.where(mask, x, F.zeros_like(x))


def trace(x: Any, offset: int = 0) -> Tensor:
    """Sum of the diagonal of a matrix (``offset`` above it). ``gc.trace(m)``"""
    x = as_tensor(x)
    if x.ndim != 2:
        raise ShapeError(f"trace takes a matrix, not shape {list(x.shape)} "
                         f"(at {user_source_line()})")
    rows, cols = _static_square(x, "trace")
    diagonal = np.eye(rows, cols, offset, dtype=bool)
    return F.sum(F.where(diagonal, x, F.zeros_like(x)))


def diff(x: Any, n: int = 1, axis: int = -1) -> Tensor:
    """``n``-th difference along ``axis`` (``x[1:] - x[:-1]`` there, ``n`` times). ``gc.diff(p)``"""
    x = as_tensor(x)
    (axis_,) = F._normalize_axes(axis, x.ndim)
    before = (slice(None),) * axis_
    for _ in range(n):
        x = x[(*before, slice(1, None))] - x[(*before, slice(None, -1))]
    return x


# ================================================================ reordering and repeating
# Static axes only: each is one ``take`` of the positions numpy would read (its gradient is a
# scatter-add), so the index array is computed here, by numpy itself where it can.


def _static_axis(x: Tensor, axis: int, what: str) -> tuple[int, int]:
    (axis_,) = F._normalize_axes(axis, x.ndim)
    d = x.shape[axis_]
    if not isinstance(d, int):
        raise ShapeError(f"{what} needs a static size on axis {axis_}, not {d!r} "
                         f"(at {user_source_line()})")
    return axis_, d


def _flat(x: Tensor) -> Tensor:
    return F.reshape(x, (-1,))


def ravel(x: Any) -> Tensor:
    """``x`` as one axis, in C order. ``gc.ravel(images)``"""
    return _flat(as_tensor(x))


def flip(x: Any, axis: int | Sequence[int] | None = None) -> Tensor:
    """Reverse the order of elements along ``axis`` (every axis when None). ``gc.flip(x, 0)``"""
    x = as_tensor(x)
    axes = range(x.ndim) if axis is None else _axes_list(axis, x.ndim)
    for a in axes:
        a_, d = _static_axis(x, a, "flip")
        x = F.take(x, np.arange(d)[::-1], axis=a_)
    return x


def fliplr(x: Any) -> Tensor:
    """Reverse the second axis. ``gc.fliplr(m)``"""
    return flip(x, 1)


def flipud(x: Any) -> Tensor:
    """Reverse the first axis. ``gc.flipud(m)``"""
    return flip(x, 0)


def rot90(x: Any, k: int = 1, axes: tuple[int, int] = (0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times in the plane of ``axes``. ``gc.rot90(img)``"""
    x = as_tensor(x)
    a, b = axes
    k %= 4
    if k == 1:
        return swapaxes(flip(x, b), a, b)
    if k == 2:
        return flip(x, [a, b])
    if k == 3:
        return flip(swapaxes(x, a, b), b)
    return x


def roll(x: Any, shift: int, axis: int | None = None) -> Tensor:
    """Shift elements along ``axis`` cyclically (the flat array when None). ``gc.roll(x, 1, 0)``"""
    x = as_tensor(x)
    if axis is None:
        return F.reshape(roll(_flat(x), shift, 0), x.shape)
    a, d = _static_axis(x, axis, "roll")
    return F.take(x, np.roll(np.arange(d), shift), axis=a)


def repeat(x: Any, repeats: int | Sequence[int], axis: int | None = None) -> Tensor:
    """Repeat each element ``repeats`` times along ``axis`` (flat when None).
    ``gc.repeat(x, 2, axis=1)``"""
    x = as_tensor(x)
    if axis is None:
        x, axis = _flat(x), 0
    a, d = _static_axis(x, axis, "repeat")
    return F.take(x, np.repeat(np.arange(d), repeats), axis=a)


def tile(x: Any, reps: int | Sequence[int]) -> Tensor:
    """Repeat the whole of ``x`` ``reps`` times along each axis. ``gc.tile(row, (4, 1))``"""
    x = as_tensor(x)
    counts = [reps] if isinstance(reps, int) else list(reps)
    while x.ndim < len(counts):
        x = F.expand_dims(x, 0)
    counts = [1] * (x.ndim - len(counts)) + counts
    for a, count in enumerate(counts):
        if count != 1:
            _, d = _static_axis(x, a, "tile")
            x = F.take(x, np.tile(np.arange(d), count), axis=a)
    return x


def rollaxis(x: Any, axis: int, start: int = 0) -> Tensor:
    """numpy's older ``moveaxis``: ``axis`` moved to before ``start``. ``gc.rollaxis(x, 2)``"""
    x = as_tensor(x)
    order = list(range(x.ndim))
    (a,) = F._normalize_axes(axis, x.ndim)
    start_ = start + x.ndim if start < 0 else start
    order.remove(a)
    order.insert(start_ if start_ <= a else start_ - 1, a)
    return F.transpose(x, order)


def diagonal(x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """The diagonal of the plane ``axis1``/``axis2``, as a last axis. ``gc.diagonal(m)``"""
    x = moveaxis(x, [axis1, axis2], [-2, -1])
    rows, cols = _static_square(x, "diagonal")
    positions = np.flatnonzero(np.eye(rows, cols, offset, dtype=bool))
    merged = F.reshape(x, (*x.shape[:-2], rows * cols))
    return F.take(merged, positions, axis=-1)


def diag(x: Any, k: int = 0) -> Tensor:
    """A vector's diagonal matrix, or a matrix's diagonal (numpy's ``diag``). ``gc.diag(v)``"""
    x = as_tensor(x)
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise ShapeError(f"diag takes a vector or a matrix, not shape {list(x.shape)} "
                         f"(at {user_source_line()})")
    _, n = _static_axis(x, 0, "diag")
    size = n + builtins.abs(k)
    rows = np.arange(n) + builtins.max(-k, 0)
    cols = np.arange(n) + builtins.max(k, 0)
    # each output element reads x at its diagonal position, or a zero appended to x
    source = np.full((size, size), n, dtype=np.int64)
    source[rows, cols] = np.arange(n)
    padded = F.concatenate([x, F.zeros_like(x[:1])])
    return F.take(padded, source)


# ================================================================ joining and splitting


def column_stack(tensors: Sequence[Any]) -> Tensor:
    """Vectors as columns (matrices as they are), joined along axis 1.
    ``gc.column_stack([a, b])``"""
    parts = [as_tensor(t) for t in tensors]
    return F.concatenate([F.expand_dims(p, 1) if p.ndim == 1 else p for p in parts], axis=1)


def append(x: Any, values: Any, axis: int | None = None) -> Tensor:
    """``values`` joined after ``x`` along ``axis`` (both flattened when None).
    ``gc.append(x, y, axis=0)``"""
    x, values_ = F._promote(x, values)
    if axis is None:
        return F.concatenate([_flat(x), _flat(values_)])
    return F.concatenate([x, values_], axis=axis)


def array_split(x: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split into parts along ``axis``: ``n`` nearly equal parts, or at the given indices.
    ``gc.array_split(x, 3)``"""
    x = as_tensor(x)
    a, d = _static_axis(x, axis, "split")
    if isinstance(indices_or_sections, int):
        if indices_or_sections <= 0:
            raise ShapeError(f"split: the number of sections must be positive, not "
                             f"{indices_or_sections} (at {user_source_line()})")
        size, extra = divmod(d, indices_or_sections)
        bounds = np.cumsum([0] + [size + 1] * extra + [size] * (indices_or_sections - extra))
    else:
        bounds = np.array([0, *[min(max(int(i), 0), d) for i in indices_or_sections], d])
    before = (slice(None),) * a
    return [x[(*before, slice(int(lo), int(max(lo, hi))))]
            for lo, hi in itertools.pairwise(bounds)]


def split(x: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split into equal parts (or at indices) along ``axis``; unequal parts are an error.
    ``gc.split(x, 2, axis=1)``"""
    x = as_tensor(x)
    if isinstance(indices_or_sections, int):
        _, d = _static_axis(x, axis, "split")
        if indices_or_sections <= 0 or d % indices_or_sections:
            raise ShapeError(f"split: axis of size {d} does not divide into "
                             f"{indices_or_sections} equal parts; use gc.array_split "
                             f"(at {user_source_line()})")
    return array_split(x, indices_or_sections, axis)


def hsplit(x: Any, indices_or_sections: int | Sequence[int]) -> list[Tensor]:
    """Split along the second axis (the first for a vector). ``gc.hsplit(m, 2)``"""
    x = as_tensor(x)
    return split(x, indices_or_sections, axis=1 if x.ndim > 1 else 0)


def vsplit(x: Any, indices_or_sections: int | Sequence[int]) -> list[Tensor]:
    """Split along the first axis. ``gc.vsplit(m, 2)``"""
    return split(x, indices_or_sections, axis=0)


def dsplit(x: Any, indices_or_sections: int | Sequence[int]) -> list[Tensor]:
    """Split along the third axis. ``gc.dsplit(volume, 2)``"""
    return split(x, indices_or_sections, axis=2)


def select(condlist: Sequence[Any], choicelist: Sequence[Any], default: Any = 0) -> Tensor:
    """Per element, the choice of the first true condition (``default`` if none).
    ``gc.select([x < 0, x > 1], [-x, x * x], x)``"""
    if len(condlist) != len(choicelist):
        raise ShapeError(f"select: {len(condlist)} conditions but {len(choicelist)} choices "
                         f"(at {user_source_line()})")
    result = as_tensor(default) if not isinstance(default, (int, float)) else default
    for condition, choice in zip(reversed(condlist), reversed(choicelist), strict=True):
        result = F.where(condition, choice, result)
    return as_tensor(result)


# ================================================================ rounding and non-finite values


def round(x: Any, decimals: int = 0) -> Tensor:
    """Round to ``decimals`` places, halves to even, as numpy does; zero gradient.

    Floats: ``rint(x * 10**decimals) / 10**decimals`` (``decimals < 0``: ``rint(x / 10**-d) *
    10**-d``), the factor in x's dtype, exactly numpy's steps. Integers are returned as they
    are for ``decimals >= 0`` and rounded through float64 otherwise, as numpy does.
    ``gc.round(x, 2)``
    """
    x = as_tensor(x)
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise TypeError(f"round: decimals must be an int, not {decimals!r} "
                        f"(at {user_source_line()})")
    if x.dtype.kind != "f":
        if decimals >= 0:
            return x
        return F.cast(round(F.cast(x, "float64"), decimals), x.dtype)
    if decimals == 0:
        return F.rint(x)
    with np.errstate(over="ignore"):  # numpy too rounds to NaN once 10**decimals overflows
        factor = np.power(np.float64(10.0), abs(int(decimals))).astype(x.dtype)
    if decimals > 0:
        return F.rint(x * factor) / factor
    return F.rint(x / factor) * factor


def nan_to_num(
    x: Any, copy: bool = True, nan: Any = 0.0, posinf: Any = None, neginf: Any = None
) -> Tensor:
    """``x`` with NaN, +inf and -inf replaced (by default by 0 and the dtype's largest and
    smallest finite values). The gradient passes where ``x`` is finite and is 0 where a value
    was replaced; integers are returned as they are. ``copy`` is accepted for numpy's
    signature: graph values are never changed in place. ``gc.nan_to_num(x, posinf=1e6)``
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        return x
    info = np.finfo(x.dtype)
    big = _replacement(x, info.max if posinf is None else posinf, "posinf")
    small = _replacement(x, info.min if neginf is None else neginf, "neginf")
    out = F.where(F.isnan(x), _replacement(x, nan, "nan"), x)
    return F.where(F.isinf(x), F.where(F.greater(x, 0), big, small), out)


def _replacement(x: Tensor, value: Any, what: str) -> Tensor:
    """``value`` in x's dtype, refused if broadcasting it would change x's shape."""
    tensor = F.cast(as_tensor(value, graph=x.graph), x.dtype)
    if tensor.ndim > x.ndim or any(
        d != 1 and d != x.shape[x.ndim - tensor.ndim + i] for i, d in enumerate(tensor.shape)
    ):
        raise ShapeError(f"nan_to_num: {what} of shape {list(tensor.shape)} does not broadcast to "
                         f"x's shape {list(x.shape)} (at {user_source_line()})")
    return tensor
