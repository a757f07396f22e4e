"""Products split between the calling thread and the lane helper (backends/numba/lanes.py)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba.blas import numpy_blas
from graphcomp.testing import lane_worker, module_globals

pytestmark = pytest.mark.skipif(numpy_blas() is None or os.name != "posix",
                                reason="lanes need numpy's OpenBLAS and a POSIX libc")

# (a, b) shapes: split by rows (m >= n) and by columns (m < n), sizes that are not multiples
# of 16, and a product just large enough to split.
SHAPES = [((96, 64), (64, 90)), ((24, 128), (128, 256)), ((130, 65), (65, 70)),
          ((64, 128), (128, 64))]


def _products_graph(dtype):
    """One graph holding every shape of SHAPES in every layout (one compile per dtype)."""
    rng = np.random.default_rng(3)
    inputs, outputs, values = [], [], []
    with gc.Graph():
        for number, (a_shape, b_shape) in enumerate(SHAPES):
            for layout in ("nn", "tn", "nt", "tt"):
                a_stored = a_shape[::-1] if layout[0] == "t" else a_shape
                b_stored = b_shape[::-1] if layout[1] == "t" else b_shape
                a = gc.placeholder(a_stored, dtype, name=f"a{number}{layout}")
                w = gc.parameter(rng.standard_normal(b_stored).astype(dtype), name=f"w{number}")
                left = a.T if layout[0] == "t" else a
                right = w.T if layout[1] == "t" else w
                inputs.append(a)
                outputs.append(gc.tanh(left @ right))
                values.append(rng.standard_normal(a_stored).astype(dtype))
    return inputs, outputs, values


@pytest.mark.parametrize(("dtype", "driver_jit"), [("float32", True), ("float64", False)])
def test_split_products_match_numpy_in_every_layout(dtype, driver_jit):
    inputs, outputs, values = _products_graph(dtype)
    f = gc.compile(inputs, outputs, backend="numba", driver_jit=driver_jit)
    reference = gc.compile(inputs, outputs, backend="numpy")
    calls = [line for line in f.source.splitlines() if ", lanes)  # " in line]
    assert len(calls) == len(outputs)  # every product is split
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    for _ in range(3):  # the helper joins after the first call
        for got, want in zip(f(*values), reference(*values), strict=True):
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def test_small_products_are_not_split():
    with gc.Graph():
        x = gc.placeholder((16, 32), "float32", name="x")
        w = gc.parameter(np.ones((32, 64), np.float32), name="w")
        y = x @ w
    f = gc.compile([x], y, backend="numba")
    assert "gemm_split(" not in f.source
    assert lane_worker(f) is None


def test_the_lane_code_runs_as_a_module_of_its_own():
    """lanes/code.py, the text generated modules copy, imports and computes by itself."""
    from graphcomp.backends.numba.lanes import code

    rng = np.random.default_rng(6)
    for dtype, enabled in (("float32", True), ("float64", False)):
        a = rng.standard_normal((64, 128)).astype(dtype)  # passed transposed: op(a) is 128x64
        b = rng.standard_normal((64, 64)).astype(dtype)
        out = np.ones((128, 64), dtype)
        lanes = L.lanes_array(enabled=enabled)  # no helper: the caller claims every piece
        code.gemm_split(a, 1, b, 0, out, out.dtype.type(2.0), out.dtype.type(0.5), lanes)
        np.testing.assert_allclose(out, 2 * a.T @ b + 0.5, rtol=1e-4, atol=1e-4)
        assert lanes[0, L.CLAIM] >> 32 == int(enabled)  # split: one product published


def _big_step():
    rng = np.random.default_rng(4)
    with gc.Graph():
        x = gc.placeholder((128, 256), "float32", name="x")
        w = gc.parameter(rng.standard_normal((256, 128)).astype(np.float32) * 0.05, name="w")
        loss = gc.mean(gc.square(gc.tanh(x @ w)))
        (g,) = gc.grad(loss, [w])
    step = gc.compile([x], loss, updates=[(w, w - 0.1 * g)], backend="numba")
    return step, w, rng.standard_normal((128, 256)).astype(np.float32)


def test_the_helper_computes_pieces_and_training_matches_numpy():
    step, w, x = _big_step()
    worker = lane_worker(step)
    assert worker is not None
    with gc.Graph():
        xr = gc.placeholder((128, 256), "float32", name="x")
        wr = gc.parameter(w.value, name="w")
        loss = gc.mean(gc.square(gc.tanh(xr @ wr)))
        (g,) = gc.grad(loss, [wr])
    reference = gc.compile([xr], loss, updates=[(wr, wr - 0.1 * g)], backend="numpy")
    before = int(worker.lanes[0, L.HELPED])
    deadline = time.monotonic() + 10  # a busy machine may keep the helper away for a while
    steps = 0
    while steps < 30 or (worker.lanes[0, L.HELPED] == before and time.monotonic() < deadline):
        np.testing.assert_allclose(step(x), reference(x), rtol=1e-5)
        steps += 1
    np.testing.assert_allclose(w.value, wr.value, rtol=1e-5, atol=1e-6)
    assert int(worker.lanes[0, L.HELPED]) > before  # the second lane did take pieces


def _blas_threads() -> int:
    library = numpy_blas()
    blas = ctypes.CDLL(library.path)
    return blas.scipy_openblas_get_num_threads64_()


def test_openblas_threads_are_restored_after_a_step_and_after_an_error():
    rng = np.random.default_rng(8)
    with gc.Graph():
        x = gc.placeholder((128, 256), "float32", name="x")
        rows = gc.placeholder((4,), "int64", name="rows")
        w = gc.parameter(rng.standard_normal((256, 128)).astype(np.float32), name="w")
        y = gc.take(x @ w, rows, axis=0)  # the index check runs after the split product
    step = gc.compile([x, rows], y, backend="numba")
    worker = lane_worker(step)
    value = rng.standard_normal((128, 256)).astype(np.float32)
    before = _blas_threads()
    step(value, np.arange(4))
    assert _blas_threads() == before
    with pytest.raises(gc.InputError, match="take"):
        step(value, np.array([0, 1, 2, 500]))  # raised inside the compiled step
    assert _blas_threads() == before
    assert worker.lanes[0, L.ACTIVE] == 0
    assert worker.begin() is not None  # the lanes were given back
    worker.end()


def test_a_step_that_cannot_take_the_lanes_runs_whole():
    step, _, x = _big_step()
    expected = float(gc.compile(*_fresh_loss(step), backend="numpy")(x))
    worker = lane_worker(step)
    held = worker.begin()  # another thread's step holds the lanes
    assert held is not None
    try:
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("loss", float(step(x))))
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        worker.end()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def _fresh_loss(step):
    """(inputs, loss) of a numpy twin of ``step``'s graph with the current parameter value."""
    rng_value = next(iter(step.program.graph.parameter_values.values()))
    with gc.Graph():
        x = gc.placeholder((128, 256), "float32", name="x")
        w = gc.parameter(rng_value.copy(), name="w")
        loss = gc.mean(gc.square(gc.tanh(x @ w)))
    return [x], loss


