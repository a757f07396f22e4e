"""Elementwise primitives: unary math, binary arithmetic, comparisons, where, cast.

Binary primitives take operands of one dtype; the public functions promote first (numpy 2
rules, Python scalars weak), so kernels never mix dtypes. Broadcasting is numpy's, with
symbolic dimensions unified rather than broadcast (see ``graphcomp.ir.dims``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError
from graphcomp.ir import DimTable, Node
from graphcomp.ops import functions as F
from graphcomp.ops.registry import OpDef, Sample, register

# ---------------------------------------------------------------- shape/dtype rules


def _unary_float_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"needs a float input, got {x.dtype} (cast it first)")
    return x.shape, x.dtype


def _unary_numeric_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    if x.dtype == np.dtype("bool"):
        raise DTypeError("is not defined for bool; cast to a number first")
    return x.shape, x.dtype


def _binary_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    a, b = nodes
    if a.dtype != b.dtype:
        raise DTypeError(f"operands must share a dtype, got {a.dtype} and {b.dtype}")
    return dims.broadcast(a.shape, b.shape), a.dtype


def _binary_float_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    shape, dtype = _binary_rule(nodes, attrs, dims)
    if not dtypes.is_float(dtype):
        raise DTypeError(f"needs float operands, got {dtype}")
    return shape, dtype


def _compare_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    shape, _ = _binary_rule(nodes, attrs, dims)
    return shape, np.dtype("bool")


def _where_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    cond, a, b = nodes
    if cond.dtype != np.dtype("bool"):
        raise DTypeError(f"condition must be bool, got {cond.dtype}")
    if a.dtype != b.dtype:
        raise DTypeError(f"branches must share a dtype, got {a.dtype} and {b.dtype}")
    return dims.broadcast(cond.shape, a.shape, b.shape), a.dtype


def _cast_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    return x.shape, dtypes.as_dtype(attrs["dtype"])


# ---------------------------------------------------------------- sample inputs


def _normal(rng: np.random.Generator, dtype: np.dtype, shape: tuple) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _unary_samples(domain: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def make(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
        shapes = [(3, 4), (), (2, 3, 4)]
        return [
            Sample(
                (domain(_normal(rng, dtype, s)).astype(dtype),), symbolic=({0: "N"} if s else {},)
            )
            for s in shapes
        ]

    return make


def _binary_samples(
    domain_a: Callable[[np.ndarray], np.ndarray] = lambda v: v,
    domain_b: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> Callable:
    def make(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
        pairs = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]
        samples = []
        for sa, sb in pairs:
            a = domain_a(_normal(rng, dtype, sa)).astype(dtype)
            b = domain_b(_normal(rng, dtype, sb)).astype(dtype)
            symbolic = ({0: "N"}, {0: "N"}) if sa == sb and sa else ({}, {})
            samples.append(Sample((a, b), symbolic=symbolic))
        return samples

    return make


def _positive(v: np.ndarray) -> np.ndarray:
    return np.abs(v) + 0.5


def _away_from_zero(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, v + 0.5, v - 0.5)


# ---------------------------------------------------------------- VJP rules
# Each rule: (g, out, inputs, attrs) -> one gradient per input (None: no gradient).


def _vjp_add(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    return [F.unbroadcast(g, ins[0].shape), F.unbroadcast(g, ins[1].shape)]


def _vjp_sub(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    return [F.unbroadcast(g, ins[0].shape), F.unbroadcast(-g, ins[1].shape)]


def _vjp_mul(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    a, b = ins
    return [F.unbroadcast(g * b, a.shape), F.unbroadcast(g * a, b.shape)]


def _vjp_div(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    a, b = ins
    return [F.unbroadcast(g / b, a.shape), F.unbroadcast(-g * out / b, b.shape)]


def _vjp_pow(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    a, b = ins
    grad_a = g * b * F.power(a, b - 1)
    # d/db a**b = a**b log a; at a == 0 the limit used by JAX/PyTorch is 0.
    safe_log = F.log(F.where(F.equal(a, 0), F.ones_like(a), a))
    grad_b = g * out * safe_log
    return [F.unbroadcast(grad_a, a.shape), F.unbroadcast(grad_b, b.shape)]


def _vjp_extremum(pick: Callable) -> Callable:
    # Ties split the gradient equally between the operands (JAX's convention).
    def rule(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
        a, b = ins
        return _split_between(g, a, b, F.cast(pick(a, b), g.dtype))

    return rule


def _split_between(g: Any, a: Any, b: Any, a_wins: Any) -> list:
    """``g`` to ``a`` where it wins, to ``b`` elsewhere, half to each where they are equal."""
    tie = F.cast(F.equal(a, b), g.dtype)
    share_a = a_wins + 0.5 * tie
    share_b = (1.0 - a_wins) - 0.5 * tie
    return [F.unbroadcast(g * share_a, a.shape), F.unbroadcast(g * share_b, b.shape)]


def _vjp_where(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    cond, a, b = ins
    zero = F.zeros_like(g)
    return [
        None,
        F.unbroadcast(F.where(cond, g, zero), a.shape),
        F.unbroadcast(F.where(cond, zero, g), b.shape),
    ]


def _vjp_cast(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    (x,) = ins
    if not dtypes.is_float(x.dtype):
        return [None]
    return [F.cast(g, x.dtype)]


UNARY_VJPS: dict[str, Callable[[Any, Any, Any], Any]] = {
    # name: (g, x, y) -> gradient of x
    "negative": lambda g, x, y: -g,
    "exp": lambda g, x, y: g * y,
    "log": lambda g, x, y: g / x,
    "log1p": lambda g, x, y: g / (1.0 + x),
    "expm1": lambda g, x, y: g * (y + 1.0),
    "sqrt": lambda g, x, y: g / (2.0 * y),
    "abs": lambda g, x, y: g * F.sign(x),  # abs'(0) = sign(0) = 0
    "sign": lambda g, x, y: F.zeros_like(g),
    "sin": lambda g, x, y: g * F.cos(x),
    "cos": lambda g, x, y: -g * F.sin(x),
    "tanh": lambda g, x, y: g * (1.0 - y * y),
    "sigmoid": lambda g, x, y: g * y * (1.0 - y),
}


def _unary_vjp(name: str) -> Callable:
    rule = UNARY_VJPS[name]

    def vjp(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
        return [rule(g, ins[0], out)]

    return vjp


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Stable on both tails: exp of a non-positive number only. The same operations as
    # where(x >= 0, 1 / (1 + e), e / (1 + e)) with e = exp(-|x|), in two buffers instead of
    # eight: fresh memory is what a large first step spends its time on (docs/performance.md).
    e = np.asarray(np.abs(x))
    np.negative(e, out=e)
    np.exp(e, out=e)
    d = np.asarray(1.0 + e)
    np.divide(e, d, out=e)
    np.divide(1.0, d, out=d)
    return np.where(x >= 0, d, e).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- registrations

_UNARY: list[tuple[str, Callable, Callable, Callable]] = [
    # name, numpy function, shape rule, sample domain
    ("negative", np.negative, _unary_numeric_rule, lambda v: v),
    ("exp", np.exp, _unary_float_rule, lambda v: v),
    ("log", np.log, _unary_float_rule, _positive),
    ("log1p", np.log1p, _unary_float_rule, lambda v: np.abs(v) - 0.5),
    ("expm1", np.expm1, _unary_float_rule, lambda v: v),
    ("sqrt", np.sqrt, _unary_float_rule, _positive),
    ("abs", np.abs, _unary_numeric_rule, _away_from_zero),
    ("sign", np.sign, _unary_numeric_rule, _away_from_zero),
    ("sin", np.sin, _unary_float_rule, lambda v: v),
    ("cos", np.cos, _unary_float_rule, lambda v: v),
    ("tanh", np.tanh, _unary_float_rule, lambda v: v),
    ("sigmoid", _sigmoid, _unary_float_rule, lambda v: v),
]

for _name, _fn, _rule, _domain in _UNARY:
    register(
        OpDef(
            name=_name,
            kind="elementwise",
            infer=_rule,
            numpy_impl=(lambda fn: lambda xs, attrs, shape: fn(xs[0]))(_fn),
            numpy_ufunc=_fn if isinstance(_fn, np.ufunc) else None,
            vjp=_unary_vjp(_name),
            samples=_unary_samples(_domain),
            doc=f"elementwise {_name}",
        )
    )

_BINARY: list[tuple[str, Callable, Callable, Callable, Callable]] = [
    ("add", np.add, _binary_rule, _vjp_add, _binary_samples()),
    ("subtract", np.subtract, _binary_rule, _vjp_sub, _binary_samples()),
    ("multiply", np.multiply, _binary_rule, _vjp_mul, _binary_samples()),
    ("divide", np.divide, _binary_float_rule, _vjp_div, _binary_samples(domain_b=_away_from_zero)),
    ("power", np.power, _binary_float_rule, _vjp_pow, _binary_samples(domain_a=_positive)),
    ("maximum", np.maximum, _binary_rule, _vjp_extremum(F.greater), _binary_samples()),
    ("minimum", np.minimum, _binary_rule, _vjp_extremum(F.less), _binary_samples()),
]

for _name, _fn, _rule, _vjp, _samples in _BINARY:
    register(
        OpDef(
            name=_name,
            kind="elementwise",
            infer=_rule,
            numpy_impl=(lambda fn: lambda xs, attrs, shape: fn(xs[0], xs[1]))(_fn),
            numpy_ufunc=_fn if isinstance(_fn, np.ufunc) else None,
            vjp=_vjp,
            samples=_samples,
            doc=f"elementwise {_name} with broadcasting",
        )
    )

_COMPARISONS = {
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}

for _name, _fn in _COMPARISONS.items():
    register(
        OpDef(
            name=_name,
            kind="elementwise",
            infer=_compare_rule,
            numpy_impl=(lambda fn: lambda xs, attrs, shape: fn(xs[0], xs[1]))(_fn),
            numpy_ufunc=_fn if isinstance(_fn, np.ufunc) else None,
            differentiable=False,
            samples=_binary_samples(),
            doc=f"elementwise comparison {_name} (bool result, no gradient)",
        )
    )


def _where_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    cond = rng.standard_normal((3, 4)) > 0
    return [
        Sample((cond, _normal(rng, dtype, (3, 4)), _normal(rng, dtype, (3, 4)))),
        Sample((cond, _normal(rng, dtype, (4,)), _normal(rng, dtype, ()))),
    ]


register(
    OpDef(
        name="where",
        kind="elementwise",
        infer=_where_rule,
        numpy_impl=lambda xs, attrs, shape: np.where(xs[0], xs[1], xs[2]),
        vjp=_vjp_where,
        samples=_where_samples,
        doc="where(cond, a, b): a where cond is true, else b",
    )
)


def _cast_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    x = _normal(rng, dtype, (3, 4)) * 3
    other = np.dtype("float32") if dtype == np.dtype("float64") else np.dtype("float64")
    return [Sample((x,), {"dtype": other}), Sample((x,), {"dtype": "int32"}, smooth=False)]


register(
    OpDef(
        name="cast",
        kind="elementwise",
        infer=_cast_rule,
        numpy_impl=lambda xs, attrs, shape: xs[0].astype(attrs["dtype"]),
        vjp=_vjp_cast,
        samples=_cast_samples,
        doc="cast(x, dtype): numpy astype (float to int truncates toward zero)",
    )
)


def _stop_gradient_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    return nodes[0].shape, nodes[0].dtype


register(
    OpDef(
        name="stop_gradient",
        kind="elementwise",
        infer=_stop_gradient_rule,
        numpy_impl=lambda xs, attrs, shape: xs[0],
        differentiable=False,
        samples=lambda rng, dtype: [Sample((_normal(rng, dtype, (3, 4)),))],
        doc="identity in the forward pass; gradients do not flow through it",
    )
)


# ================================================================ numpy's further elementwise ops
# Rounding (zero gradient), remainder, NaN-ignoring extrema, inverse trigonometric and
# hyperbolic functions, sinc, hypot and the NaN/inf tests, with numpy's semantics.


def _binary_numeric_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    shape, dtype = _binary_rule(nodes, attrs, dims)
    if dtype == np.dtype("bool"):
        raise DTypeError("is not defined for bool; cast to a number first")
    return shape, dtype


def _float_test_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"needs a float input, got {x.dtype} (integers are always finite)")
    return x.shape, np.dtype("bool")


def _off_the_steps(v: np.ndarray) -> np.ndarray:
    """k + 0.05 .. k + 0.45: away from integers (floor, ceil) and halves (rint)."""
    return np.round(v * 3) + 0.25 + 0.2 * np.tanh(v)


def _inside_unit(v: np.ndarray) -> np.ndarray:
    return 0.9 * np.tanh(v)


def _above_one(v: np.ndarray) -> np.ndarray:
    return np.abs(v) + 1.2


def _rounding_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    """Smooth samples off the steps, and the steps themselves (ties, integers, -0.0, inf)."""
    steps = np.array([-2.5, -1.5, -0.5, -0.0, 0.5, 1.5, 2.5, 3.0, -3.0, 0.49999997, -1.7, np.inf,
                      -np.inf, np.nan], dtype=dtype)
    return [*_unary_samples(_off_the_steps)(rng, dtype), Sample((steps,), smooth=False)]


def _sinc_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    """Random points, and 0 and points near it, where the derivative changes formula."""
    near_zero = np.array([0.0, 1e-3, -2e-2, 0.3, -1.7, 2.5], dtype=dtype)
    return [*_unary_samples(lambda v: 2.0 * v)(rng, dtype), Sample((near_zero,))]


def _special_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    x = _normal(rng, dtype, (3, 4))
    x.flat[[1, 5, 6, 10]] = [np.nan, np.inf, -np.inf, np.nan]
    return [Sample((x,), symbolic=({0: "N"},)), Sample((np.array(np.inf, dtype=dtype),))]


def _vjp_sinc(g: Any, x: Any, y: Any) -> Any:
    """sinc'(x) = (cos(pi x) - sinc(x)) / x, and near 0 its series (the formula cancels there)."""
    # Below this |pi x| the series -t/3 + t^3/30 - t^5/840 + t^7/45360 (t = pi x) is the more
    # accurate: both err by about 3e-14 (float64) or 3e-7 (float32) relative at the switch.
    small = 0.1 if x.dtype == np.dtype("float64") else 0.8
    t = x * math.pi
    u = t * t
    series = t * (-1.0 / 3.0 + u * (1.0 / 30.0 - u * (1.0 / 840.0 - u * (1.0 / 45360.0))))
    near = F.less(F.abs(t), small)
    safe_x = F.where(near, F.ones_like(x), x)
    formula = (F.cos(safe_x * math.pi) - y) / safe_x
    return g * F.where(near, series * math.pi, formula)


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy import special  # numpy has no erf; scipy is a dependency, imported on first use

    return special.erf(x)


