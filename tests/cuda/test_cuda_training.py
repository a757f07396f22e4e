"""A training step with Adam on backend='cuda' against the numpy oracle (tiny sizes: the
simulator runs every CUDA thread as a Python thread)."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc

pytestmark = pytest.mark.needs_numba_cuda


def _mlp_step(backend: str, dtype: str):
    rng = np.random.default_rng(3)
    with gc.Graph():
        x = gc.placeholder((None, 5), dtype, name="x")
        labels = gc.placeholder((None,), "int64", name="labels")
        W1 = gc.parameter(rng.standard_normal((5, 7)).astype(dtype) * 0.5, name="W1")
        b1 = gc.parameter(np.zeros(7, dtype), name="b1")
        W2 = gc.parameter(rng.standard_normal((7, 3)).astype(dtype) * 0.5, name="W2")
        logits = gc.tanh(x @ W1 + b1) @ W2
        loss = gc.mean(gc.softmax_cross_entropy(logits, labels))
        updates = gc.optim.Adam(0.05).updates(loss, [W1, b1, W2])
        step = gc.compile([x, labels], [loss, logits], updates=updates, backend=backend)
    return step, [W1, b1, W2]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adam_steps_with_two_batch_sizes_equal_numpy(dtype: str) -> None:
    rtol = 1e-10 if dtype == "float64" else 1e-5
    cuda_step, cuda_params = _mlp_step("cuda", dtype)
    numpy_step, numpy_params = _mlp_step("numpy", dtype)
    rng = np.random.default_rng(5)
    for batch in (6, 3, 6):  # the symbolic batch: a second binding, then the first again
        xv = rng.standard_normal((batch, 5)).astype(dtype)
        yv = rng.integers(0, 3, batch)
        got, want = cuda_step(xv, yv), numpy_step(xv, yv)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)
        for p, q in zip(cuda_params, numpy_params, strict=True):
            np.testing.assert_allclose(p.value, q.value, rtol=rtol, atol=rtol * 1e-2)


def test_parameters_stay_on_the_device_and_follow_host_writes() -> None:
    with gc.Graph():
        x = gc.placeholder((3,), "float64", name="x")
        w = gc.parameter(np.ones(3), name="w")
        step = gc.compile([x], gc.sum(w * x), updates=[(w, w - 0.5 * x)], backend="cuda")
        assert step(np.ones(3)) == 3.0
        assert step._executable.gemm == "tiled kernel"  # cuBLAS only on a GPU
        np.testing.assert_allclose(w.value, 0.5)
        executable = step._executable
        device_copy = executable._parameters[next(iter(executable._parameters))][0]
        step(np.ones(3))
        assert executable._parameters[next(iter(executable._parameters))][0] is device_copy
        np.testing.assert_allclose(w.value, 0.0)
        w.assign(np.full(3, 2.0))  # a write on the host is uploaded before the next step
        assert step(np.ones(3)) == 6.0


def test_ops_without_a_kernel_run_on_the_host_and_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((4, 3), "float64", name="x")
        E = gc.parameter(rng.standard_normal((5, 3)), name="E")
        ids = gc.placeholder((4,), "int64", name="ids")
        both = gc.concatenate([x, gc.take(E, ids, axis=0)], axis=1)
        loss = gc.sum(gc.cumsum(both * both, axis=1))
        outputs = [loss, *gc.grad(loss, [x, E])]
        cuda_fn = gc.compile([x, ids], outputs, backend="cuda")
        numpy_fn = gc.compile([x, ids], outputs, backend="numpy")
    hosts = {c.function for c in cuda_fn._executable.host_calls}
    assert {"concatenate", "take", "cumsum"} <= hosts
    xv, iv = rng.standard_normal((4, 3)), np.array([0, 4, 2, 2])
    for a, b in zip(cuda_fn(xv, iv), numpy_fn(xv, iv), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
