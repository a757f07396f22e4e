"""Merged flat loops: one pass for forward values, gradients and in-place updates.

Each graph is compiled by both backends; the numba results must match the numpy oracle, and
the plan must have the shape the merging promises (one loop where one is possible, separate
loops where a result is needed before the loop could finish).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba import kernels as K
from graphcomp.backends.numba.backend import prepare
from graphcomp.runtime.program import build_program


def _ewise_step(size: int, dtype: str):
    """The benchmark's elementwise model as a training step: loss and two in-place updates."""
    rng = np.random.default_rng(5)
    with gc.Graph(name=f"ewise_{size}_{dtype}"):
        x = gc.placeholder((size,), dtype, name="x")
        w = gc.parameter((rng.standard_normal(size) * 0.5).astype(dtype), name="w")
        b = gc.parameter((rng.standard_normal(size) * 0.1).astype(dtype), name="b")
        xw = x * w
        loss = gc.sum(gc.tanh(xw + b) * gc.sigmoid(xw) + gc.log1p(gc.exp(-gc.abs(x * b))))
        gw, gb = gc.grad(loss, [w, b])
        updates = [(w, w - 0.01 * gw), (b, b - 0.01 * gb)]
    xv = rng.standard_normal(size).astype(dtype)
    return [x], loss, updates, [w, b], xv


@pytest.mark.parametrize("size, dtype", [(1000, "float64"), (1000, "float32"),
                                         (3 * K.LOOP_PARALLEL_MIN_ELEMENTS + 7, "float64")])
def test_elementwise_training_step_is_one_loop_and_matches_numpy(size: int, dtype: str):
    inputs, loss, updates, params, xv = _ewise_step(size, dtype)
    program = build_program(inputs, [loss], updates)
    _, plan, memory = prepare(program)
    assert [k.kind for k in plan.kernels] == ["loop"]
    assert len(memory.in_place) == 2  # both parameters are written where they are read
    start = [p.value for p in params]
    fast = gc.compile(inputs, loss, updates=updates, backend="numba")
    reference = gc.compile(inputs, loss, updates=updates, backend="numpy")
    rtol = 1e-5 if dtype == "float32" else 1e-10
    expected_losses, expected_params = [], []
    for _ in range(2):
        expected_losses.append(reference(xv))
    expected_params = [p.value for p in params]
    for p, v in zip(params, start, strict=True):
        p.assign(v)
    for expected in expected_losses:
        np.testing.assert_allclose(fast(xv), expected, rtol=rtol)
    for p, expected in zip(params, expected_params, strict=True):
        np.testing.assert_allclose(p.value, expected, rtol=rtol, atol=1e-12)
    kernel = fast.source.split("# ---- driver")[0]
    # The updated parameters are stored through the arguments they are read from.
    assert "o1" not in kernel.split("def k0(")[1].split(")")[0]
    assert ("prange(" in kernel) == (size >= K.LOOP_PARALLEL_MIN_ELEMENTS)


def test_parallel_sums_do_not_depend_on_the_thread_count():
    size = 4 * K.LOOP_PARALLEL_MIN_ELEMENTS + 3
    rng = np.random.default_rng(1)
    with gc.Graph():
        x = gc.placeholder((size,), "float32", name="x")
        total = gc.sum(gc.exp(x) * x)
    f = gc.compile([x], total, backend="numba")
    assert "prange(" in f.source
    xv = rng.standard_normal(size).astype(np.float32)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = f(xv)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = f(xv)
    finally:
        numba.set_num_threads(threads)
    assert one.tobytes() == two.tobytes()
    expected = np.sum(np.exp(xv.astype(np.float64)) * xv)
    np.testing.assert_allclose(one, expected, rtol=1e-5)


def test_a_value_computed_from_a_sum_runs_in_a_later_loop():
    with gc.Graph():
        x = gc.placeholder((None,), "float64", name="x")
        centred = x - gc.sum(x) / 7.0
        y = gc.exp(centred) * 2.0
    program = build_program([x], [y], [])
    _, plan, _ = prepare(program)
    # The sum, the scalar division by 7 (a loop of one element), then everything after it.
    assert [len(k.members) for k in plan.kernels] == [1, 1, 1]
    assert plan.kernels[0].members[0].kind == "reduction"
    xv = np.linspace(-1, 1, 7)
    got = gc.compile([x], y, backend="numba")(xv)
    np.testing.assert_allclose(got, gc.compile([x], y, backend="numpy")(xv), rtol=1e-12)


def test_a_loop_closes_when_another_kernel_needs_its_result():
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.parameter(rng.standard_normal((3, 3)), name="w")
        a = gc.tanh(x)  # read by the matmul: must exist before it
        b = a * 2.0 + (a @ w)  # same shape as a, but after the matmul
        c = gc.sum(gc.exp(a) * b)
        (gw,) = gc.grad(c, [w])
    program = build_program([x], [c, gw], [])
    lp, plan, _ = prepare(program)
    position = {v: i for i, k in enumerate(plan.kernels) for v in k.computed}
    checked = 0
    for i, kernel in enumerate(plan.kernels):
        for value in kernel.computed:
            for source in lp.ops[value].inputs:
                if source in position and source not in kernel.computed:
                    assert position[source] < i  # everything read was computed earlier
                    checked += 1
    assert checked and any(k.kind == "matmul" for k in plan.kernels)
    xv = rng.standard_normal((5, 3))
    got = gc.compile([x], [c, gw], backend="numba")(xv)
    expected = gc.compile([x], [c, gw], backend="numpy")(xv)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10)