UNARY_VJPS.update({
    "floor": lambda g, x, y: F.zeros_like(g),
    "ceil": lambda g, x, y: F.zeros_like(g),
    "trunc": lambda g, x, y: F.zeros_like(g),
    "rint": lambda g, x, y: F.zeros_like(g),
    "arcsin": lambda g, x, y: g / F.sqrt((1.0 - x) * (1.0 + x)),
    "arccos": lambda g, x, y: -g / F.sqrt((1.0 - x) * (1.0 + x)),
    "arctan": lambda g, x, y: g / (1.0 + x * x),
    "arcsinh": lambda g, x, y: g / F.sqrt(x * x + 1.0),
    "arccosh": lambda g, x, y: g / (F.sqrt(x - 1.0) * F.sqrt(x + 1.0)),
    "arctanh": lambda g, x, y: g / ((1.0 - x) * (1.0 + x)),
    "sinc": _vjp_sinc,
    "erf": lambda g, x, y: g * (2.0 / math.sqrt(math.pi)) * F.exp(-x * x),
})

_MORE_UNARY: list[tuple[str, Callable, Callable, str]] = [
    # name, numpy function, samples, doc
    ("floor", np.floor, _rounding_samples, "largest integer <= x (zero gradient)"),
    ("ceil", np.ceil, _rounding_samples, "smallest integer >= x (zero gradient)"),
    ("trunc", np.trunc, _rounding_samples, "x rounded toward zero (zero gradient)"),
    ("rint", np.rint, _rounding_samples, "x rounded to the nearest integer, halves to even "
                                         "(zero gradient)"),
    ("arcsin", np.arcsin, _unary_samples(_inside_unit), "inverse sine"),
    ("arccos", np.arccos, _unary_samples(_inside_unit), "inverse cosine"),
    ("arctan", np.arctan, _unary_samples(lambda v: 2.0 * v), "inverse tangent"),
    ("arcsinh", np.arcsinh, _unary_samples(lambda v: 2.0 * v), "inverse hyperbolic sine"),
    ("arccosh", np.arccosh, _unary_samples(_above_one), "inverse hyperbolic cosine"),
    ("arctanh", np.arctanh, _unary_samples(_inside_unit), "inverse hyperbolic tangent"),
    ("sinc", np.sinc, _sinc_samples, "normalised sinc, sin(pi x) / (pi x), 1 at 0"),
    ("erf", _erf, _unary_samples(lambda v: 1.5 * v), "error function, 2/sqrt(pi) times the "
                                                    "integral of exp(-t*t) from 0 to x"),
]

