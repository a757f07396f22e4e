"""numpy's rounding, remainder, NaN-aware and inverse trigonometric functions, as users call them.

The registry-generated suites check the primitives on their samples; this file checks the
public functions where numpy's semantics have corners: integers (floor of an int is the int,
``5 % 0`` is 0, the minimum int64 ``% -1`` is 0), ties (halves to even), signs of remainders,
NaN and inf, ``round``'s ``decimals`` and ``nan_to_num``'s replacements, on both backends, and
the gradients the docstrings promise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import graphcomp as gc

FILE = "test_numpy_elementwise.py"
I64 = np.iinfo(np.int64)

# Inputs: name -> array. Each call below is written once against a module ``m``: numpy on the
# arrays gives the expected value, graphcomp on placeholders builds the graph.
INPUTS: dict[str, np.ndarray] = {
    "ties": np.array([-2.5, -1.5, -0.5, -0.0, 0.5, 1.5, 2.5, 0.49999999999999994, 1.25, -1.75,
                      np.inf, -np.inf, np.nan]),
    "ties32": np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 1.25, 1234.5678, -0.015],
                       dtype=np.float32),
    "ints": np.array([-7, -5, 0, 5, 7, I64.min, I64.max], dtype=np.int64),
    "divisors": np.array([3, -3, 0, -1, 1, -1, 2], dtype=np.int64),
    "ints32": np.array([-7, 15, 25, -15, 35, 0], dtype=np.int32),
    "a": np.array([5.5, -5.5, 5.5, -5.5, 0.0, -0.0, 3.0, 1.0, -1.0, np.inf, 2.0, 7.0, 2.5]),
    "b": np.array([3.0, 3.0, -3.0, -3.0, -3.0, 3.0, 0.0, np.inf, np.inf, 2.0, np.nan, -1.0, -1.0]),
    "p": np.array([np.nan, 1.0, np.nan, -0.0, 2.0, -np.inf]),
    "q": np.array([2.0, np.nan, np.nan, 0.0, 2.0, np.inf]),
    "big": np.array([3e200, 1e-200, 3.0, -4.0], dtype=np.float64),
    "special32": np.array([np.nan, np.inf, -np.inf, 1.5, -0.0], dtype=np.float32),
    "unit": np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]),
}

CALLS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "floor": (lambda m, x: m.floor(x), ("ties",)),
    "ceil": (lambda m, x: m.ceil(x), ("ties",)),
    "trunc": (lambda m, x: m.trunc(x), ("ties",)),
    "rint": (lambda m, x: m.rint(x), ("ties",)),
    "round": (lambda m, x: m.round(x), ("ties",)),
    "round float32": (lambda m, x: m.round(x, 2) + m.round(x, -1) + m.round(x), ("ties32",)),
    "floor of ints": (lambda m, x: m.floor(x) + m.ceil(x) + m.trunc(x), ("ints",)),
    "rint of ints is float64": (lambda m, x: m.rint(x), ("ints32",)),
    "round of ints": (lambda m, x: m.round(x, -1) + m.round(x, 2), ("ints32",)),
    "remainder": (lambda m, a, b: m.remainder(a, b), ("a", "b")),
    "mod of ints": (lambda m, a, b: m.mod(a, b), ("ints", "divisors")),
    "% operator": (lambda m, a, b: a % b, ("a", "b")),
    "% with scalars": (lambda m, a: (a % 2.5) + (7.0 % a) + (a % -1.5), ("ties32",)),
    "fmax": (lambda m, a, b: m.fmax(a, b), ("p", "q")),
    "fmin": (lambda m, a, b: m.fmin(a, b), ("p", "q")),
    "isnan": (lambda m, x: m.isnan(x), ("special32",)),
    "isinf": (lambda m, x: m.isinf(x), ("special32",)),
    "isfinite": (lambda m, x: m.isfinite(x), ("special32",)),
    "isnan of ints": (lambda m, x: m.isnan(x), ("ints",)),
    "isinf of ints": (lambda m, x: m.isinf(x), ("ints",)),
    "isfinite of ints": (lambda m, x: m.isfinite(x), ("ints",)),
    "nan_to_num defaults": (lambda m, x: m.nan_to_num(x), ("special32",)),
    "nan_to_num values": (lambda m, x: m.nan_to_num(x, nan=9.0, posinf=1e3, neginf=-2),
                          ("special32",)),
    "nan_to_num of ints": (lambda m, x: m.nan_to_num(x), ("ints",)),
    "arctan2": (lambda m, y, x: m.arctan2(y, x), ("a", "b")),
    "arctan2 of ints": (lambda m, y, x: m.arctan2(y, x), ("ints32", "ints32")),
    "hypot": (lambda m, a, b: m.hypot(a, b), ("big", "big")),
    "inverse trigonometric": (lambda m, x: m.arcsin(x) + m.arccos(x) + m.arctan(x)
                              + m.arcsinh(x), ("unit",)),
    "inverse hyperbolic": (lambda m, x: m.arccosh(x + 1.0) + m.arctanh(x * 0.5), ("unit",)),
    "sinc": (lambda m, x: m.sinc(x), ("ties",)),
}

# Calls whose zeros' signs numpy defines (its fmax(-0.0, 0.0) depends on the array position).
SIGNED_ZEROS = {"floor", "ceil", "trunc", "rint", "round", "round float32", "remainder",
                "% operator", "% with scalars"}


def _expected(name: str) -> np.ndarray:
    call, inputs = CALLS[name]
    with np.errstate(all="ignore"):
        return np.asarray(call(np, *(INPUTS[i] for i in inputs)))


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, np.ndarray]]:
    """Every call on both backends: one graph, one numba compile."""
    with gc.Graph():
        placeholders = {k: gc.placeholder(v.shape, v.dtype, name=k) for k, v in INPUTS.items()}
        outputs = [call(gc, *(placeholders[i] for i in inputs)) for call, inputs in CALLS.values()]
        feeds = list(placeholders.values())
        computed = {}
        for backend in ("numpy", "numba"):
            f = gc.compile(feeds, outputs, backend=backend)
            computed[backend] = dict(zip(CALLS, f(*INPUTS.values()), strict=True))
    return computed


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_matches_numpy(name: str, backend: str, results: dict) -> None:
    expected = _expected(name)
    actual = results[backend][name]
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
    if expected.dtype.kind == "f":
        tight = 1e-15 if expected.dtype == np.float64 else 1e-6
        np.testing.assert_allclose(actual, expected, rtol=tight, atol=0, err_msg=name)
        if name in SIGNED_ZEROS:
            zeros = expected == 0
            np.testing.assert_array_equal(np.signbit(actual[zeros]), np.signbit(expected[zeros]),
                                          err_msg=f"{name}: sign of zero")
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_the_mod_operator_builds_a_remainder() -> None:
    with gc.Graph():
        x = gc.placeholder((3,), "int32", name="x")
        assert (x % 4).op == (9 % x).op == "remainder"
        assert (x % 4).dtype == np.int32 and (x % 2.5).dtype == np.float64


# ---------------------------------------------------------------- gradients


def _gradients(build: Callable, *arrays: np.ndarray) -> list[np.ndarray]:
    """d sum(build(...)) / d each input, on the numpy and the numba backend (which must agree)."""
    with gc.Graph():
        xs = [gc.placeholder(a.shape, a.dtype, name=f"x{k}") for k, a in enumerate(arrays)]
        grads = gc.grad(gc.sum(build(*xs)), xs)
        on_numpy = gc.compile(xs, grads, backend="numpy")(*arrays)
        on_numba = gc.compile(xs, grads, backend="numba")(*arrays)
    for a, b in zip(on_numpy, on_numba, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5 if a.dtype == np.float32 else 1e-13)
    return list(on_numpy)


def test_rounding_has_a_zero_gradient() -> None:
    x = np.array([-1.7, 0.2, 2.5, 3.4])
    (g,) = _gradients(lambda t: gc.floor(t) + gc.ceil(t) + gc.trunc(t) + gc.round(t, 1), x)
    np.testing.assert_array_equal(g, np.zeros(4))


def test_remainder_gradient_is_one_and_minus_floor_of_the_quotient() -> None:
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.25])
    b = np.array([3.0, 3.0, -3.0, -2.0, 0.5])
    ga, gb = _gradients(lambda x, y: x % y, a, b)
    np.testing.assert_array_equal(ga, np.ones(5))
    np.testing.assert_array_equal(gb, -np.floor(a / b))


def test_fmax_and_fmin_send_the_gradient_to_the_operand_they_pick() -> None:
    a = np.array([np.nan, 1.0, 3.0, 2.0, -1.0])
    b = np.array([2.0, np.nan, 1.0, 2.0, 0.0])
    ga, gb = _gradients(gc.fmax, a, b)
    np.testing.assert_array_equal(ga, [0.0, 1.0, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(gb, [1.0, 0.0, 0.0, 0.5, 1.0])
    ga, gb = _gradients(gc.fmin, a, b)
    np.testing.assert_array_equal(ga, [0.0, 1.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(gb, [1.0, 0.0, 1.0, 0.5, 0.0])


def test_nan_to_num_passes_the_gradient_where_finite_only() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -2.0], dtype=np.float32)
    (g,) = _gradients(lambda t: gc.nan_to_num(t * 3.0), x)
    np.testing.assert_array_equal(g, np.array([0, 0, 0, 3, 3], dtype=np.float32))


def _sinc_derivative_series(x: float) -> float:
    """d/dx sin(pi x) / (pi x) from its power series (exact to float64 for |pi x| < 1)."""
    t = math.pi * x
    return math.pi * sum((-1) ** k * 2 * k * t ** (2 * k - 1) / math.factorial(2 * k + 1)
                         for k in range(1, 20))


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-13), ("float32", 2e-6)])
def test_sinc_gradient_is_accurate_at_and_near_zero(dtype: str, rtol: float) -> None:
    # 0.0318 and 0.255: pi x at the float64 and float32 switches between series and formula
    points = [0.0, 1e-9, -1e-6, 1e-4, 3e-3, -0.0318, 0.0319, 0.05, -0.15, 0.254, 0.256, 0.3]
    x = np.array(points, dtype=dtype)
    (g,) = _gradients(gc.sinc, x)
    expected = np.array([_sinc_derivative_series(float(v)) for v in x])
    np.testing.assert_allclose(g, expected, rtol=rtol, atol=0)
    assert g[0] == 0.0


def test_inverse_functions_gradients() -> None:
    x = np.array([-0.6, 0.1, 0.7])
    g = _gradients(lambda t: gc.arcsin(t) + 2.0 * gc.arccos(t) + gc.arctan(t) + gc.arcsinh(t)
                   + gc.arctanh(t) + gc.arccosh(t + 2.0), x)[0]
    root = np.sqrt(1 - x * x)
    expected = (1 / root - 2 / root + 1 / (1 + x * x) + 1 / np.sqrt(x * x + 1) + 1 / (1 - x * x)
                + 1 / np.sqrt((x + 2) ** 2 - 1))
    np.testing.assert_allclose(g, expected, rtol=1e-13)
    y, z = np.array([1.0, -2.0]), np.array([-3.0, 0.5])
    gy, gz = _gradients(gc.arctan2, y, z)
    np.testing.assert_allclose(gy, z / (y * y + z * z), rtol=1e-14)
    np.testing.assert_allclose(gz, -y / (y * y + z * z), rtol=1e-14)
    ga, gb = _gradients(gc.hypot, y, z)
    np.testing.assert_allclose(ga, y / np.hypot(y, z), rtol=1e-14)
    np.testing.assert_allclose(gb, z / np.hypot(y, z), rtol=1e-14)


# ---------------------------------------------------------------- errors


def test_bad_inputs_name_the_function_and_the_line() -> None:
    with gc.Graph():
        flag = gc.placeholder((3,), "bool", name="flag")
        x = gc.placeholder((3,), "float64", name="x")
        with pytest.raises(gc.DTypeError, match=rf"remainder\(.*{FILE}:\d+: is not defined for"):
            flag % flag
        with pytest.raises(TypeError, match=rf"decimals must be an int, not 1.5 \(at .*{FILE}"):
            gc.round(x, 1.5)
        with pytest.raises(gc.ShapeError, match=rf"posinf of shape \[2\] .* \[3\] \(at .*{FILE}"):
            gc.nan_to_num(x, posinf=np.array([1.0, 2.0]))
