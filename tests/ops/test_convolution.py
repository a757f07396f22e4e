"""gc.nn.conv2d / max_pool2d / avg_pool2d / flatten: the public functions' argument forms,
numba against numpy (forward and gradients, one compiled graph for the module), finite
differences through a small network, and build-time errors naming the user's line.

The primitives themselves are covered by the registry-generated tests (direct-loop formulas,
VJPs at first and second order, numba against numpy on every sample).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphcomp as gc

FILE = os.path.basename(__file__)
RNG = np.random.default_rng(7)


# ---------------------------------------------------------------- one network, both backends


def _network() -> tuple:
    """Configurations side by side in one graph: strides, asymmetric and "same" padding,
    dilation, groups (depthwise), odd sizes, both poolings, a bias and flatten."""
    x = gc.placeholder((None, 4, 9, 7), "float64", name="x")
    w1 = gc.parameter(RNG.standard_normal((6, 4, 3, 3)) * 0.3, name="w1")
    b1 = gc.parameter(RNG.standard_normal(6) * 0.1, name="b1")
    w2 = gc.parameter(RNG.standard_normal((6, 3, 2, 3)) * 0.3, name="w2")
    w3 = gc.parameter(RNG.standard_normal((6, 1, 3, 3)) * 0.3, name="w3")
    h1 = gc.tanh(gc.nn.conv2d(x, w1, b1, padding="same"))  # [N, 6, 9, 7]
    h2 = gc.nn.conv2d(h1, w2, stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2),
                      groups=2)  # [N, 6, 5, 6]
    h3 = gc.nn.conv2d(h2, w3, padding=1, groups=6, stride=2)  # depthwise [N, 6, 3, 3]
    pooled = gc.nn.max_pool2d(h1, 3, stride=2, padding=1)  # [N, 6, 5, 4]
    averaged = gc.nn.avg_pool2d(h2, (2, 3), stride=(1, 2), padding=(1, 1))  # [N, 6, 6, 3]
    features = gc.concatenate([gc.nn.flatten(h3), gc.nn.flatten(pooled),
                               gc.nn.flatten(averaged)], axis=1)
    loss = gc.sum(features * features) * 0.5
    params = [w1, b1, w2, w3]
    return x, params, [h1, h2, h3, pooled, averaged], loss


@pytest.fixture(scope="module")
def compiled() -> dict:
    with gc.Graph():
        x, params, values, loss = _network()
        grads = gc.grad(loss, [x, *params])
        outputs = [*values, loss, *grads]
        functions = {backend: gc.compile([x], outputs, backend=backend)
                     for backend in ("numpy", "numba")}
    return {"x": x, "params": params, "values": values, "loss": loss, "functions": functions}


def test_shapes_of_the_argument_forms(compiled: dict) -> None:
    shapes = [v.shape for v in compiled["values"]]
    assert shapes == [("N", 6, 9, 7), ("N", 6, 5, 6), ("N", 6, 3, 3), ("N", 6, 5, 4),
                      ("N", 6, 6, 3)]


@pytest.mark.parametrize("batch", [3, 1, 0])
def test_numba_equals_numpy_forward_and_gradients(compiled: dict, batch: int) -> None:
    x = RNG.standard_normal((batch, 4, 9, 7))
    expected = compiled["functions"]["numpy"](x)
    actual = compiled["functions"]["numba"](x)
    assert len(expected) == len(actual)
    for k, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert e.shape == a.shape, k
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10, err_msg=f"output {k}")


def test_gradients_match_finite_differences() -> None:
    with gc.Graph():
        x, params, _, loss = _network()
        feed = {x: RNG.standard_normal((2, 4, 9, 7))}
        gc.check_grads(loss, [x, *params], feed, rtol=1e-6)


def test_max_pool_splits_the_gradient_between_ties() -> None:
    with gc.Graph():
        x = gc.placeholder((1, 1, 2, 4), "float64", name="x")
        y = gc.nn.max_pool2d(x, 2)
        (dx,) = gc.grad(gc.sum(y * np.array([1.0, 10.0]).reshape(1, 1, 1, 2)), [x])
        f = gc.compile([x], dx, backend="numba")
    values = np.array([[[[3.0, 3.0, 1.0, 5.0], [3.0, 0.0, 2.0, -1.0]]]])
    expected = np.array([[[[1 / 3, 1 / 3, 0.0, 10.0], [1 / 3, 0.0, 0.0, 0.0]]]])
    np.testing.assert_allclose(f(values), expected, rtol=1e-12)


def test_avg_pool_counts_padding_as_zeros() -> None:
    with gc.Graph():
        x = gc.placeholder((1, 1, 2, 2), "float32", name="x")
        f = gc.compile([x], gc.nn.avg_pool2d(x, 2, stride=1, padding=1), backend="numpy")
    out = f(np.ones((1, 1, 2, 2), "float32"))
    np.testing.assert_array_equal(out[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5],
                                              [0.25, 0.5, 0.25]])


def test_same_padding_with_an_even_kernel_keeps_the_size() -> None:
    with gc.Graph():
        x = gc.placeholder((None, 2, 6, 5), "float32", name="x")
        w = gc.placeholder((3, 2, 4, 2), "float32", name="w")
        y = gc.nn.conv2d(x, w, padding="same", dilation=(1, 2))
    assert y.shape == ("N", 3, 6, 5)
    assert y.node.attrs["padding"] == ((1, 2), (1, 1))


def test_promotes_and_adds_the_bias_per_channel() -> None:
    with gc.Graph():
        x = gc.placeholder((2, 1, 3, 3), "float32", name="x")
        y = gc.nn.conv2d(x, np.ones((2, 1, 1, 1), "float32"), b=[1.0, -1.0])
        f = gc.compile([x], y, backend="numpy")
    out = f(np.zeros((2, 1, 3, 3), "float32"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], 1.0)
    np.testing.assert_array_equal(out[:, 1], -1.0)


# ---------------------------------------------------------------- build-time errors


def _ph(shape: tuple) -> gc.Tensor:
    return gc.placeholder(shape, "float32")


ERRORS = {
    "channel mismatch": (lambda: gc.nn.conv2d(_ph((None, 3, 8, 8)), _ph((4, 2, 3, 3))),
                         "channel mismatch: the input has 3 channels"),
    "groups": (lambda: gc.nn.conv2d(_ph((None, 6, 8, 8)), _ph((4, 2, 3, 3)), groups=4),
               "groups=4 does not divide the input's 6 channels"),
    "kernel too large": (lambda: gc.nn.conv2d(_ph((None, 1, 4, 4)), _ph((1, 1, 5, 3))),
                         "the kernel spans 5 along H"),
    "dilated kernel too large": (
        lambda: gc.nn.conv2d(_ph((None, 1, 6, 6)), _ph((1, 1, 3, 3)), dilation=3),
        "the kernel spans 7 along H"),
    "not 4-d": (lambda: gc.nn.conv2d(_ph((None, 8, 8)), _ph((1, 1, 3, 3))),
                "the input must be 4-d"),
    "zero stride": (lambda: gc.nn.conv2d(_ph((None, 1, 8, 8)), _ph((1, 1, 3, 3)), stride=0),
                    "stride must be >= 1"),
    "negative stride": (lambda: gc.nn.max_pool2d(_ph((None, 1, 8, 8)), 2, stride=(1, -2)),
                        "stride must be >= 1"),
    "pool not 4-d": (lambda: gc.nn.avg_pool2d(_ph((None, 8, 8)), 2), "the input must be 4-d"),
    "pool padding": (lambda: gc.nn.max_pool2d(_ph((None, 1, 8, 8)), 2, padding=2),
                     "more than half the kernel"),
    "pool window": (lambda: gc.nn.max_pool2d(_ph((None, 1, 3, 8)), 4), "the kernel spans 4"),
    "same with stride": (
        lambda: gc.nn.conv2d(_ph((None, 1, 8, 8)), _ph((1, 1, 3, 3)), padding="same", stride=2),
        "padding='same' needs stride 1"),
    "bad padding word": (lambda: gc.nn.conv2d(_ph((None, 1, 8, 8)), _ph((1, 1, 3, 3)),
                                              padding="full"), "'same' or 'valid'"),
    "bias shape": (lambda: gc.nn.conv2d(_ph((None, 1, 8, 8)), _ph((2, 1, 3, 3)), _ph((3,))),
                   "the bias must have shape (2,)"),
    "flatten symbolic": (lambda: gc.nn.flatten(gc.placeholder((None, "M"), "float32")),
                         "must be static"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_the_problem_and_the_line(case: str) -> None:
    build, reason = ERRORS[case]
    with pytest.raises(gc.ShapeError) as info:
        build()
    message = str(info.value)
    assert reason in message, message
    assert f"{FILE}:{build.__code__.co_firstlineno}" in message, message


def test_integer_input_is_a_dtype_error() -> None:
    with pytest.raises(gc.DTypeError, match="float32 or float64"):
        gc.nn.max_pool2d(gc.placeholder((1, 1, 4, 4), "int64"), 2)