for _name, _fn, _samples, _doc in _MORE_UNARY:
    register(
        OpDef(
            name=_name,
            kind="elementwise",
            infer=_unary_float_rule,
            numpy_impl=(lambda fn: lambda xs, attrs, shape: fn(xs[0]))(_fn),
            numpy_ufunc=_fn if isinstance(_fn, np.ufunc) else None,
            vjp=_unary_vjp(_name),
            samples=_samples,
            doc=f"elementwise {_doc}",
        )
    )

for _name, _fn in {"isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite}.items():
    register(
        OpDef(
            name=_name,
            kind="elementwise",
            infer=_float_test_rule,
            numpy_impl=(lambda fn: lambda xs, attrs, shape: fn(xs[0]))(_fn),
            numpy_ufunc=_fn if isinstance(_fn, np.ufunc) else None,
            differentiable=False,
            samples=_special_samples,
            doc=f"elementwise {_name} of a float (bool result, no gradient)",
        )
    )


def _vjp_remainder(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    # a - floor(a / b) * b: d/da = 1, d/db = -floor(a / b) (away from the jumps).
    a, b = ins
    return [F.unbroadcast(g, a.shape), F.unbroadcast(-g * F.floor(a / b), b.shape)]


def _vjp_nan_extremum(pick: Callable) -> Callable:
    # The chosen operand gets the gradient: the other one where one is NaN; ties share it.
    def rule(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
        a, b = ins
        a_wins = F.cast(pick(a, b), g.dtype) + F.cast(F.isnan(b), g.dtype)
        return _split_between(g, a, b, a_wins)

    return rule


def _vjp_arctan2(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    y, x = ins
    scale = g / (x * x + y * y)
    return [F.unbroadcast(scale * x, y.shape), F.unbroadcast(-scale * y, x.shape)]


def _vjp_hypot(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    a, b = ins
    scale = g / out
    return [F.unbroadcast(scale * a, a.shape), F.unbroadcast(scale * b, b.shape)]


def _odd_quarters(v: np.ndarray) -> np.ndarray:
    """k + 1/4 or k + 3/4: divided by a power of two in [1/2, 4], never an integer."""
    return np.round(v * 3) + 0.25 + 0.5 * (v > 0)


def _signed_powers_of_two(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, 1.0, -1.0) * 2.0 ** np.clip(np.round(v), -1, 2)


def _with_nans(samples: Callable) -> Callable:
    """``samples`` and one more with NaNs in either operand and in both (values only)."""

    def make(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
        a = _normal(rng, dtype, (3, 4))
        b = _normal(rng, dtype, (3, 4))
        a.flat[[0, 2, 5]] = np.nan
        b.flat[[1, 2, 7]] = np.nan
        b.flat[3] = a.flat[3]
        return [*samples(rng, dtype), Sample((a, b), smooth=False)]

    return make


_MORE_BINARY: list[tuple[str, Callable, Callable, Callable, Callable, str]] = [
    # name, numpy function, shape rule, VJP, samples, doc
    ("remainder", np.remainder, _binary_numeric_rule, _vjp_remainder,
     _binary_samples(_odd_quarters, _signed_powers_of_two),
     "remainder of a / b with the sign of b (numpy's mod)"),
    ("fmax", np.fmax, _binary_rule, _vjp_nan_extremum(F.greater), _with_nans(_binary_samples()),
     "maximum ignoring NaNs"),
    ("fmin", np.fmin, _binary_rule, _vjp_nan_extremum(F.less), _with_nans(_binary_samples()),
     "minimum ignoring NaNs"),
    ("arctan2", np.arctan2, _binary_float_rule, _vjp_arctan2,
     _binary_samples(domain_a=_away_from_zero), "angle of the point (x2, x1)"),
    ("hypot", np.hypot, _binary_float_rule, _vjp_hypot,
     _binary_samples(domain_a=_away_from_zero), "sqrt(a**2 + b**2) without overflow"),
]

for _name, _fn, _rule, _vjp, _samples, _doc in _MORE_BINARY:
    register(
        OpDef(
            name=_name,
            kind="elementwise",
            infer=_rule,
            numpy_impl=(lambda fn: lambda xs, attrs, shape: fn(xs[0], xs[1]))(_fn),
            numpy_ufunc=_fn if isinstance(_fn, np.ufunc) else None,
            vjp=_vjp,
            samples=_samples,
            doc=f"elementwise {_doc}, with broadcasting",
        )
    )
