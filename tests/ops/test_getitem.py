"""``x[index]`` follows numpy: negative steps, integer arrays on any axis, mixed with slices.

Each index is applied to a tensor and to a numpy array of the same values; shapes and values
must agree (numpy backend), gradients match finite differences, and numba equals numpy.
Before: negative steps were refused, and an array index was taken along the first axis only.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc

X = np.arange(5 * 4 * 3, dtype=np.float64).reshape(5, 4, 3) / 7.0

R = slice(None, None, -1)
INDICES = {
    "reverse first axis": (R,),
    "negative step with bounds": (slice(None), slice(3, 0, -2)),
    "reverse all, step -2": (R, R, slice(None, None, -2)),
    "negative start past the end": (slice(4, None, -3), None, 1),
    "array on the first axis": ([0, 2, 4],),
    "array on a middle axis": (slice(None), [1, 3]),
    "array with repeats and negatives": (slice(None), slice(None), [2, -1, 2]),
    "reversed, array, slice": (R, [0, 2], slice(1, None)),
    "int, slice, array (not adjacent: array dims first)": (3, slice(1, None), [0, 2]),
    "int then array (adjacent)": (slice(None), 1, [2, 0]),
    "two arrays (adjacent)": (slice(None), [0, 3], [1, 2]),
    "two arrays (not adjacent)": ([0, 2], slice(None), [1, 0]),
    "broadcast arrays": (slice(None), [[1], [3]], [0, 2]),
    "2-d array and slice": ([[0, 1], [2, 3]], slice(None), [0, 2]),
    "ellipsis and array": (Ellipsis, [2, 0]),
    "None and array": (None, [1, 1], 0),
    "negative ints": (-1, [-1, 0]),
}


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with gc.Graph():
        x = gc.placeholder((5, 4, 3), "float64", name="x")
        outputs = [x[index] for index in INDICES.values()]
        on_numpy = gc.compile([x], outputs, backend="numpy")(X)
        on_numba = gc.compile([x], outputs, backend="numba")(X)
    return dict(zip(INDICES, zip(on_numpy, on_numba, strict=True), strict=True))


@pytest.mark.parametrize("name", list(INDICES))
def test_index_gives_numpy_values_on_both_backends(name: str, results):
    on_numpy, on_numba = results[name]
    expected = X[INDICES[name]]
    assert on_numpy.shape == expected.shape
    np.testing.assert_array_equal(on_numpy, expected)
    np.testing.assert_array_equal(on_numba, expected)


@pytest.mark.parametrize("name", list(INDICES))
def test_index_gradient_matches_finite_differences(name: str):
    with gc.Graph():
        x = gc.placeholder((5, 4, 3), "float64", name="x")
        report = gc.check_grads(x[INDICES[name]] * x[INDICES[name]], [x], {x: X})
    assert report.passed


def test_an_index_tensor_on_any_axis_with_ints_and_slices():
    ids = np.array([2, 0, -1])
    with gc.Graph():
        x = gc.placeholder((None, 4, 3), "float64", name="x")  # a symbolic batch
        s = gc.placeholder((5, 4, 3), "float64", name="s")  # an int on a static axis
        i = gc.placeholder((3,), "int64", name="i")
        outputs = [x[:, i], s[0, :, i], x[:, 1, i], x[..., i]]
        for backend in ("numpy", "numba"):
            values = gc.compile([x, s, i], outputs, backend=backend)(X, X, ids)
            for value, expected in zip(values, [X[:, ids], X[0, :, ids], X[:, 1, ids],
                                                X[..., ids]], strict=True):
                np.testing.assert_array_equal(value, expected)


def test_what_numpy_indexing_graphcomp_refuses_says_so():
    with gc.Graph():
        x = gc.placeholder((5, 4), "float64", name="x")
        i = gc.placeholder((2,), "int64", name="i")
        n = gc.placeholder((None, 4), "float64", name="n")
        with pytest.raises(gc.ShapeError, match="combined with ints, slices"):
            x[i, [0, 1]]
        with pytest.raises(gc.ShapeError, match="boolean index"):
            x[np.array([True, False, True, False, True])]
        with pytest.raises(gc.ShapeError, match="symbolic dimension 'N'"):
            n[::-1]
        with pytest.raises(gc.ShapeError, match="index tensor"):
            n[[0, 1]]
