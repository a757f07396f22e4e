"""gc.compile(..., compile_mode="background"): numpy serves while another process compiles.

The switch must not show in the results: parameters live in the graph, so a run that switches
half-way equals a run on the numpy backend. A failed or killed compile leaves the function on
numpy with a CompileWarning. No writable cache compiles in this process, eagerly; a cache
that already holds the module is loaded by the compile's thread without another process.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba import background
from graphcomp.testing import background_process_id

RNG = np.random.default_rng(5)
X = RNG.normal(size=(8, 5))
Y = RNG.integers(0, 3, 8)


def _step(compile_mode: str = "background", backend: str = "numba", width: int = 4):
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((None, 5), "float64", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        w = gc.parameter(rng.normal(size=(5, width)) * 0.3, name="w")
        v = gc.parameter(rng.normal(size=(width, 3)) * 0.3, name="v")
        loss = gc.mean(gc.softmax_cross_entropy(gc.tanh(x @ w) @ v, y))
        gw, gv = gc.grad(loss, [w, v])
        step = gc.compile([x, y], loss, updates=[(w, w - 0.5 * gw), (v, v - 0.5 * gv)],
                          backend=backend, compile_mode=compile_mode)
    return step, (w, v)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHCOMP_CACHE_DIR", str(tmp_path / "cache"))


def test_training_goes_on_across_the_switch_with_the_numpy_backend_s_values(fresh_cache):
    step, params = _step(width=7)
    assert step.backend_in_use == "numpy" and step.source is None
    losses = [step(X, Y) for _ in range(3)]
    assert step.wait(timeout=300), "the background compile did not finish"
    assert step.backend_in_use == "numba" and "def " in step.source
    losses += [step(X, Y) for _ in range(3)]
    assert step.interpreted_calls == 3 and step.switch_seconds is not None

    reference, reference_params = _step(backend="numpy", compile_mode="eager", width=7)
    expected = [reference(X, Y) for _ in range(6)]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    for p, q in zip(params, reference_params, strict=True):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12)


def test_a_cache_that_holds_the_module_loads_without_another_process(fresh_cache):
    first, _ = _step(width=6)
    assert first.wait(timeout=300) and first.compiled_elsewhere
    again, _ = _step(width=6)
    assert again._pending is None  # the warm hint: gc.compile loaded the cache itself
    assert background_process_id(again) is None
    assert again.wait(timeout=300)
    assert again.backend_in_use == "numba" and again.cache_hit and not again.compiled_elsewhere


def test_a_failing_compile_leaves_the_function_on_numpy_with_a_warning(fresh_cache, tmp_path,
                                                                       monkeypatch):
    failing = tmp_path / "failing-python"
    failing.write_text("#!/bin/sh\necho 'no compiler here' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(background, "PYTHON", str(failing))
    step, _ = _step(width=5)
    # The fake compiler exits at once, so the first call may already see the failure.
    with pytest.warns(gc.CompileWarning, match="exited with 3:\nno compiler here"):
        first = step(X, Y)
        assert not step.wait(timeout=60)
    assert step.backend_in_use == "numpy"
    assert step(X, Y) < first  # still training


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_compile_leaves_the_function_on_numpy_with_a_warning(fresh_cache):
    step, _ = _step(width=3)
    os.kill(background_process_id(step), signal.SIGKILL)
    with pytest.warns(gc.CompileWarning, match="killed by signal 9"):
        step.wait(timeout=60)
        step(X, Y)
    assert step.backend_in_use == "numpy" and np.isfinite(step(X, Y))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_numpy_s_blas_runs_one_thread_fewer_while_the_process_compiles(fresh_cache, tmp_path,
                                                                       monkeypatch):
    from graphcomp.backends.numba.blas import blas_thread_count

    counts = blas_thread_count()
    if counts is None:
        pytest.skip("numpy's BLAS is not OpenBLAS: its thread count cannot be set")
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    monkeypatch.setattr(background, "PYTHON", str(slow))
    before = counts[0]()
    counts[1](3)
    try:
        step, _ = _step(width=9)
        pid = background_process_id(step)  # waits for the process to start
        step(X, Y)
        assert counts[0]() == 2  # the compiling process has a core
        os.kill(pid, signal.SIGKILL)
        with pytest.warns(gc.CompileWarning, match="killed by signal 9"):
            step.wait(timeout=60)
        assert counts[0]() == 3 and step.backend_in_use == "numpy"
        step(X, Y)
        assert counts[0]() == 3
    finally:
        counts[1](before)


def _openblas_counts():
    from graphcomp.backends.numba.blas import blas_thread_count

    counts = blas_thread_count()
    if counts is None:
        pytest.skip("numpy's BLAS is not OpenBLAS: its thread count cannot be set")
    return counts


def _sleeping_compiler(tmp_path, monkeypatch) -> None:
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    monkeypatch.setattr(background, "PYTHON", str(slow))


def test_blas_threads_are_restored_at_the_switch(fresh_cache):
    counts = _openblas_counts()
    before = counts[0]()
    counts[1](3)
    try:
        step, _ = _step(width=10)
        step(X, Y)
        assert counts[0]() == 2 or not step.ready()  # lowered unless it finished already
        assert step.wait(timeout=300)
        step(X, Y)
        assert step.backend_in_use == "numba" and counts[0]() == 3
    finally:
        counts[1](before)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_blas_threads_are_restored_when_the_function_is_dropped(fresh_cache, tmp_path,
                                                                monkeypatch):
    import gc as collector
    import threading

    counts = _openblas_counts()
    _sleeping_compiler(tmp_path, monkeypatch)
    before = counts[0]()
    counts[1](3)
    pids = []
    try:
        step, _ = _step(width=11)
        pids.append(background_process_id(step))
        step(X, Y)
        assert counts[0]() == 2
        del step
        collector.collect()
        assert counts[0]() == 3  # dropped on this thread: restored at once

        step, _ = _step(width=12)
        pids.append(background_process_id(step))
        step(X, Y)
        assert counts[0]() == 2
        holder = [step]
        del step
        dropper = threading.Thread(target=holder.clear)  # the last reference goes there
        dropper.start()
        dropper.join()
        collector.collect()
        assert counts[0]() == 2  # not changed from another thread
        other, _ = _step(backend="numpy", compile_mode="eager")
        other(X, Y)  # this thread's next call restores it
        assert counts[0]() == 3
    finally:
        counts[1](before)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_the_compiling_process_runs_at_a_lower_priority(fresh_cache, tmp_path, monkeypatch):
    _sleeping_compiler(tmp_path, monkeypatch)
    step, _ = _step(width=13)
    pid = background_process_id(step)
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(own + background.COMPILE_NICE, 19)
        assert background.COMPILE_NICE > 0
    finally:
        os.kill(pid, signal.SIGKILL)
    with pytest.warns(gc.CompileWarning, match="killed by signal 9"):
        step.wait(timeout=60)


def test_no_writable_cache_compiles_here_with_a_warning(fresh_cache, monkeypatch):
    monkeypatch.setattr(background, "writable_cache", lambda: False)
    with pytest.warns(gc.CompileWarning, match="not writable"):
        step, _ = _step(width=2)
    assert step.backend_in_use == "numba" and step.ready()


def test_compile_mode_is_checked_and_other_backends_compile_at_once():
    with pytest.raises(gc.CompileError, match="compile_mode must be one of eager, background"):
        _step(compile_mode="lazy")
    step, _ = _step(backend="numpy")
    assert step.backend_in_use == "numpy" and step.ready()


@pytest.mark.parametrize("driver_jit", [True, False])
def test_a_cache_holding_every_module_compiles_in_this_process(fresh_cache, driver_jit):
    # A program is a driver module and the kernel modules it imports; a Python driver's own
    # module has nothing to compile, so the cache counts as warm when every kernel is cached.
    def evaluation(compile_mode: str) -> gc.Function:
        with gc.Graph():
            x = gc.placeholder((None, 5), "float64", name="x")
            w = gc.parameter(np.full((5, 3), 0.25), name="w")
            return gc.compile([x], gc.sum(gc.tanh(x @ w)), backend="numba",
                              compile_mode=compile_mode, driver_jit=driver_jit)

    evaluation("eager")
    warm = evaluation("background")
    # loaded by gc.compile itself: numba from the first call, no thread, no process
    assert warm._pending is None and warm.backend_in_use == "numba" and warm.ready()
    assert background_process_id(warm) is None and warm.wait(timeout=300)
    assert warm.cache_hit
    np.testing.assert_allclose(warm(X), np.sum(np.tanh(X @ np.full((5, 3), 0.25))))


NUMBA_IMPORT_PROBE = """
import json, sys, threading
import numpy as np

