"""Random draws on backend='cuda' give the CPU's streams: the random ops run on the host
(op_table.HOST_FALLBACK, the registry's Philox implementation) from the graph's random state,
which lives on the device with the other parameters and advances there."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.cuda.op_table import HOST_FALLBACK

pytestmark = pytest.mark.needs_numba_cuda


def _draws(backend: str):
    with gc.Graph(seed=42):
        x = gc.placeholder((None, 3), "float32", name="x")
        noisy = x + gc.random.normal(x.shape, "float32", std=0.5)
        kept = gc.where(gc.random.bernoulli(0.7, x.shape), x, 0.0)
        u = gc.random.uniform((2, 5), "float64", low=-1.0, high=2.0)
        ints = gc.random.randint(0, 100, (7,))
        fn = gc.compile([x], [noisy, kept, u, ints], backend=backend)
    return fn


def test_random_streams_equal_the_cpu_backends() -> None:
    cuda_fn, numba_fn, numpy_fn = _draws("cuda"), _draws("numba"), _draws("numpy")
    ops = {c.function for c in cuda_fn._executable.host_calls}
    assert {"random_normal", "random_uniform", "random_randint"} <= ops <= set(HOST_FALLBACK)
    rng = np.random.default_rng(0)
    for batch in (4, 4, 2, 4):  # the state advances every call, across bindings too
        xv = rng.standard_normal((batch, 3)).astype("float32")
        got, cpu, oracle = cuda_fn(xv), numba_fn(xv), numpy_fn(xv)
        for a, b, c in zip(got, cpu, oracle, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
    gc.seed(cuda_fn.program.graph, 7)  # a host write of the state: uploaded, used
    gc.seed(numpy_fn.program.graph, 7)
    xv = np.zeros((3, 3), "float32")
    for a, c in zip(cuda_fn(xv), numpy_fn(xv), strict=True):
        np.testing.assert_array_equal(a, c)
