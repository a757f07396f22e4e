"""A helper process compiling a share of a Python driver's kernels (backends/numba/parallel.py).

``GRAPHCOMP_COMPILE_HELPER=1`` forces the helper whenever the kernels form two groups; the
tests check that the helper's kernels are compiled there once and only loaded here, that the
results equal the numpy backend's, that a failing helper means a warning and a compile here,
and that the background compile's process (``python -m ...compile_job JOB``) starts one too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba import parallel
from graphcomp.backends.numba.backend import generate_module
from graphcomp.backends.numba.compile_job import CompileJob
from graphcomp.errors import CompileWarning
from graphcomp.runtime.program import build_program

RNG = np.random.default_rng(5)
X = RNG.normal(size=(5, 4))
W = RNG.normal(size=(4, 3))


def _graph() -> tuple[gc.Tensor, list[gc.Tensor]]:
    """An evaluation (Python driver) with kernels in several groups: no shared library."""
    x = gc.placeholder((None, 4), "float64", name="x")
    w = gc.parameter(W, name="w")
    h = x @ w
    return x, [gc.sum(gc.maximum(h, 0.0) * 2.0, axis=1), gc.max(h - 1.0, axis=0),
               gc.abs(x) + 3.0]


@pytest.fixture
def forced(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHCOMP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(parallel.ENV_VAR, "1")
    started: list[parallel.Helper] = []
    spawn = parallel._spawn

    def recording_spawn(*args):  # type: ignore[no-untyped-def]
        started.append(spawn(*args))
        return started[-1]

    monkeypatch.setattr(parallel, "_spawn", recording_spawn)
    return started


def _compile() -> tuple[gc.Function, gc.Function]:
    with gc.Graph():
        x, outputs = _graph()
        return (gc.compile([x], outputs, backend="numba"),
                gc.compile([x], outputs, backend="numpy"))


def _kernel(function: gc.Function, name: str):  # type: ignore[no-untyped-def]
    driver = function._executable._driver
    return getattr(driver, "py_func", driver).__globals__.get(name)


def test_the_helper_compiles_its_share_once_and_this_process_loads_it(forced, monkeypatch):
    claim = parallel.Helper.claim

    def first_only(self, index):  # type: ignore[no-untyped-def]
        # This process stops after the first group, as if the helper had reached the second:
        # the helper then compiles every other group, however fast this process is.
        return index == 0 and claim(self, index)

    monkeypatch.setattr(parallel.Helper, "claim", first_only)
    compiled, reference = _compile()
    helper = forced[0] if forced else None
    assert helper is not None and len(helper.groups) >= 2 and helper.done
    for got, want in zip(compiled(X), reference(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    theirs = {n for i, names in enumerate(helper.groups) if i not in helper.mine for n in names}
    assert helper.mine == {0} and theirs
    # Each group compiled by one process: the helper's loaded here from the cache it wrote.
    for name in theirs:
        kernel = _kernel(compiled, name)
        assert sum(kernel.stats.cache_misses.values()) == 0
        assert sum(kernel.stats.cache_hits.values()) >= 1
    own = set(compiled._executable.module.kernel_signatures) - theirs
    assert any(sum(_kernel(compiled, n).stats.cache_misses.values()) for n in own
               if _kernel(compiled, n) is not None)
    assert not forced[0].folder.exists()


def test_a_failing_helper_warns_and_its_share_is_compiled_here(forced, monkeypatch):
    monkeypatch.setattr(parallel, "PYTHON", "/bin/false")
    with pytest.warns(CompileWarning, match="helper process exited with 1"):
        compiled, reference = _compile()
    assert len(forced) == 1
    for name in set().union(*forced[0].groups):  # compiled here, whoever claimed them
        assert sum(_kernel(compiled, name).stats.cache_misses.values()) >= 1
    for got, want in zip(compiled(X), reference(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_helper_that_claims_groups_and_dies_leaves_them_to_this_process(forced, monkeypatch,
                                                                        tmp_path):
    # The stand-in helper claims every group but the first, then fails without compiling.
    script = tmp_path / "dying-helper"
    script.write_text("#!/bin/sh\nshare=\"$4\"\nfolder=$(dirname \"$share\")\n"
                      "for i in 1 2 3 4 5 6 7 8; do mkdir \"$folder/claim-$i\"; done\n"
                      "echo 'helper: something went wrong' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setattr(parallel, "PYTHON", str(script))
    claim = parallel.Helper.claim

    def after_the_helper(self, index):  # type: ignore[no-untyped-def]
        self.process.wait()  # let the stand-in claim first
        return claim(self, index)

    monkeypatch.setattr(parallel.Helper, "claim", after_the_helper)
    with pytest.warns(CompileWarning, match="exited with 3: helper: something went wrong"):
        compiled, reference = _compile()
    helper = forced[0]
    assert helper.mine == {0}
    for name in set().union(*helper.groups[1:]):
        assert sum(_kernel(compiled, name).stats.cache_misses.values()) >= 1
    for got, want in zip(compiled(X), reference(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_helper_that_cannot_start_warns_and_everything_compiles_here(forced, monkeypatch):
    monkeypatch.setattr(parallel, "PYTHON", "/no/such/python")
    with pytest.warns(CompileWarning, match="could not start its compile helper"):
        compiled, reference = _compile()
    np.testing.assert_allclose(compiled(X)[2], reference(X)[2], rtol=1e-12)


def test_no_helper_when_turned_off(forced, monkeypatch):
    monkeypatch.setenv(parallel.ENV_VAR, "0")
    compiled, reference = _compile()
    assert forced == []
    np.testing.assert_allclose(compiled(X)[0], reference(X)[0], rtol=1e-12)


def test_the_background_compile_process_starts_a_helper_too(tmp_path):
    cache = tmp_path / "cache"
    with gc.Graph():
        x, outputs = _graph()
        _, _, module = generate_module(build_program([x], outputs))
    job = tmp_path / "job.json"
    job.write_text(CompileJob.of(module).to_json())
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache), parallel.ENV_VAR: "1",
           "PYTHONPATH": root}
    code = ("import sys; from graphcomp.backends.numba import parallel as p, compile_job as c\n"
            "spawn = p._spawn\n"
            "def counted(*a):\n    print('helper', len(a[1])); return spawn(*a)\n"
            "p._spawn = counted\n"
            "sys.exit(c.main([sys.argv[1]]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(job)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("helper ")
    os.environ["GRAPHCOMP_CACHE_DIR"], previous = str(cache), os.environ.get(
        "GRAPHCOMP_CACHE_DIR")
    try:
        compiled, reference = _compile()
    finally:
        if previous is None:
            del os.environ["GRAPHCOMP_CACHE_DIR"]
        else:
            os.environ["GRAPHCOMP_CACHE_DIR"] = previous
    assert compiled.cache_hit  # everything the two processes wrote is used
    np.testing.assert_allclose(compiled(X)[1], reference(X)[1], rtol=1e-12)


@pytest.mark.parametrize(("idle_ticks", "load", "free"), [
    (90, 3.9, True),   # one core idle since the compile began: a stale load average ignored
    (10, 0.0, False),  # both cores busy since the compile began, whatever the load average
])
def test_idle_cores_are_measured_over_the_compile_not_the_load_average(
        monkeypatch, idle_ticks, load, free):
    ticks = [(1000, 5000), (1000 + idle_ticks, 5200)]  # two cores, 100 ticks each
    monkeypatch.setattr(parallel, "_cpu_ticks", lambda: ticks.pop(0) if len(ticks) > 1
                        else ticks[0])
    monkeypatch.setattr(parallel, "_usable_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    parallel.note_compile_start()
    monkeypatch.setattr(parallel, "_since",
                        (parallel._since[0] - parallel.MIN_WINDOW_SECONDS, parallel._since[1]))
    assert parallel._idle_cores() == pytest.approx(2 * idle_ticks / 200)
    assert parallel._cores_free() is free


def test_without_cpu_ticks_the_load_average_decides(monkeypatch):
    monkeypatch.setattr(parallel, "_cpu_ticks", lambda: None)
    monkeypatch.setattr(parallel, "_usable_cores", lambda: 2)
    parallel.note_compile_start()
    assert parallel._idle_cores() is None
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert parallel._cores_free()
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert not parallel._cores_free()


class _Clock:
    """Fake monotonic and process clocks and /proc/stat ticks for ``others_busy_cores``."""

    def __init__(self, monkeypatch) -> None:
        self.now, self.own, self.ticks = 100.0, 10.0, (0, 0)
        monkeypatch.setattr(parallel.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(parallel.time, "process_time", lambda: self.own)
        monkeypatch.setattr(parallel, "_cpu_ticks", lambda: self.ticks)
        monkeypatch.setattr(parallel, "_usable_cores", lambda: 2)
        monkeypatch.setattr(parallel, "_others_sample", None)
        monkeypatch.setattr(parallel, "_others_value", None)

    def advance(self, seconds: float, busy_cores: float, own_cores: float) -> None:
        """``seconds`` pass with ``busy_cores`` of the 2 busy, ``own_cores`` of them ours."""
        total = round(200 * seconds)  # 100 ticks a second per core
        idle = round(total * (2 - busy_cores) / 2)
        self.ticks = (self.ticks[0] + idle, self.ticks[1] + total)
        self.now += seconds
        self.own += own_cores * seconds


def test_others_busy_cores_leaves_out_this_process(monkeypatch):
    clock = _Clock(monkeypatch)
    assert parallel.others_busy_cores() is None  # no window yet
    clock.advance(1.0, busy_cores=2.0, own_cores=2.0)  # a loop and its lane helper, alone
    assert parallel.others_busy_cores() == pytest.approx(0.0)
    clock.advance(0.1, busy_cores=2.0, own_cores=0.0)  # within the window: the last value
    assert parallel.others_busy_cores() == pytest.approx(0.0)
    clock.advance(1.0, busy_cores=2.0, own_cores=1.0)  # another process holds a core
    assert parallel.others_busy_cores() == pytest.approx(1.0, abs=0.1)
    clock.advance(30.0, busy_cores=0.0, own_cores=0.0)  # a stale sample: a new window only
    assert parallel.others_busy_cores() is None


def test_a_loop_holds_the_lanes_only_when_others_leave_it_a_second_core(monkeypatch):
    from graphcomp.backends.numba import stages

    monkeypatch.setattr(stages.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(stages.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    for others, held in ((0.0, True), (0.2, True), (0.5, False), (1.0, False)):
        monkeypatch.setattr(stages, "others_busy_cores", lambda others=others: others)
        assert stages._core_idle() is held
    monkeypatch.setattr(stages, "others_busy_cores", lambda: None)  # no window: load average
    assert stages._core_idle() is False
