"""Activations (graphcomp/ops/activations.py) and erf: values against direct numpy formulas,
float64 finite-difference gradients, numba equal to numpy, and stability at huge inputs."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import graphcomp as gc

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# name -> (graph builder, numpy reference in float64)
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "leaky_relu": (lambda x: gc.leaky_relu(x), lambda x: np.where(x > 0, x, 0.01 * x)),
    "leaky_relu 0.2": (lambda x: gc.leaky_relu(x, negative_slope=0.2),
                       lambda x: np.where(x > 0, x, 0.2 * x)),
    "elu": (lambda x: gc.elu(x), lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1)),
    "elu 1.5": (lambda x: gc.elu(x, alpha=1.5),
                lambda x: np.where(x > 0, x, 1.5 * (np.exp(np.minimum(x, 0)) - 1))),
    "gelu": (lambda x: gc.gelu(x), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "gelu tanh": (lambda x: gc.gelu(x, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                   * (x + 0.044715 * x**3)))),
    "silu": (lambda x: gc.silu(x), lambda x: x * _sigmoid(x)),
    "log_sigmoid": (lambda x: gc.log_sigmoid(x), lambda x: np.log(_sigmoid(x))),
    "erf": (lambda x: gc.erf(x), _erf),
}

X = np.linspace(-4.0, 4.0, 17) + 0.03  # off the kinks at 0, for the gradient checks
X_WITH_ZERO = np.concatenate([X, [0.0, -0.0]])


def _function(names: list[str], dtype: str, backend: str) -> gc.Function:
    with gc.Graph():
        x = gc.placeholder((None,), dtype, name="x")
        outs = [ACTIVATIONS[name][0](x) for name in names]
        return gc.compile([x], outs, backend=backend)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_value_matches_numpy_formula(name: str):
    (value,) = _function([name], "float64", "numpy")(X_WITH_ZERO)
    np.testing.assert_allclose(value, ACTIVATIONS[name][1](X_WITH_ZERO), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_gradient_matches_finite_differences(name: str):
    with gc.Graph():
        x = gc.placeholder((len(X),), "float64", name="x")
        assert gc.check_grads(ACTIVATIONS[name][0](x), [x], {x: X}).passed


@pytest.mark.parametrize("name", ["leaky_relu 0.2", "elu"])
def test_gradient_at_zero_is_the_left_slope(name: str):
    with gc.Graph():
        x = gc.placeholder((2,), "float64", name="x")
        (g,) = gc.grad(gc.sum(ACTIVATIONS[name][0](x)), [x])
        (value,) = gc.compile([x], [g], backend="numpy")(np.zeros(2))
    np.testing.assert_array_equal(value, [0.2, 0.2] if name == "leaky_relu 0.2" else [1.0, 1.0])


@pytest.fixture(scope="module")
def both_backends() -> dict[str, list[np.ndarray]]:
    names = list(ACTIVATIONS)
    results = {}
    for dtype in ("float32", "float64"):
        with gc.Graph():
            x = gc.placeholder((None,), dtype, name="x")
            outs = [ACTIVATIONS[name][0](x) for name in names]
            outs += gc.grad(gc.sum(gc.stack(outs)), [x])
            numba = gc.compile([x], outs, backend="numba")
            numpy = gc.compile([x], outs, backend="numpy")
        big = np.concatenate([X_WITH_ZERO, [-1000.0, 1000.0, 80.0, -80.0]]).astype(dtype)
        results[dtype] = [numba(big), numpy(big)]
    return results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_matches_numpy_values_and_gradient(dtype: str, both_backends):
    numba, numpy = both_backends[dtype]
    tol = 2e-6 if dtype == "float32" else 1e-13
    for got, want in zip(numba, numpy, strict=True):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_inputs_give_finite_values_and_gradients(dtype: str, both_backends):
    for results in both_backends[dtype]:
        for array in results:
            assert np.all(np.isfinite(array))
    log_sigmoid = both_backends[dtype][1][list(ACTIVATIONS).index("log_sigmoid")]
    assert log_sigmoid[-4] == np.float32(-1000.0)  # log(sigmoid(-1000)), not -inf


def test_integer_input_gives_float64_and_bad_approximate_is_refused():
    with gc.Graph():
        assert gc.silu(gc.placeholder((3,), "int32")).dtype == np.float64
        with pytest.raises(ValueError, match="approximate"):
            gc.gelu(gc.placeholder((3,), "float32"), approximate="erf")  # type: ignore[arg-type]
