"""The numba backend at run time: training steps, in-place updates, bad inputs, allocations,
missing kernels, the generated source, and plain-Python execution with NUMBA_DISABLE_JIT.

Compiled functions are shared through module-scoped fixtures: compile time dominates.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.op_table import OP_TABLE
from graphcomp.testing import driver_argument_count, step_array_arguments, uses_native_driver


class Step:
    """A tiny tanh MLP training step with a symbolic batch, on both backends."""

    def __init__(self, dtype: str, driver_jit: bool | None) -> None:
        rng = np.random.default_rng(3)
        with gc.Graph(name=f"step_{dtype}") as self.graph:
            x = gc.placeholder((None, 3), dtype, name="x")
            y = gc.placeholder((None,), dtype, name="y")
            self.W = gc.parameter(rng.standard_normal((3, 4)).astype(dtype), name="W")
            self.b = gc.parameter(rng.standard_normal(4).astype(dtype), name="b")
            self.v = gc.parameter(rng.standard_normal((4, 1)).astype(dtype), name="v")
            h = gc.tanh(x @ self.W + self.b)
            pred = gc.reshape(h @ self.v, (-1,))
            loss = gc.mean((pred - y) ** 2)
            params = [self.W, self.b, self.v]
            grads = gc.grad(loss, params)
            updates = [(p, p - 0.1 * g) for p, g in zip(params, grads, strict=True)]
            outputs = [loss, h, *grads]
        self.params = params
        self.numba = gc.compile([x, y], outputs, updates=updates, backend="numba",
                                driver_jit=driver_jit)
        self.numpy = gc.compile([x, y], outputs, updates=updates, backend="numpy")

    def snapshot(self) -> list[np.ndarray]:
        return [p.value for p in self.params]

    def restore(self, values: list[np.ndarray]) -> None:
        for p, v in zip(self.params, values, strict=True):
            p.assign(v)


@pytest.fixture(scope="module", params=[("float64", True), ("float32", False)],
                ids=["f64-jit-driver", "f32-python-driver"])
def step(request: pytest.FixtureRequest) -> Step:
    return Step(*request.param)


def _rtol(dtype: np.dtype) -> float:
    return 1e-5 if dtype == np.float32 else 1e-10


def test_training_steps_match_numpy_with_changing_batch(step: Step):
    dtype = step.W.dtype
    rng = np.random.default_rng(0)
    for batch in (5, 2, 9, 5):
        xv = rng.standard_normal((batch, 3)).astype(dtype)
        yv = rng.standard_normal(batch).astype(dtype)
        before = step.snapshot()
        expected = step.numpy(xv, yv)
        expected_params = step.snapshot()
        step.restore(before)
        got = step.numba(xv, yv)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=_rtol(dtype), atol=1e-6)
        for a, b in zip(step.snapshot(), expected_params, strict=True):
            np.testing.assert_allclose(a, b, rtol=_rtol(dtype), atol=1e-6)


def test_parameters_are_updated_in_place_and_outputs_are_copies(step: Step):
    dtype = step.W.dtype
    storage = step.graph.parameter_values[step.W.node.id]
    before = storage.copy()
    xv = np.ones((4, 3), dtype)
    yv = np.zeros(4, dtype)
    _, h, gW, *_ = step.numba(xv, yv)
    assert step.graph.parameter_values[step.W.node.id] is storage
    np.testing.assert_allclose(storage, before - dtype.type(0.1) * gW, rtol=1e-5)
    h_first = h.copy()
    h[...] = 123.0  # writing into an output must not touch the next call's results
    _, h_again, *_ = step.numba(xv, yv)
    assert not np.allclose(h_again, 123.0)
    assert h_again.shape == h_first.shape


def test_outputs_show_values_from_before_the_updates():
    with gc.Graph():
        a = gc.parameter(np.array([1.0, 2.0]), name="a")
        b = gc.parameter(np.array([3.0, 4.0]), name="b")
    swap = gc.compile([], [a, b * 1.0], updates=[(a, b), (b, a)], backend="numba")
    old_a, old_b = swap()
    np.testing.assert_array_equal(old_a, [1.0, 2.0])
    np.testing.assert_array_equal(old_b, [3.0, 4.0])
    np.testing.assert_array_equal(a.value, [3.0, 4.0])
    np.testing.assert_array_equal(b.value, [1.0, 2.0])


@pytest.mark.parametrize("bad, words", [
    (lambda x, y: (x.astype("float16"), y), ["dtype", "x"]),
    (lambda x, y: (x[:, :2], y), ["shape", "x"]),
    (lambda x, y: (x[None], y), ["rank", "x"]),
    (lambda x, y: (x, y[:-1]), ["N", "y"]),
])
def test_bad_inputs_raise_input_error_before_the_native_call(step: Step, bad, words):
    dtype = step.W.dtype
    xv, yv = bad(np.ones((4, 3), dtype), np.ones(4, dtype))
    with pytest.raises(gc.InputError) as info:
        step.numba(xv, yv)
    for word in words:
        assert word in str(info.value)


def test_non_contiguous_inputs_are_accepted(step: Step):
    dtype = step.W.dtype
    wide = np.arange(24, dtype=dtype).reshape(4, 6) / 10
    xv = wide[:, ::2]  # a strided view
    yv = np.ones(4, dtype)
    before = step.snapshot()
    expected = step.numpy(np.ascontiguousarray(xv), yv)
    step.restore(before)
    got = step.numba(xv, yv)
    np.testing.assert_allclose(got[0], expected[0], rtol=_rtol(dtype))


def _allocations(function, *args) -> int:
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    try:
        function(*args)  # first call at this binding: buffers are created here
        before = rtsys.get_allocation_stats()
        function(*args)
        after = rtsys.get_allocation_stats()
    finally:
        _nrt_python.memsys_disable_stats()
    assert after.alloc - before.alloc == after.free - before.free, "memory leaked"
    return after.alloc - before.alloc


def _regression_step(driver_jit: bool):
    rng = np.random.default_rng(1)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        W = gc.parameter(rng.standard_normal((3, 2)), name="W")
        loss = gc.sum(gc.tanh(x @ W) ** 2)
        (gW,) = gc.grad(loss, [W])
    f = gc.compile([x], loss, updates=[(W, W - 0.1 * gW)], backend="numba",
                   driver_jit=driver_jit)
    return f, rng


def test_a_steady_state_step_allocates_nothing_inside_compiled_code():
    f, rng = _regression_step(driver_jit=True)
    xv = rng.standard_normal((6, 3))
    # The only NRT records are the ones numba makes when it receives each array argument.
    array_arguments = driver_argument_count(f)
    assert _allocations(f, xv) == array_arguments


def test_an_op_without_a_numba_kernel_is_a_compile_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delitem(OP_TABLE, "sin")
    with gc.Graph():
        x = gc.placeholder((2,), "float64", name="x")
        y = gc.sin(x) + 1.0
    with pytest.raises(gc.CompileError, match="'sin'"):
        gc.compile([x], y, backend="numba")


def test_generated_source_names_graph_nodes_and_is_deterministic(step: Step):
    source = step.numba.source
    assert "def step(" in source and "# %" in source
    driver = source[source.index("def step("):]
    # Products: numpy's BLAS, through the gemm helpers (njit driver) or np.dot (Python driver).
    assert "tanh" in source and ("gemm_f64(" in driver or "np.dot(" in driver)
    kernels = source[source.index("# ---- kernels"):]
    statements = [line for line in kernels.splitlines() if re.match(r"\s+t\d+ = ", line)]
    assert statements and all("# %" in line for line in statements)
    from graphcomp.backends.numba.backend import prepare
    from graphcomp.backends.numba.codegen import generate

    driver_jit = uses_native_driver(step.numba)
    again = generate(*prepare(step.numba.program), driver_jit=driver_jit)
    assert again.display == source  # f.source: the whole program as one text


def test_the_generated_module_runs_as_plain_python_without_jit(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, graphcomp as gc
        with gc.Graph():
            x = gc.placeholder((None, 3), "float32", name="x")
            w = gc.parameter(np.linspace(-1, 1, 6, dtype="float32").reshape(3, 2), name="w")
            out = gc.sum(gc.sigmoid(x @ w) * gc.exp(-x[:, :2]), axis=1)
        xv = np.linspace(-2, 2, 12, dtype="float32").reshape(4, 3)
        a = gc.compile([x], out, backend="numba")(xv)
        b = gc.compile([x], out, backend="numpy")(xv)
        np.testing.assert_allclose(a, b, rtol=1e-5)
        print("plain python ok", a.dtype)
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", GRAPHCOMP_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "plain python ok float32" in result.stdout


def test_contiguous_slices_are_views_and_others_are_copied():
    rng = np.random.default_rng(2)
    with gc.Graph():
        x = gc.placeholder((4, 3, 2), "float64", name="x")
        w = gc.parameter(rng.standard_normal((2, 2)), name="w")
        rows = [x[t] @ w for t in range(3)]  # x[t]: a contiguous block
        strided = x[:, 1:, ::2]  # not contiguous: copied by a kernel
        out = gc.concatenate(rows, axis=0) * 2.0
    xv = rng.standard_normal((4, 3, 2))
    got = gc.compile([x], [out, strided], backend="numba")
    expected = gc.compile([x], [out, strided], backend="numpy")
    for a, b in zip(got(xv), expected(xv), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # batch_matmuls stacks x[0], x[1], x[2] for one product: one view of x, rows 0..2.
    assert "x_x.reshape(24)[:18]" in got.source


def test_fastmath_is_opt_in_and_keeps_nan_and_infinity():
    with gc.Graph():
        x = gc.placeholder((None,), "float64", name="x")
        y = gc.exp(x) * 2.0 + gc.log1p(x * x)
    xv = np.array([0.5, -1.0, np.inf, np.nan, 2.0, -np.inf])
    strict = gc.compile([x], y, backend="numba")
    relaxed = gc.compile([x], y, backend="numba", fastmath=True)
    kernels_and_driver = strict.source.split("# ---- kernels")[1].split("# ---- vectorisable")[0]
    assert "fastmath={" not in kernels_and_driver
    assert '"reassoc"' in relaxed.source and "nnan" not in relaxed.source
    expected = gc.compile([x], y, backend="numpy")(xv)
    np.testing.assert_allclose(strict(xv), expected, rtol=1e-12)
    np.testing.assert_allclose(relaxed(xv), expected, rtol=1e-9)  # NaN and inf where numpy has


def test_read_only_inputs_are_accepted(step: Step):
    dtype = step.W.dtype
    xv = np.ones((3, 3), dtype)
    yv = np.zeros(3, dtype)
    xv.setflags(write=False)
    before = step.snapshot()
    expected = step.numpy(xv, yv)
    step.restore(before)
    np.testing.assert_allclose(step.numba(xv, yv)[0], expected[0], rtol=_rtol(dtype))


def test_outputs_and_updates_that_are_slices_of_buffers():
    rng = np.random.default_rng(4)
    with gc.Graph():
        x = gc.placeholder((3, 2), "float64", name="x")
        a = gc.parameter(rng.standard_normal((2, 2)), name="a")
        b = gc.parameter(rng.standard_normal((1, 2)), name="b")
        h = gc.tanh(x) * 2.0
        outputs = [h[1], x[2], a[1]]
        updates = [(b, a[1:2]), (a, a * 0.5)]
    a0, b0 = a.value, b.value
    xv = rng.standard_normal((3, 2))
    got = gc.compile([x], outputs, updates=updates, backend="numba")(xv)
    np.testing.assert_allclose(got[0], np.tanh(xv[1]) * 2.0, rtol=1e-12)
    np.testing.assert_array_equal(got[1], xv[2])
    np.testing.assert_array_equal(got[2], a0[1])
    np.testing.assert_array_equal(b.value, a0[1:2])
    np.testing.assert_array_equal(a.value, a0 * 0.5)
    del b0


def test_division_by_zero_follows_numpy_not_python():
    # Kernels use numba's numpy error model: x / 0 is ±inf or nan (as in the oracle), never a
    # ZeroDivisionError, and the division no longer blocks vectorisation.
    with gc.Graph():
        x = gc.placeholder((None,), "float64", name="x")
        d = gc.placeholder((None,), "float64", name="d")
        y = x / d + 1.0
    xv = np.array([1.0, -1.0, 0.0, 2.0])
    dv = np.array([0.0, 0.0, 0.0, 4.0])
    expected = gc.compile([x, d], y, backend="numpy")(xv, dv)
    got = gc.compile([x, d], y, backend="numba")(xv, dv)
    np.testing.assert_array_equal(got, expected)
    assert np.isposinf(got[0]) and np.isneginf(got[1]) and np.isnan(got[2])


def test_a_python_driver_makes_its_buffer_views_once_per_binding(step: Step):
    source = step.numba.source
    if uses_native_driver(step.numba):
        assert "def bind(" not in source
        return
    per_call = source.split("    def step(")[1]
    # Arena slices and flat views are made by bind(), once per binding of the dims.
    assert "arena_" not in per_call and "offsets[" not in per_call
    assert "_flat" in per_call  # kernels receive the hoisted flat views


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_outputs_can_be_views_of_the_function_buffers(backend: str):
    rng = np.random.default_rng(9)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.parameter(rng.standard_normal((3, 2)), name="w")
        y = gc.tanh(x @ w)
        (g,) = gc.grad(gc.sum(y), [w])
    copied = gc.compile([x], [y, w], updates=[(w, w - 0.1 * g)], backend=backend)
    viewed = gc.compile([x], [y, w], updates=[(w, w - 0.1 * g)], backend=backend,
                        copy_outputs=False)
    xv = rng.standard_normal((4, 3))
    start = w.value
    expected = copied(xv)
    w.assign(start)
    got = viewed(xv)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not got[0].flags.writeable
    np.testing.assert_allclose(got[1], start)  # the parameter's value before the update
    if backend == "numba":
        first = got[0].copy()
        viewed(xv * 2.0)
        assert not np.allclose(got[0], first)  # the view shows the buffer: the newer call


def test_a_python_driver_step_allocates_nothing_inside_compiled_code():
    f, rng = _regression_step(driver_jit=False)
    # numba makes one NRT record per array it receives from Python; kernels allocate nothing.
    array_arguments = step_array_arguments(f)
    assert array_arguments
    for rows in (6, 11):
        assert _allocations(f, rng.standard_normal((rows, 3))) == array_arguments


def test_the_driver_is_native_for_short_steps_and_python_for_long_ones():
    rng = np.random.default_rng(2)

    def driver_jit(rows: int) -> bool:
        with gc.Graph():
            x = gc.placeholder((rows, 256), "float32", name="x")
            w = gc.parameter(rng.standard_normal((256, 256)).astype(np.float32), name="w")
            loss = gc.sum(gc.tanh(x @ w))
            (g,) = gc.grad(loss, [w])
        f = gc.compile([x], loss, updates=[(w, w - 0.1 * g)], backend="numba")
        return uses_native_driver(f)

    assert driver_jit(4)  # ~1 Mflop: one native call per step pays
    assert not driver_jit(512)  # ~200 Mflop: compile the cheaper Python driver


def test_repeated_calls_take_the_runner_and_other_arrays_are_still_checked():
    """After one checked call, arrays of the same kind run through the executable's runner;
    read-only, strided, list or wrongly shaped arguments still go through the checks."""
    rng = np.random.default_rng(9)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.parameter(rng.standard_normal((3, 2)), name="w")
        loss = gc.sum(gc.tanh(x @ w))
        (g,) = gc.grad(loss, [w])
    step = gc.compile([x], loss, updates=[(w, w - 0.1 * g)], backend="numba")
    with gc.Graph():  # the same step on the numpy backend, from the same start
        x2 = gc.placeholder((None, 3), "float64", name="x")
        w2 = gc.parameter(w.value, name="w")
        loss2 = gc.sum(gc.tanh(x2 @ w2))
        (g2,) = gc.grad(loss2, [w2])
    reference = gc.compile([x2], loss2, updates=[(w2, w2 - 0.1 * g2)], backend="numpy")
    feeds = [rng.standard_normal((4, 3)) for _ in range(3)]
    read_only = feeds[1].copy()
    read_only.flags.writeable = False
    strided = rng.standard_normal((4, 6))[:, ::2]
    for value in [*feeds, read_only, strided, strided.tolist(), feeds[0]]:
        np.testing.assert_allclose(step(value), reference(value), rtol=1e-12)
        np.testing.assert_allclose(w.value, w2.value, rtol=1e-12)
    with pytest.raises(gc.InputError, match="expected"):
        step(np.ones((4, 5)))
    with pytest.raises(gc.InputError):
        step(np.ones((4, 3), np.float32))