def test_concurrent_steps_of_two_graphs_are_both_correct():
    steps = [_big_step() for _ in range(2)]
    expected = []
    for step, _, x in steps:
        expected.append(float(gc.compile(*_fresh_loss(step), backend="numpy")(x)))
    results: dict[int, float] = {}

    def run(k: int) -> None:
        step, _, x = steps[k]
        results[k] = float(step(x))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results[0] == pytest.approx(expected[0], rel=1e-5)
    assert results[1] == pytest.approx(expected[1], rel=1e-5)


def test_the_helper_parks_when_idle_and_wakes_for_the_next_step(monkeypatch):
    step, _, x = _big_step()
    worker = lane_worker(step)
    monkeypatch.setattr(L, "PARK_SECONDS", 0.01)
    step(x)
    time.sleep(0.05)
    step(x)  # the helper reads the shorter park time when it next starts serving
    deadline = time.monotonic() + 5
    while worker.lanes[0, L.PARKED] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.lanes[0, L.PARKED] == 1
    before = int(worker.lanes[0, L.HELPED])
    deadline = time.monotonic() + 5
    while worker.lanes[0, L.HELPED] == before and time.monotonic() < deadline:
        step(x)
    assert worker.lanes[0, L.HELPED] > before


def test_environment_switch_turns_the_lanes_off(monkeypatch):
    monkeypatch.setenv("GRAPHCOMP_LANES", "0")
    step, _, x = _big_step()
    assert lane_worker(step) is None
    assert "gemm_split(" in step.source  # same module; the products run whole
    expected = float(gc.compile(*_fresh_loss(step), backend="numpy")(x))
    assert float(step(x)) == pytest.approx(expected, rel=1e-5)


def _run_script(code: str, **env: str) -> str:
    environment = {**os.environ, **env}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


SCRIPT = """
    import os
    import numpy as np
    import graphcomp as gc
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((128, 256), "float32", name="x")
        w = gc.parameter(rng.standard_normal((256, 128)).astype(np.float32), name="w")
        y = gc.sum(x @ w)
    f = gc.compile([x], y, backend="numba")
    value = rng.standard_normal((128, 256)).astype(np.float32)
    expected = float(np.sum(value.astype(np.float64) @ w.value.astype(np.float64)))
    assert abs(float(f(value)) - expected) <= 1e-3 * abs(expected), (float(f(value)), expected)
"""


