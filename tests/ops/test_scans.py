"""Public scans and sorting against numpy: prod, cumsum, cumprod, sort, argsort, partition.

The registry-generated suites check the primitives on their samples; this file checks what
they leave out: numpy's axis and dtype rules of the public functions, gradients at inputs with
zeros (exact for these multilinear functions, so finite differences are exact too), NaN
ordering, numpy's partition property, and the errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import apply

X = np.array([[1.5, 0.0, -2.0, 3.0], [0.0, 0.0, 2.0, -1.0], [0.5, 2.0, -1.5, 4.0]])


def _run(build, *arrays, backend="numpy"):
    with gc.Graph():
        inputs = [gc.placeholder(a.shape, a.dtype) for a in arrays]
        out = build(*inputs)
    return gc.compile(inputs, out, backend=backend)(*arrays)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_scans_and_products_match_numpy(axis):
    np.testing.assert_allclose(_run(lambda x: gc.prod(x, axis=axis), X), np.prod(X, axis=axis))
    np.testing.assert_allclose(_run(lambda x: gc.cumsum(x, axis=axis), X), np.cumsum(X, axis))
    np.testing.assert_allclose(_run(lambda x: gc.cumprod(x, axis=axis), X), np.cumprod(X, axis))
    np.testing.assert_allclose(_run(lambda x: gc.prod(x, axis=axis, keepdims=True), X),
                               np.prod(X, axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype", ["bool", "int32", "int64"])
def test_integer_scans_accumulate_like_numpy(dtype):
    x = np.array([[1, 0, 3], [2, 2, 1]]).astype(dtype)
    for gc_f, np_f in [(gc.cumsum, np.cumsum), (gc.cumprod, np.cumprod), (gc.prod, np.prod)]:
        expected = np_f(x, axis=1)
        for backend in ("numpy", "numba"):
            result = _run(lambda t, f=gc_f: f(t, axis=1), x, backend=backend)
            assert result.dtype == expected.dtype
            np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_sort_and_argsort_match_numpy_stable(axis):
    ties = np.array([[2.0, 1.0, 2.0, 1.0], [0.0, -0.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    for backend in ("numpy", "numba"):
        np.testing.assert_array_equal(_run(lambda x: gc.sort(x, axis=axis), ties, backend=backend),
                                      np.sort(ties, axis=axis, kind="stable"))
        np.testing.assert_array_equal(
            _run(lambda x: gc.argsort(x, axis=axis), ties, backend=backend),
            np.argsort(ties, axis=axis, kind="stable"))


def test_nan_sorts_last_on_both_backends():
    x = np.array([3.0, np.nan, -1.0, np.inf, np.nan, 0.0], dtype="float32")
    for backend in ("numpy", "numba"):
        np.testing.assert_array_equal(_run(gc.sort, x, backend=backend), np.sort(x))
        np.testing.assert_array_equal(_run(gc.argsort, x, backend=backend),
                                      np.argsort(x, kind="stable"))


@pytest.mark.parametrize("kth", [0, 2, -1, [1, 3]])
def test_partition_has_numpys_partition_property(kth):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5))
    result = _run(lambda t: gc.partition(t, kth, axis=1), x)
    reference = np.sort(x, axis=1)
    for k in np.atleast_1d(kth):
        np.testing.assert_array_equal(result[:, k], reference[:, k])
        np.testing.assert_array_equal(result[:, k], np.partition(x, kth, axis=1)[:, k])
        assert np.all(result[:, :k % 5] <= result[:, [k]])
        assert np.all(result[:, k % 5:] >= result[:, [k]])
    np.testing.assert_array_equal(np.sort(result, axis=1), reference)  # a rearrangement


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize(
    "build",
    [lambda x: gc.prod(x, axis=1), lambda x: gc.prod(x), lambda x: gc.prod(x, axis=(0, 1)),
     lambda x: gc.cumprod(x, axis=1), lambda x: gc.cumprod(x, axis=0),
     lambda x: apply("cumprod", x, axis=1, reverse=True, exclusive=True)],
)
def test_product_gradients_are_exact_at_zeros(build, order):
    # One zero in a row, two zeros in a row: prod/x would give NaN or a wrong 0.
    with gc.Graph():
        x = gc.placeholder(X.shape, "float64")
        report = gc.check_grads(build(x), [x], {x: X}, rtol=1e-6, atol=1e-7, order=order,
                                raise_on_failure=False)
    assert report.passed, str(report)


def test_prod_gradient_at_a_single_zero_is_the_product_of_the_others():
    with gc.Graph():
        x = gc.placeholder((4,), "float64")
        (g,) = gc.grad(gc.prod(x), [x])
    for backend in ("numpy", "numba"):
        f = gc.compile([x], g, backend=backend)
        np.testing.assert_array_equal(f(np.array([2.0, 0.0, 3.0, 4.0])), [0.0, 24.0, 0.0, 0.0])


def test_sort_gradient_goes_back_through_the_permutation():
    with gc.Graph():
        x = gc.placeholder((None, 4), "float64")
        (g,) = gc.grad(gc.sum(gc.sort(x, axis=1) * np.arange(4.0)), [x])
    x_value = np.array([[3.0, -1.0, 2.0, 0.5], [0.0, 1.0, -2.0, 5.0]])
    expected = np.argsort(np.argsort(x_value, axis=1), axis=1).astype(float)
    for backend in ("numpy", "numba"):
        np.testing.assert_array_equal(gc.compile([x], g, backend=backend)(x_value), expected)


def test_cumsum_over_a_static_axis_keeps_a_symbolic_batch():
    with gc.Graph():
        x = gc.placeholder((None, 8), "float32")
        y = gc.cumsum(x, axis=1)
        (g,) = gc.grad(gc.sum(gc.cumprod(x, axis=1)), [x])
    assert y.shape == ("N", 8) and g.shape == ("N", 8)
    value = np.random.default_rng(1).standard_normal((5, 8)).astype("float32")
    f = gc.compile([x], y, backend="numba")
    np.testing.assert_array_equal(f(value), np.cumsum(value, axis=1))


def test_cumprod_gradient_along_a_symbolic_axis_is_refused_clearly():
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64")
        y = gc.cumprod(x, axis=0)
        with pytest.raises(gc.ShapeError, match=r"static size on the scanned axis 0.*test_scans"):
            gc.grad(gc.sum(y), [x])


def test_bad_arguments_name_the_line():
    with gc.Graph():
        x = gc.placeholder((3, 4), "float64")
        with pytest.raises(gc.ShapeError, match=r"kth 4 is out of range.*test_scans.py"):
            gc.partition(x, 4)
        with pytest.raises(gc.ShapeError, match=r"axis 2 is out of range"):
            gc.cumsum(x, axis=2)
        with pytest.raises(gc.DTypeError, match=r"sort\(.*bool"):
            gc.sort(gc.placeholder((3,), "bool"))
        with pytest.raises(gc.ShapeError, match="symbolic"):
            gc.partition(gc.placeholder((None,), "float64"), 0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_permute_refuses_indices_that_are_not_a_permutation(backend):
    with gc.Graph():
        x = gc.placeholder((2, 3), "float64", name="x")
        p = gc.placeholder((2, 3), "int64", name="order")
        y = apply("permute", x, p, axis=1)
    f = gc.compile([x, p], y, backend=backend)
    np.testing.assert_array_equal(f(X[:2, :3], np.array([[2, 0, 1], [0, 1, 2]])),
                                  [[-2.0, 1.5, 0.0], [0.0, 0.0, 2.0]])
    for bad in ([[0, 0, 1], [0, 1, 2]], [[0, 1, 3], [0, 1, 2]]):
        with pytest.raises(gc.InputError, match=r"permute %\d+ \(created at .*test_scans.py"):
            f(X[:2, :3], np.array(bad))
