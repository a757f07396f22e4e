"""Scans and sorting along one axis: ``cumsum``, ``cumprod``, ``sort``, ``argsort`` and
``permute`` (the gather by a permutation that routes sort's gradient), with the public
functions ``prod``, ``cumsum``, ``cumprod``, ``sort``, ``argsort`` and ``partition``.

Every primitive here works line by line along ``axis``; the other axes may be symbolic.
Gradients never divide by the input: ``prod`` and ``cumprod`` use exclusive products, so zeros
in the input get their exact gradient (docs/numpy.md, "Reductions, scans and sorting").

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 8), "float64", name="x")
...     c = gc.cumsum(x, axis=1)
>>> c.shape
('N', 8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import DTypeError, InputError, ShapeError
from graphcomp.ir import DimTable, Node, shape_str, user_source_line
from graphcomp.ops import functions as F
from graphcomp.ops.functions import AxisLike
from graphcomp.ops.registry import OpDef, Sample, register
from graphcomp.ops.tensor import Tensor, apply, as_tensor

# ================================================================ shape rules


def _check_axis(x: Node, axis: Any) -> None:
    if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < x.ndim:
        raise ShapeError(f"axis {axis!r} must be an int in [0, {x.ndim})")


def _scan_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    _check_axis(x, attrs["axis"])
    if x.dtype == np.dtype("bool"):
        raise DTypeError("a scan of bool is not supported; cast first")
    return x.shape, x.dtype


def _sort_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    _check_axis(x, attrs["axis"])
    if x.dtype == np.dtype("bool"):
        raise DTypeError("sorting bool is not supported; cast first")
    return x.shape, x.dtype


def _argsort_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    shape, _ = _sort_rule(nodes, attrs, dims)
    return shape, np.dtype("int64")


def _permute_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    x, perm = nodes
    _check_axis(x, attrs["axis"])
    if perm.dtype != np.dtype("int64"):
        raise DTypeError(f"the permutation must be int64, got {perm.dtype}")
    if perm.ndim != x.ndim:
        raise ShapeError(f"the permutation must have shape {shape_str(x.shape)}")
    for a, b in zip(x.shape, perm.shape, strict=True):
        dims.unify(a, b)
    return x.shape, x.dtype


# ================================================================ numpy references


def _exclusive(y: np.ndarray, x: np.ndarray, axis: int, reverse: bool) -> np.ndarray:
    """The exclusive product scan from the inclusive one: shifted by one, starting at 1."""
    out = np.ones_like(y)
    n = x.shape[axis]
    inner = [slice(None)] * x.ndim
    outer = [slice(None)] * x.ndim
    if reverse:
        inner[axis], outer[axis] = slice(0, n - 1), slice(1, n)
    else:
        inner[axis], outer[axis] = slice(1, n), slice(0, n - 1)
    out[tuple(inner)] = y[tuple(outer)]
    return out


def _scan_impl(kind: str) -> Any:
    accumulate = np.cumsum if kind == "cumsum" else np.cumprod

    def impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
        x, axis, reverse = xs[0], attrs["axis"], attrs["reverse"]
        y = np.flip(accumulate(np.flip(x, axis), axis=axis), axis) if reverse else accumulate(
            x, axis=axis)
        y = y.astype(x.dtype, copy=False)
        return _exclusive(y, x, axis, reverse) if attrs.get("exclusive") else y

    return impl


def _permute_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x, perm = xs
    axis = attrs["axis"]
    n = x.shape[axis]
    if perm.size and not np.array_equal(np.sort(perm, axis=axis),
                                        np.broadcast_to(_arange_along(n, axis, x.ndim),
                                                        perm.shape)):
        raise InputError(f"permute: the indices are not a permutation of [0, {n}) along "
                         f"axis {axis}")
    return np.take_along_axis(x, perm, axis=axis)


def _arange_along(n: int, axis: int, ndim: int) -> np.ndarray:
    return np.arange(n).reshape([n if a == axis else 1 for a in range(ndim)])


# ================================================================ gradients


def _shifted(t: Tensor, d: int, axis: int, toward_start: bool) -> Tensor:
    """``t`` moved by ``d`` along a static ``axis``, zeros coming in: result[i] = t[i + d]
    (``toward_start``) or t[i - d]."""
    n = int(t.shape[axis])
    lo, hi = [0] * t.ndim, [0] * t.ndim
    starts, stops = [0] * t.ndim, list(t.shape)
    if toward_start:
        starts[axis], hi[axis] = d, d
    else:
        stops[axis], lo[axis] = n - d, d
    kept = F.slice_general(t, starts, stops, [1] * t.ndim)
    return F.pad_general(kept, lo, hi, [0] * t.ndim)


def _linear_scan(a: Tensor, b: Tensor, axis: int, backward: bool) -> Tensor:
    """s[i] = b[i] + a[i] * s[i + 1] (``backward``; else s[i] = b[i] + a[i] * s[i - 1]),
    zero past the end: log2(n) doubling steps of multiplies and adds, so its own gradient
    needs no division either."""
    n = int(a.shape[axis])
    d = 1
    while d < n:
        b = b + a * _shifted(b, d, axis, backward)
        if 2 * d < n:
            a = a * _shifted(a, d, axis, backward)
        d *= 2
    return b


def _vjp_cumsum(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    return [apply("cumsum", g, axis=attrs["axis"], reverse=not attrs["reverse"])]


def _vjp_cumprod(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    # d out[k] / d x[i] is the product of the scanned x[j], j != i: before i (the exclusive
    # scan) times the sum over k after i of g[k] times x between i and k (a linear scan).
    (x,) = ins
    axis, reverse = attrs["axis"], attrs["reverse"]
    if not isinstance(x.shape[axis], int):
        raise ShapeError(f"the gradient of cumprod needs a static size on the scanned axis "
                         f"{axis}, not {x.shape[axis]!r} (at {user_source_line()})")
    before = apply("cumprod", x, axis=axis, reverse=reverse, exclusive=True)
    towards_end = not reverse
    b = _shifted(g, 1, axis, towards_end) if attrs["exclusive"] else g
    after = _linear_scan(_shifted(x, 1, axis, towards_end), b, axis, towards_end)
    return [before * after]


def _others_product(x: Tensor, axis: int) -> Tensor:
    """For each element, the product of the other elements of its line along ``axis``."""
    return (apply("cumprod", x, axis=axis, reverse=False, exclusive=True)
            * apply("cumprod", x, axis=axis, reverse=True, exclusive=True))


def _vjp_prod(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    # Over axes (a1, ..., ak): the product of the others is, for each m, the product of the
    # other lines along a_m of x's product over a_(m+1..k): no division, exact at zeros.
    (x,) = ins
    axes = list(attrs["axes"])
    factor = F.expand_reduced(g, x.shape, axes, attrs["keepdims"])
    for m, axis in enumerate(axes):
        rest = tuple(axes[m + 1:])
        part = apply("reduce_prod", x, axes=rest, keepdims=True) if rest else x
        factor = factor * _others_product(part, axis)
    return [factor]


def _vjp_sort(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    (x,) = ins
    axis = attrs["axis"]
    order = apply("argsort", F.stop_gradient(x), axis=axis)
    rank = apply("argsort", order, axis=axis)  # the inverse permutation
    return [apply("permute", g, rank, axis=axis)]


def _vjp_permute(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    _, perm = ins
    axis = attrs["axis"]
    return [apply("permute", g, apply("argsort", perm, axis=axis), axis=axis), None]


# ================================================================ samples


def _scan_samples(rng: np.random.Generator, dtype: np.dtype, with_exclusive: bool
                  ) -> list[Sample]:
    x3 = (rng.uniform(0.5, 1.5, (2, 5, 3)) * rng.choice([-1, 1], (2, 5, 3))).astype(dtype)
    x2 = (rng.uniform(0.5, 1.5, (4, 6)) * rng.choice([-1, 1], (4, 6))).astype(dtype)
    extra = {"exclusive": False} if with_exclusive else {}
    samples = [
        Sample((x2,), {"axis": 1, "reverse": False, **extra}, symbolic=({0: "N"},)),
        Sample((x2,), {"axis": 0, "reverse": True, **extra}, symbolic=({1: "M"},)),
        Sample((x3,), {"axis": 1, "reverse": False, **extra}),
        Sample((x3,), {"axis": 2, "reverse": True, **extra}, symbolic=({0: "N"},)),
        Sample((x3[:, :1],), {"axis": 1, "reverse": False, **extra}),
    ]
    if with_exclusive:
        samples += [
            Sample((x2,), {"axis": 1, "reverse": False, "exclusive": True},
                   symbolic=({0: "N"},)),
            Sample((x3,), {"axis": 0, "reverse": True, "exclusive": True}),
        ]
    return samples


def _sort_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    # Distinct values (a tie makes sort's gradient jump); argsort's own tie samples are below.
    x2 = (rng.permutation(24).reshape(4, 6) / 4 + rng.uniform(0, 0.1, (4, 6))).astype(dtype)
    x3 = rng.permutation(30).reshape(2, 5, 3).astype(dtype) - 10.5
    return [
        Sample((x2,), {"axis": 1}, symbolic=({0: "N"},)),
        Sample((x2,), {"axis": 0}, symbolic=({1: "M"},)),
        Sample((x3,), {"axis": 1}),
        Sample((x3,), {"axis": 2}, symbolic=({0: "N", 2: "K"},)),
    ]


def _argsort_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    ties = rng.integers(0, 3, (5, 7)).astype(dtype)  # stable: ties keep their order
    return [*_sort_samples(rng, dtype), Sample((ties,), {"axis": 1}, symbolic=({0: "N"},)),
            Sample((ties,), {"axis": 0})]


def _permute_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    x = rng.standard_normal((4, 5)).astype(dtype)
    rows = np.stack([rng.permutation(5) for _ in range(4)]).astype("int64")
    cols = np.stack([rng.permutation(4) for _ in range(5)], axis=1).astype("int64")
    return [Sample((x, rows), {"axis": 1}, symbolic=({0: "N"}, {0: "N"})),
            Sample((x, cols), {"axis": 0})]


register(OpDef(
    name="cumsum", kind="structural", infer=_scan_rule, numpy_impl=_scan_impl("cumsum"),
    vjp=_vjp_cumsum, samples=lambda rng, dtype: _scan_samples(rng, dtype, False),
    doc="running sum along axis (from the end when reverse), in the input's dtype",
))

register(OpDef(
    name="cumprod", kind="structural", infer=_scan_rule, numpy_impl=_scan_impl("cumprod"),
    vjp=_vjp_cumprod, samples=lambda rng, dtype: _scan_samples(rng, dtype, True),
    doc="running product along axis (from the end when reverse; exclusive: of the elements "
        "before, starting at 1)",
))

register(OpDef(
    name="sort", kind="structural", infer=_sort_rule,
    numpy_impl=lambda xs, attrs, shape: np.sort(xs[0], axis=attrs["axis"], kind="stable"),
    vjp=_vjp_sort, samples=_sort_samples,
    doc="values sorted along axis (NaN last); the gradient goes back through the permutation",
))

register(OpDef(
    name="argsort", kind="structural", infer=_argsort_rule,
    numpy_impl=lambda xs, attrs, shape: np.argsort(xs[0], axis=attrs["axis"], kind="stable"),
    differentiable=False, samples=_argsort_samples,
    doc="indices that sort along axis, stable (int64, no gradient)",
))

register(OpDef(
    name="permute", kind="index", infer=_permute_rule, numpy_impl=_permute_impl,
    vjp=_vjp_permute, samples=_permute_samples,
    doc="x gathered along axis by a permutation of each line (InputError if not one)",
))


# ================================================================ public functions


def _accumulating(x: Any) -> Tensor:
    """numpy's dtype for sums and products: bool and int32 accumulate in int64."""
    x = as_tensor(x)
    return F.cast(x, "int64") if x.dtype.kind in "bi" and x.dtype.itemsize < 8 else x