threads = []

class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "numba":
            threads.append(threading.current_thread() is threading.main_thread())
        return None

sys.meta_path.insert(0, Probe())
import graphcomp as gc

with gc.Graph():
    x = gc.placeholder((None, 3), "float64", name="x")
    w = gc.parameter(np.full((3, 2), 0.5), name="w")
    f = gc.compile([x], gc.sum(gc.tanh(x @ w)), updates=[(w, w * 0.5)], backend="numba",
                   compile_mode="background")
first = float(f(np.ones((2, 3))))
ready = f.wait(timeout=300)
print(json.dumps({"threads": threads, "ready": ready, "in_use": f.backend_in_use,
                  "values": [first, float(f(np.ones((2, 3))))]}))
"""


def test_the_calling_thread_never_imports_numba(tmp_path):
    # gc.compile returns before the passes run; numba is imported (and the compiled module
    # loaded) by the compile's thread, so a training loop never waits for either.
    import json
    import subprocess

    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", NUMBA_IMPORT_PROBE], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["threads"] == [False], report  # imported once, not by the main thread
    assert report["ready"] and report["in_use"] == "numba"
    # x @ w is 1.5 everywhere, then 0.75 after the update halved w
    expected = [np.tanh(np.full((2, 2), v)).sum() for v in (1.5, 0.75)]
    np.testing.assert_allclose(report["values"], expected, rtol=1e-12)


PLAN_PROBE = """
import json, sys
import numpy as np
import graphcomp as gc
from graphcomp.backends.numba.background import _all_compiled
from graphcomp.backends.numba.backend import plan_modules
from graphcomp.runtime.program import build_program

