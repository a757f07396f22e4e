"""Matrix products in compiled code call numpy's own BLAS (one thread pool per process).

The ``gemm_*`` helpers of a generated module pass row-major operands and transposed views to
``cblas_?gemm`` with the right flags and leading dimensions; every layout and degenerate
shape is checked against the numpy backend.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.blas import numpy_blas

SHAPES = [(5, 3, 4), (1, 7, 3), (4, 1, 5), (3, 6, 1), (1, 1, 1), (2, 9, 1), (1, 4, 6)]


def test_numpy_blas_is_the_library_numpy_loaded():
    library = numpy_blas()
    assert library is not None, "numpy's bundled OpenBLAS was not found"
    assert os.path.exists(library.path) and "openblas" in os.path.basename(library.path)
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            assert library.path in maps.read()  # numpy has this very file mapped already


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_of_every_layout_and_degenerate_shape_match_numpy(dtype: str):
    rng = np.random.default_rng(4)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    with gc.Graph():
        pairs, inputs, feeds = [], [], []
        for m, k, n in SHAPES:
            shapes = [(m, k), (k, n), (k, m), (n, k)]
            a, b, at, bt = (gc.placeholder(s, dtype) for s in shapes)
            # at and bt are read transposed: F-ordered views passed with the transpose flag.
            pairs += [a @ b, gc.transpose(at) @ b, a @ gc.transpose(bt),
                      gc.transpose(at) @ gc.transpose(bt)]
            inputs += [a, b, at, bt]
            feeds += [rng.standard_normal(s).astype(dtype) for s in shapes]
    fast = gc.compile(inputs, pairs, backend="numba", driver_jit=True)
    reference = gc.compile(inputs, pairs, backend="numpy")
    kernels_and_driver = fast.source.split("# ---- vectorisable")[0]
    assert "np.dot" not in kernels_and_driver.split("# ---- driver")[1]
    assert "cblas_" in fast.source
    for got, expected in zip(fast(*feeds), reference(*feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weight_updates_accumulate_into_the_weights_through_blas(dtype: str):
    rng = np.random.default_rng(8)
    rtol = 1e-5 if dtype == "float32" else 1e-10
    with gc.Graph():
        x = gc.placeholder((None, 6), dtype, name="x")
        y = gc.placeholder((None, 3), dtype, name="y")
        w = gc.parameter(rng.standard_normal((6, 3)).astype(dtype), name="w")
        m = gc.parameter((rng.standard_normal((6, 6)) * 0.1).astype(dtype), name="m")
        loss = gc.mean(gc.square(gc.tanh(x @ m) @ w - y))
        gw, gm = gc.grad(loss, [w, m])
        # w: the usual update (BLAS writes into w); m: its product reads m itself, so the
        # update goes to a buffer of its own and is copied back.
        updates = [(w, w - 0.1 * gw), (m, m - 0.05 * (gc.transpose(m) @ gm))]
    feeds = [rng.standard_normal((5, 6)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)]
    start = [w.value, m.value]
    reference = gc.compile([x, y], loss, updates=updates, backend="numpy")
    expected = [float(reference(*feeds)) for _ in range(3)]
    expected_params = [w.value, m.value]
    w.assign(start[0])
    m.assign(start[1])
    fast = gc.compile([x, y], loss, updates=updates, backend="numba")
    assert fast.source.count("gemm_acc_") >= 3  # the helper and both updates
    storage = fast.program.graph.parameter_values
    w_buffer = storage[w.node.id]
    got = [float(fast(*feeds)) for _ in range(3)]
    np.testing.assert_allclose(got, expected, rtol=rtol)
    for p, e in zip([w, m], expected_params, strict=True):
        np.testing.assert_allclose(p.value, e, rtol=rtol, atol=rtol)
    assert storage[w.node.id] is w_buffer  # updated in place, not replaced