def _one_axis(x: Tensor, axis: Any, what: str) -> tuple[Tensor, int]:
    """``x`` flattened when ``axis`` is None (numpy's rule), and the normalized axis."""
    if axis is None:
        return F.reshape(x, (-1,)), 0
    if x.ndim == 0:
        raise ShapeError(f"{what}: axis {axis!r} is out of range for a 0-d input "
                         f"(at {user_source_line()})")
    (axis_,) = F._normalize_axes(axis, x.ndim)
    return x, axis_


def prod(x: Any, axis: AxisLike = None, keepdims: bool = False) -> Tensor:
    """Product over axes (all by default); bool and int32 give int64, as in numpy. The gradient
    is exact where inputs are zero. ``gc.prod(x, axis=1)``"""
    x = _accumulating(x)
    axes = F._normalize_axes(axis, x.ndim)
    return apply("reduce_prod", x, axes=axes, keepdims=keepdims)


def cumsum(x: Any, axis: int | None = None) -> Tensor:
    """Running sum along ``axis`` (of the flattened input when None), like numpy.cumsum.
    ``gc.cumsum(x, axis=1)``"""
    x, axis_ = _one_axis(_accumulating(x), axis, "cumsum")
    return apply("cumsum", x, axis=axis_, reverse=False)


def cumprod(x: Any, axis: int | None = None) -> Tensor:
    """Running product along ``axis`` (of the flattened input when None), like numpy.cumprod;
    the gradient is exact where inputs are zero. ``gc.cumprod(x, axis=0)``"""
    x, axis_ = _one_axis(_accumulating(x), axis, "cumprod")
    return apply("cumprod", x, axis=axis_, reverse=False, exclusive=False)