def test_plain_python_module_runs_split_products(tmp_path):
    out = _run_script(SCRIPT + "    print('ok')\n", NUMBA_DISABLE_JIT="1",
                      GRAPHCOMP_CACHE_DIR=str(tmp_path))
    assert out.strip() == "ok"


def test_a_forked_child_gets_its_own_helper(tmp_path):
    code = SCRIPT + """
    f(value)
    pid = os.fork()
    if pid == 0:
        try:
            import time
            from graphcomp.backends.numba.lanes import HELPED, LaneWorker
            from graphcomp.testing import lane_worker
            deadline = time.monotonic() + 20  # a busy machine may keep the helper away
            while time.monotonic() < deadline:
                assert abs(float(f(value)) - expected) <= 1e-3 * abs(expected)
                if LaneWorker.shared().lanes[0, HELPED] > 0:
                    break
            assert lane_worker(f) is LaneWorker.shared()
            assert LaneWorker.shared().in_this_process()
            assert LaneWorker.shared().lanes[0, HELPED] > 0
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
    """
    out = _run_script(code, GRAPHCOMP_CACHE_DIR=str(tmp_path))
    assert out.strip() == "child 0"


def _module_namespace() -> dict:
    """The globals of the lanes' module that a generated module splitting products imports
    gemm_split from (gemm_split, run_piece...)."""
    with gc.Graph():
        x = gc.placeholder((64, 128), "float32", name="x")
        w = gc.parameter(np.ones((128, 128), np.float32), name="w")
        f = gc.compile([x], x @ w, backend="numba")
    return module_globals(f)["gemm_split"].py_func.__globals__


def test_a_late_helper_pauses_splitting_for_a_while():
    from numba import njit, types

    from graphcomp.backends.numba.lanes.intrinsics import atomic_add, atomic_cas, atomic_load

    namespace = _module_namespace()
    run_piece, clock_ns = namespace["run_piece"], namespace["clock_ns"]
    claimed = L.SPARE  # set when slow_helper got a piece

    @njit(nogil=True)
    def slow_helper(lanes, delay_ns):
        """Claims one piece of the next product, computes it, waits until the caller has
        finished its own piece, then dawdles ``delay_ns`` before reporting."""
        clock = np.zeros(2, dtype=np.int64)
        seen = atomic_load(lanes, 0, L.CLAIM) >> 32
        waiting_since = clock_ns(clock)
        while (atomic_load(lanes, 0, L.CLAIM) >> 32) == seen:
            if clock_ns(clock) - waiting_since > 30_000_000_000:
                return  # the test failed before publishing a product
        while True:
            word = atomic_load(lanes, 0, L.CLAIM)
            if (word & 0xFFFFFFFF) >= lanes[0, L.COUNT]:
                return  # the caller took both pieces first
            if atomic_cas(lanes, 0, L.CLAIM, word, word + 1):
                lanes[0, claimed] = 1
                run_piece(lanes, 1 + (word & 0xFFFFFFFF))
                while atomic_load(lanes, 0, L.DONE) < 1:
                    pass
                start = clock_ns(clock)
                while clock_ns(clock) - start < delay_ns:
                    pass
                atomic_add(lanes, 0, L.DONE, 1)
                return

    slow_helper.compile((types.Array(types.int64, 2, "C"), types.int64))
    gemm = namespace["gemm_split"]
    rng = np.random.default_rng(5)
    a = rng.standard_normal((256, 256)).astype(np.float32)
    b = rng.standard_normal((256, 128)).astype(np.float32)
    out = np.zeros((256, 128), np.float32)
    one, zero = np.float32(1.0), np.float32(0.0)
    # On a busy machine the caller may take both pieces before slow_helper runs: try again.
    for _ in range(20):
        lanes = L.lanes_array(enabled=True)  # served by no helper but ours
        helper = threading.Thread(target=slow_helper, args=(lanes, 200_000_000), daemon=True)
        helper.start()
        time.sleep(0.05)  # the helper is spinning on the claim word
        gemm(a, 0, b, 0, out, one, zero, lanes)
        helper.join(timeout=30)
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)
        if lanes[0, claimed]:
            break
    assert lanes[0, claimed] == 1
    assert lanes[0, L.HELPED] == 0  # slow_helper does not count itself
    assert lanes[0, L.LATE] == 1
    assert lanes[0, L.BACKOFF] == L.BACKOFF_PRODUCTS << 1
    generation = lanes[0, L.CLAIM] >> 32
    out[:] = 0
    gemm(a, 0, b, 0, out, one, zero, lanes)  # runs whole: nothing is published
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)
    assert lanes[0, L.CLAIM] >> 32 == generation
    assert lanes[0, L.BACKOFF] == (L.BACKOFF_PRODUCTS << 1) - 1
