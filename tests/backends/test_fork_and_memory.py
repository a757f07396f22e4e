"""Fork safety (a fork while another thread steps or compiles) and what dropping a compiled
function releases. Each fork scenario runs in a subprocess under a timeout, so a hang fails
the test instead of blocking the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")

TIMEOUT = 240  # seconds for one scenario; they take 10-40 s here


def _run(code: str, tmp_path, **env: str) -> str:
    environment = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(tmp_path), **env}
    try:
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment,
                                capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung (killed after {TIMEOUT} s); output so far: {exc.stdout!r}")
    assert result.returncode == 0, result.stderr
    return result.stdout


STEPPING = """
    import os, threading, time
    import numpy as np
    import graphcomp as gc
    from graphcomp.testing import lane_worker

    rng = np.random.default_rng(0)
    with gc.Graph():  # an MLP step: float64 GEMMs that OpenBLAS runs on its thread pool
        x = gc.placeholder((None, 64), "float64", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        W1 = gc.parameter(rng.standard_normal((64, 256)) * 0.1, name="W1")
        W2 = gc.parameter(rng.standard_normal((256, 10)) * 0.1, name="W2")
        loss = gc.mean(gc.softmax_cross_entropy(gc.relu(x @ W1) @ W2, y))
        g1, g2 = gc.grad(loss, [W1, W2])
        step = gc.compile([x, y], loss, updates=[(W1, W1 - 0.01 * g1), (W2, W2 - 0.01 * g2)],
                          backend="numba")
        evaluate = gc.compile([x, y], loss, backend="numba")
        reference = gc.compile([x, y], loss, backend="numpy")
    with gc.Graph():  # float32 products split with the lane helper
        a = gc.placeholder((128, 256), "float32", name="a")
        w = gc.parameter(rng.standard_normal((256, 128)).astype(np.float32), name="w")
        split = gc.compile([a], gc.sum(a @ w), backend="numba")
    assert lane_worker(split) is not None
    X, Y = rng.standard_normal((256, 64)), rng.integers(0, 10, 256)
    A = rng.standard_normal((128, 256)).astype(np.float32)
    expected = float(np.sum(A.astype(np.float64) @ w.value.astype(np.float64)))

    steps, stop = [0], False
    def loop():
        while not stop:
            step(X, Y)
            split(A)
            steps[0] += 1
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    while steps[0] < 2:
        time.sleep(0.01)
    for _ in range(8):
        pid = os.fork()
        if pid == 0:  # the child steps too, with its own lane helper and OpenBLAS pool
            try:
                ok = abs(float(evaluate(X, Y)) - float(reference(X, Y))) < 1e-9
                ok = ok and abs(float(split(A)) - expected) <= 1e-3 * abs(expected)
                step(X, Y)
            except BaseException:
                os._exit(2)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
    before = steps[0]
    while steps[0] < before + 2:  # the stepping thread goes on after the forks
        time.sleep(0.01)
    stop = True
    thread.join()
    print("parent ok")
"""


def test_forking_while_another_thread_steps_hangs_neither_side(tmp_path):
    out = _run(STEPPING, tmp_path).split()
    assert out == ["child", "0"] * 8 + ["parent", "ok"], out


COMPILING = """
    import os, threading, time
    import numpy as np
    import graphcomp as gc

    def build(width):
        with gc.Graph():
            x = gc.placeholder((None, 16), "float64", name="x")
            W = gc.parameter(np.full((16, width), 0.01), name="W")
            return gc.compile([x], gc.sum(gc.tanh(x @ W)), backend="numba")

    compiled, stop = [0], False
    def loop():
        width = 3
        while not stop:
            build(width)
            width += 1
            compiled[0] += 1
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    while compiled[0] < 1:
        time.sleep(0.01)
    for i in range(4):
        time.sleep(0.2)  # fork at different points of a compile
        pid = os.fork()
        if pid == 0:
            try:
                value = float(build(1000 + i)(np.ones((2, 16))))
            except BaseException:
                os._exit(2)
            os._exit(0 if abs(value - 2 * (1000 + i) * np.tanh(0.16)) < 1e-9 else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
    stop = True
    thread.join()
    print("parent ok")
"""


def test_a_child_forked_while_another_thread_compiles_can_compile(tmp_path):
    out = _run(COMPILING, tmp_path).split()
    assert out == ["child", "0"] * 4 + ["parent", "ok"], out


HELPER_STARTING = """
    import os, threading
    from graphcomp.backends.numba.lanes import LaneWorker

    taken, release = threading.Event(), threading.Event()
    def starting():  # holds the lock a thread holds while it starts the lane helper
        with LaneWorker._shared_lock:
            taken.set()
            release.wait()
    thread = threading.Thread(target=starting)
    thread.start()
    taken.wait()
    pid = os.fork()
    if pid == 0:
        worker = LaneWorker.shared()
        os._exit(0 if worker is not None and worker.in_this_process() else 1)
    _, status = os.waitpid(pid, 0)
    release.set()
    thread.join()
    print("child", os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_while_the_lane_helper_starts_gets_its_own(tmp_path):
    from graphcomp.backends.numba.blas import numpy_blas

    if numpy_blas() is None:
        pytest.skip("the lane helper needs numpy's OpenBLAS")
    assert _run(HELPER_STARTING, tmp_path).split() == ["child", "0"]


OPENMP = """
    import os
    import numba
    import numpy as np
    import graphcomp as gc

    with gc.Graph():
        x = gc.placeholder((1 << 20,), "float64", name="x")
        f = gc.compile([x], gc.sum(2.0 * gc.tanh(x)), backend="numba")
    assert "parallel=True" in f.source
    value = np.ones(1 << 20)
    f(value)
    print(numba.threading_layer(), flush=True)
    pid = os.fork()
    if pid == 0:
        try:
            f(value)
        except gc.GraphcompError as exc:
            print(type(exc).__name__, "spawn" in str(exc), flush=True)
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
"""


def test_a_child_of_an_openmp_parent_gets_a_clear_error(tmp_path):
    out = _run(OPENMP, tmp_path).split()
    if out[0] != "omp":
        pytest.skip(f"numba's threading layer here is {out[0]}, not GNU OpenMP")
    assert out[1:] == ["ForkedProcessError", "True", "child", "0"], out


def _small_function(width: int):
    import numpy as np

    import graphcomp as gc

    with gc.Graph():
        x = gc.placeholder((None, 4), "float64", name="x")
        W = gc.parameter(np.full((4, width), 0.5), name="W")
        return gc.compile([x], gc.sum(x @ W), backend="numba")


def test_dropping_a_compiled_function_releases_its_generated_module():
    """graphcomp's own references go (numba keeps the module's functions: see release.py)."""
    import gc as python_gc
    import linecache
    import weakref

    import numpy as np

    kept = _small_function(3)
    twin = _small_function(3)  # the same graph: it shares kept's module
    dropped = _small_function(5)

    def driver_module(f: Any) -> str:  # an njit driver, or a Python one's bind()
        driver = f._executable._driver
        return getattr(driver, "py_func", driver).__module__

    kept_name = driver_module(kept)
    dropped_name = driver_module(dropped)
    assert kept_name != dropped_name
    path = sys.modules[dropped_name].__file__
    linecache.getlines(path)
    executable = weakref.ref(dropped._executable)
    del dropped, twin
    python_gc.collect()
    _small_function(6)  # a compile releases what was dropped since the last one
    python_gc.collect()
    assert executable() is None
    assert dropped_name not in sys.modules
    assert path not in linecache.cache
    assert kept_name in sys.modules  # still in use
    assert float(kept(np.ones((2, 4)))) == 12.0
