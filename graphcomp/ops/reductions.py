"""Reductions: sum, prod, max, argmax, and dim_size (the runtime size of some axes, for means)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, InputError, ShapeError
from graphcomp.ir import DimTable, Node
from graphcomp.ops import functions as F
from graphcomp.ops.registry import OpDef, Sample, register


def reduced_shape(shape: Sequence, axes: Sequence[int], keepdims: bool) -> tuple:
    """``shape`` with ``axes`` removed (or set to 1 when ``keepdims``)."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _check_axes(x: Node, axes: Sequence[int]) -> None:
    # Public functions normalize axes; the primitive still refuses bad ones rather than let
    # numpy fail at run time.
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.ndim for a in axes):
        raise ShapeError(f"axes {tuple(axes)} must be sorted, distinct and in [0, {x.ndim})")


def _check_not_empty(x: Node, axes: Sequence[int]) -> None:
    # A max over nothing has no value (numpy raises at run time); refuse it while building.
    if any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"cannot take the max over axes {tuple(axes)} of size 0")


# Reductions without an identity: over an axis bound to size 0 at call time they have no value,
# and every backend raises InputError (docs/guarantees.md, "Dimensions of size one and zero").
NO_IDENTITY = frozenset({"reduce_max", "argmax"})


def empty_reduction_problem(op: str, attrs: Any, input_shape: Sequence[int]) -> str | None:
    """Why op ``op`` (in ``NO_IDENTITY``) cannot reduce an input of ``input_shape``: a reduced
    axis of size 0. None when every reduced axis has elements.

    >>> empty_reduction_problem("reduce_max", {"axes": (0,)}, (0, 3))
    'max over axes (0,) of an input of shape (0, 3): an empty axis has no max'
    """
    axes = tuple(attrs["axes"]) if op == "reduce_max" else (attrs["axis"],)
    if all(input_shape[a] for a in axes):
        return None
    what = "max" if op == "reduce_max" else "argmax"
    return (f"{what} over axes {axes} of an input of shape {tuple(input_shape)}: an empty axis "
            f"has no {what}")


def _max_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    problem = empty_reduction_problem("reduce_max", attrs, xs[0].shape)
    if problem is not None:
        raise InputError(problem)
    return np.max(xs[0], axis=attrs["axes"], keepdims=attrs["keepdims"])


def _argmax_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    problem = empty_reduction_problem("argmax", attrs, xs[0].shape)
    if problem is not None:
        raise InputError(problem)
    return np.asarray(np.argmax(xs[0], axis=attrs["axis"], keepdims=attrs["keepdims"]))


def _reduce_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    _check_axes(x, attrs["axes"])
    dtype = np.dtype("int64") if x.dtype == np.dtype("bool") else x.dtype
    return reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]), dtype


def _max_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    if x.dtype == np.dtype("bool"):
        raise DTypeError("max of bool is not supported; cast first")
    _check_axes(x, attrs["axes"])
    _check_not_empty(x, attrs["axes"])
    return reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]), x.dtype


def _argmax_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    _check_axes(x, (attrs["axis"],))
    _check_not_empty(x, (attrs["axis"],))
    return reduced_shape(x.shape, (attrs["axis"],), attrs["keepdims"]), np.dtype("int64")


def _dim_size_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    _check_axes(nodes[0], attrs["axes"])
    return (), dtypes.as_dtype(attrs["dtype"])