def sort(x: Any, axis: int | None = -1) -> Tensor:
    """Values sorted along ``axis`` (flattened when None), NaN last, like numpy.sort; the
    gradient flows back to where each value came from. ``gc.sort(scores, axis=-1)``"""
    x = as_tensor(x)
    x, axis_ = _one_axis(x, axis, "sort")
    return apply("sort", x, axis=axis_)


def argsort(x: Any, axis: int | None = -1) -> Tensor:
    """Indices (int64) that sort ``x`` along ``axis`` (flattened when None); stable, like
    numpy.argsort(kind="stable"). ``gc.argsort(scores)``"""
    x, axis_ = _one_axis(as_tensor(x), axis, "argsort")
    return apply("argsort", x, axis=axis_)


def partition(x: Any, kth: int | Sequence[int], axis: int | None = -1) -> Tensor:
    """Values rearranged along ``axis`` so that each ``kth`` element is where it would be
    sorted, smaller ones before and larger ones after (numpy.partition). graphcomp sorts the
    whole axis, which has that property. ``gc.partition(x, 2, axis=1)``"""
    x, axis_ = _one_axis(as_tensor(x), axis, "partition")
    n = x.shape[axis_]
    if not isinstance(n, int):
        raise ShapeError(f"partition: kth cannot be checked against the symbolic axis "
                         f"{axis_} ({n!r}); use sort (at {user_source_line()})")
    for k in np.atleast_1d(np.asarray(kth)).tolist():
        if not isinstance(k, int) or isinstance(k, bool) or not -n <= k < n:
            raise ShapeError(f"partition: kth {k!r} is out of range for an axis of size {n} "
                             f"(at {user_source_line()})")
    return apply("sort", x, axis=axis_)


__all__ = ["argsort", "cumprod", "cumsum", "partition", "prod", "sort"]