with gc.Graph():
    xs = gc.placeholder((None, 3), "float64", name="xs")
    w = gc.parameter(np.full((3, 3), 0.5), name="w")
    c, ys = gc.scan(lambda c, x: (gc.tanh(c @ w + x), c), gc.constant(np.zeros(3)), xs)
    loss = gc.sum(c * c)
    (g,) = gc.grad(loss, [w])
    program = build_program([xs], [loss, gc.exp(ys)], [(w, w - 0.1 * g)], True)
_, modules = plan_modules(program)
print(json.dumps({"modules": len(modules), "cached": [_all_compiled(m) for m in modules],
                  "numba": "numba" in sys.modules}))
"""


PLANNING_PROBE = NUMBA_IMPORT_PROBE.replace('name == "numba"',
                                          'name == "graphcomp.backends.numba.codegen"')


def test_a_cold_compile_plans_in_its_thread_and_a_warm_one_on_the_caller_s(tmp_path):
    # Cold: gc.compile returns before the code generator is even imported, so the first
    # interpreted call does not wait for the planning. Once that program has compiled, its
    # warm hint makes the next process plan and load on the calling thread.
    import json
    import subprocess

    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(tmp_path / "cache")}
    for expected in ([False], [True]):
        done = subprocess.run([sys.executable, "-c", PLANNING_PROBE], env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["threads"] == expected, report
        assert report["ready"] and report["in_use"] == "numba"
    assert len(list((tmp_path / "cache").glob("warm-*"))) == 1


def test_planning_the_modules_does_not_import_numba(tmp_path):
    # The compile's thread imports numba only to load what the other process compiled, so a
    # run that ends first never pays for the import.
    import json
    import subprocess

    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", PLAN_PROBE], env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] > 1 and not any(report["cached"]) and not report["numba"], report


def test_a_step_and_its_evaluation_switch_together(fresh_cache):
    # Their threads load the same kernel modules (shared through the cache) one at a time.
    rng = np.random.default_rng(1)
    with gc.Graph():
        x = gc.placeholder((None, 5), "float64", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        w = gc.parameter(rng.normal(size=(5, 3)) * 0.3, name="w")
        loss = gc.mean(gc.softmax_cross_entropy(gc.tanh(x @ w), y))
        (gw,) = gc.grad(loss, [w])
        step = gc.compile([x, y], loss, updates=[(w, w - 0.5 * gw)], backend="numba",
                          compile_mode="background")
        evaluate = gc.compile([x, y], loss, backend="numba", compile_mode="background")
        reference = gc.compile([x, y], loss, backend="numpy")
    before = reference(X, Y)
    assert step.wait(timeout=300) and evaluate.wait(timeout=300)
    assert step.backend_in_use == evaluate.backend_in_use == "numba"
    np.testing.assert_allclose(evaluate(X, Y), before, rtol=1e-12)
    np.testing.assert_allclose(step(X, Y), before, rtol=1e-12)
    np.testing.assert_allclose(evaluate(X, Y), reference(X, Y), rtol=1e-12)


def test_importing_graphcomp_imports_no_numba():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", "import sys, graphcomp; print('numba' in sys.modules)"],
        capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "False"


def test_the_compiling_process_compiles_the_lanes_helper_thread_too(fresh_cache):
    # Else the caller's lane worker compiles it while loading the modules (~1.4 s of CPU).
    import subprocess

    from graphcomp.backends.numba.backend import plan_modules
    from graphcomp.backends.numba.blas import numpy_blas
    from graphcomp.backends.numba.cache import cache_dir
    from graphcomp.backends.numba.compile_job import CompileJob
    from graphcomp.backends.numba.lanes.worker import SUPPORTED
    from graphcomp.runtime.program import build_program

    if numpy_blas() is None or not SUPPORTED:
        pytest.skip("no lanes without numpy's BLAS and a POSIX libc")
    with gc.Graph():
        a = gc.placeholder((128, 256), "float32", name="a")
        w = gc.parameter(np.ones((256, 128), dtype=np.float32), name="w")
        program = build_program([a], [gc.sum(a @ w)], None, True)
    _, modules = plan_modules(program)
    assert [m.uses_lanes for m in modules] == [True]
    job = CompileJob.of(modules[0])
    assert job.uses_lanes and CompileJob.from_json(job.to_json()) == job
    path = cache_dir() / "job.json"
    path.write_text(job.to_json())
    hint = cache_dir() / "warm-test"
    subprocess.run([sys.executable, "-m", "graphcomp.backends.numba.compile_job", "--hint",
                    str(hint), str(path)],
                   env={**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache_dir())}, check=True,
                   timeout=600)
    assert [p.name for p in cache_dir().rglob("*serve*.nbi")], "serve was not compiled"
    # the process leaves the program's warm hint itself (its caller may have ended)
    assert hint.exists()