def _vjp_sum(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    (x,) = ins
    return [F.expand_reduced(g, x.shape, attrs["axes"], attrs["keepdims"])]


def _vjp_max(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    # The gradient goes to the maxima; ties share it equally (as in JAX).
    (x,) = ins
    axes, keepdims = attrs["axes"], attrs["keepdims"]
    out_kept = F.expand_reduced(out, x.shape, axes, keepdims)
    g_kept = F.expand_reduced(g, x.shape, axes, keepdims)
    mask = F.cast(F.equal(x, out_kept), g.dtype)
    count = F.expand_reduced(F.sum(mask, axis=axes, keepdims=True), x.shape, axes, True)
    return [g_kept * mask / count]


def _reduce_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    x3 = rng.standard_normal((2, 3, 4)).astype(dtype)
    x2 = rng.standard_normal((5, 3)).astype(dtype)
    return [
        Sample((x3,), {"axes": (0, 1, 2), "keepdims": False}),
        Sample((x3,), {"axes": (1,), "keepdims": False}),
        Sample((x3,), {"axes": (0, 2), "keepdims": True}),
        Sample((x2,), {"axes": (0,), "keepdims": False}, symbolic=({0: "N"},)),
        Sample((x2,), {"axes": (1,), "keepdims": True}, symbolic=({0: "N"},)),
    ]


register(
    OpDef(
        name="reduce_sum",
        kind="reduction",
        infer=_reduce_rule,
        numpy_impl=lambda xs, attrs, shape: np.sum(
            xs[0], axis=attrs["axes"], keepdims=attrs["keepdims"]
        ),
        vjp=_vjp_sum,
        samples=_reduce_samples,
        doc="sum over axes",
    )
)

def _vjp_prod(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    from graphcomp.ops.scans import _vjp_prod as vjp  # exclusive products: scans.py

    return vjp(g, out, ins, attrs)


def _prod_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    # Magnitudes near 1 keep products of many factors well scaled; a zero factor is checked
    # separately (tests/ops/test_scans.py), since finite differences are exact there too.
    x3 = (rng.uniform(0.5, 1.5, (2, 3, 4)) * rng.choice([-1, 1], (2, 3, 4))).astype(dtype)
    x2 = (rng.uniform(0.5, 1.5, (5, 3)) * rng.choice([-1, 1], (5, 3))).astype(dtype)
    return [
        Sample((x3,), {"axes": (0, 1, 2), "keepdims": False}),
        Sample((x3,), {"axes": (1,), "keepdims": False}),
        Sample((x3,), {"axes": (0, 2), "keepdims": True}),
        Sample((x2,), {"axes": (1,), "keepdims": False}, symbolic=({0: "N"},)),
        Sample((x2,), {"axes": (0,), "keepdims": True}),
    ]


register(
    OpDef(
        name="reduce_prod",
        kind="reduction",
        infer=_reduce_rule,
        numpy_impl=lambda xs, attrs, shape: np.asarray(
            np.prod(xs[0], axis=attrs["axes"], keepdims=attrs["keepdims"])
        ),
        vjp=_vjp_prod,
        samples=_prod_samples,
        doc="product over axes; the gradient uses exclusive products (exact at zeros)",
    )
)

register(
    OpDef(
        name="reduce_max",
        kind="reduction",
        infer=_max_rule,
        numpy_impl=_max_impl,
        vjp=_vjp_max,
        samples=_reduce_samples,
        doc="max over axes; the gradient is shared equally among tied maxima",
    )
)


def _argmax_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    x = rng.standard_normal((5, 4)).astype(dtype)
    return [
        Sample((x,), {"axis": 1, "keepdims": False}, symbolic=({0: "N"},)),
        Sample((x,), {"axis": 0, "keepdims": True}),
    ]


register(
    OpDef(
        name="argmax",
        kind="reduction",
        infer=_argmax_rule,
        numpy_impl=_argmax_impl,
        differentiable=False,
        samples=_argmax_samples,
        doc="index of the first maximum along an axis (int64, no gradient)",
    )
)


def _dim_size_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    size = 1
    for axis in attrs["axes"]:
        size *= xs[0].shape[axis]
    return np.asarray(size, dtype=attrs["dtype"])


register(
    OpDef(
        name="dim_size",
        kind="reduction",
        infer=_dim_size_rule,
        numpy_impl=_dim_size_impl,
        differentiable=False,
        samples=lambda rng, dtype: [
            Sample(
                (rng.standard_normal((5, 3)).astype(dtype),),
                {"axes": (0,), "dtype": dtype},
                symbolic=({0: "N"},),
            )
        ],
        doc="product of x's sizes over axes, as a scalar of dtype (resolves symbolic dims)",
    )
)
