"""Row segments (backends/numba/rows.py): an unrolled recurrence's repeated row-wise calls run
as one loop per run, its rows halved between the calling thread and the lane helper."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba import rows as R
from graphcomp.backends.numba.blas import numpy_blas
from graphcomp.backends.numba.kernels import _row_role
from graphcomp.backends.numba.program import Segment
from graphcomp.testing import (
    lane_worker,
    module_globals,
    replace_lane_worker,
    step_array_arguments,
    step_records,
)

needs_lanes = pytest.mark.skipif(numpy_blas() is None or os.name != "posix",
                                 reason="row segments need the lanes: numpy's OpenBLAS and POSIX")

# 32x128x128 chain products are just large enough to split, so the program uses the lanes.
STEPS, BATCH, FEATURES, HIDDEN = 6, 32, 16, 128


def _rnn_step(backend: str, values: dict[str, np.ndarray], **options):
    """A training step of a tanh RNN unrolled STEPS times, from parameter ``values``."""
    dtype = values["wx"].dtype.name
    with gc.Graph():
        x = gc.placeholder((STEPS, BATCH, FEATURES), dtype, name="x")
        y = gc.placeholder((BATCH, HIDDEN), dtype, name="y")
        params = {name: gc.parameter(value.copy(), name=name) for name, value in values.items()}
        h = gc.tanh(x[0] @ params["wx"] + params["b"])
        for t in range(1, STEPS):
            h = gc.tanh(x[t] @ params["wx"] + h @ params["wh"] + params["b"])
        loss = gc.mean(gc.square(h - y))
        grads = gc.grad(loss, list(params.values()))
        updates = [(p, p - 0.05 * g) for p, g in zip(params.values(), grads, strict=True)]
        step = gc.compile([x, y], loss, updates=updates, backend=backend, **options)
    return step, params


def _values_and_data(dtype: str = "float32"):
    rng = np.random.default_rng(11)
    values = {"wx": rng.standard_normal((FEATURES, HIDDEN)).astype(dtype) * 0.3,
              "wh": rng.standard_normal((HIDDEN, HIDDEN)).astype(dtype) * 0.1,
              "b": rng.standard_normal(HIDDEN).astype(dtype) * 0.1}
    data = (rng.standard_normal((STEPS, BATCH, FEATURES)).astype(dtype),
            rng.standard_normal((BATCH, HIDDEN)).astype(dtype))
    return values, data


@pytest.fixture(scope="module")
def rnn():
    values, data = _values_and_data()
    # A Python driver (chosen by size for long programs) is the one that runs row segments.
    step, params = _rnn_step("numba", values, driver_jit=False)
    return step, params, data


def _check_against_numpy(step, params, data, steps=3, until=None, each=None, rtol=1e-5):
    """Run ``step`` and a numpy twin side by side; ``until()``, called after each step, may
    ask for more steps (for up to 20 s); ``each()`` is called after each step."""
    reference, reference_params = _rnn_step("numpy", {k: p.value for k, p in params.items()})
    deadline = time.monotonic() + 20  # a busy machine may keep the helper away for a while
    done, satisfied = 0, until is None
    while done < steps or (not satisfied and time.monotonic() < deadline):
        np.testing.assert_allclose(step(*data), reference(*data), rtol=rtol)
        done += 1
        if each is not None:
            each()
        satisfied = satisfied or until()
    for name, param in params.items():
        np.testing.assert_allclose(param.value, reference_params[name].value,
                                   rtol=rtol, atol=rtol / 10)


@needs_lanes
def test_the_forward_and_backward_chains_become_row_segments(rnn):
    step = rnn[0]
    program = step_records(step)
    segments = [s for s in program.step_statements if isinstance(s, Segment)]
    # one loop for the forward chain, one for the backward, each over STEPS - 1 repeats
    assert [s.name for s in segments] == ["seg0", "seg1"]
    assert [s.run.repeats for s in segments] == [STEPS - 1, STEPS - 1]
    split = [s for s in program.step_statements if getattr(s, "target", "") == "gemm_split"]
    assert len(split) < 2 * STEPS  # the chains' products are in loops


@needs_lanes
def test_the_helper_runs_row_halves_and_training_matches_numpy(rnn):
    step, params, data = rnn
    worker = lane_worker(step)
    assert worker is not None
    seen = set()

    def helper_finished_a_half() -> bool:
        seen.add(int(worker.lanes[0, L.TASK]) & 0xFF)
        return L.ROW_DONE in seen

    _check_against_numpy(step, params, data, steps=5, until=helper_finished_a_half)
    assert L.ROW_DONE in seen


@needs_lanes
def test_row_segments_allocate_nothing(rnn):
    """The step's NRT records are one per array a Python-called njit function receives; the
    segments (C entries called through ctypes with integers) add none."""
    from test_numba_runtime import _allocations  # a sibling test module: same measurement

    step, _, data = rnn
    arrays = step_array_arguments(step)
    assert any(isinstance(s, Segment) for s in step_records(step).step_statements)
    assert arrays > 0
    assert _allocations(step, *data) == arrays


@needs_lanes
def test_float64_row_segments_match_numpy():
    values, data = _values_and_data("float64")
    step, params = _rnn_step("numba", values, driver_jit=False)
    assert "seg1_enter(lanes" in step.source and "gemm_acc_f64(" in step.source
    _check_against_numpy(step, params, data, steps=4, rtol=1e-10)


@needs_lanes
def test_without_a_helper_the_caller_runs_every_row(rnn):
    step, params, data = rnn
    with replace_lane_worker(step, None):  # the lanes stay off
        _check_against_numpy(step, params, data)


class _UnservedLanes:
    """Stands in for the lane worker: enabled lanes that no helper thread serves."""

    def __init__(self) -> None:
        self.lanes = L.lanes_array(enabled=True)

    def in_this_process(self) -> bool:
        return True

    def begin(self) -> np.ndarray:
        return self.lanes

    def end(self) -> None:
        pass


@needs_lanes
def test_a_task_no_helper_takes_is_finished_by_the_caller(rnn):
    step, params, data = rnn
    unserved = _UnservedLanes()
    states = set()

    def note_the_state() -> None:
        states.add(int(unserved.lanes[0, L.TASK]) & 0xFF)

    with replace_lane_worker(step, unserved):
        _check_against_numpy(step, params, data, steps=4, each=note_the_state)
    assert states == {L.ROW_CALLER}  # posted, then claimed back by the caller
    assert unserved.lanes[L.TASK_ROW, L.T_COUNT] == 2 * 4  # two segments per step


@needs_lanes
def test_a_late_helper_makes_the_next_row_tasks_run_alone(rnn):
    step, _, data = rnn
    step(*data)
    module = module_globals(step)
    rows_first, rows_next = module["rows_first"], module["rows_next"]
    lanes = L.lanes_array(enabled=True)
    assert rows_next(lanes, 0, 0, 32, 16, 32) == (0, 0)  # compiled before the clock matters
    lo, hi, task = rows_first(lanes, 1, 0, 16, 32, 0, 0)  # the caller posts a task
    assert (lo, hi) == (0, 16) and task > 0
    lanes[0, L.TASK] = (task << 8) | L.ROW_HELPER  # a "helper" claims the second half
    assert rows_first(lanes, 1, task, 16, 32, 0, 0) == (16, 32, task)

    def slow_helper() -> None:
        time.sleep(0.2)
        rows_next(lanes, task, task, 32, 16, 32)

    helper = threading.Thread(target=slow_helper)
    helper.start()
    assert rows_next(lanes, task, 0, 16, 16, 32) == (0, 0)  # waits for the helper's half
    helper.join()
    assert lanes[0, L.ROWS_LATE] == 1
    assert lanes[0, L.ROWS_BACKOFF] == 2
    assert rows_first(lanes, 1, 0, 16, 32, 0, 0) == (0, 32, 0)  # alone, twice
    assert rows_first(lanes, 1, 0, 16, 32, 0, 0) == (0, 32, 0)
    assert rows_first(lanes, 1, 0, 16, 32, 0, 0)[2] > 0  # then posted again
    assert rows_first(lanes, 0, 0, 16, 32, 0, 0) == (0, 32, 0)  # an unsafe segment: alone


def _call(template: str, rows: int = 32, value: int = 1, arena: str | None = "arena_float32",
          role: str = "rows") -> R.RowCall:
    arg = R.RowArg(f"v{value}", value, "float32", (rows, 8), role, arena=arena)
    return R.RowCall(template, (arg,), rows)


def test_find_runs_needs_enough_repeats_and_rows():
    a, b = _call("k0({0})"), _call("k1({0})")
    assert R.find_runs([a, b] * R.MIN_REPEATS) == [R.Run(0, 2, R.MIN_REPEATS)]
    assert R.find_runs([a, b] * (R.MIN_REPEATS - 1)) == []
    assert R.find_runs([a, None] * 6) == []  # another statement in between breaks a run
    few_rows = _call("k0({0})", rows=R.MIN_ROWS - 1)
    assert R.find_runs([few_rows] * 8) == []


def test_find_runs_keeps_runs_whose_changing_buffers_are_in_the_arenas():
    in_arena = [_call("k0({0})", value=v) for v in range(6)]
    assert R.find_runs(in_arena) == [R.Run(0, 1, 6)]
    outside = [_call("k0({0})", value=v, arena=None) for v in range(6)]
    assert R.find_runs(outside) == []  # a buffer that changes must come from the table
    same = [_call("k0({0})", value=7, arena=None)] * 6
    columns = R.segment_columns(same, R.Run(0, 1, 6))
    assert columns is not None and columns.invariant == ["v7"] and columns.varying == []


def test_rows_safe_refuses_memory_shared_any_other_way_than_row_for_row():
    arena = np.zeros(256, np.float32)
    a = arena[:64].reshape(8, 8)
    assert R.rows_safe([(a, True, True), (arena[:64].reshape(8, 8), True, False)])
    assert not R.rows_safe([(a, True, True), (arena[8:72].reshape(8, 8), True, False)])
    assert not R.rows_safe([(a, True, True), (arena[:32].reshape(4, 8), True, False)])
    assert not R.rows_safe([(a, False, True)])  # written whole by both threads
    assert not R.rows_safe([(a, True, True), (a, False, False)])  # read whole while written
    assert R.rows_safe([(a, False, False), (a, True, False)])  # reads only
    assert R.rows_safe([(a, True, True), (arena[64:128].reshape(8, 8), False, False)])


def test_row_roles_follow_the_index_of_each_read():
    assert _row_role({("i0", "i1")}, 2) == "rows"
    assert _row_role({("i1",), ("0", "i1")}, 2) == "whole"  # broadcast along the rows
    assert _row_role({("i1", "i0")}, 2) is None  # transposed: rows of another buffer
    assert _row_role({("i0", "i1"), ("i0 + 1", "i1")}, 2) is None  # a shifted row


@needs_lanes
def test_row_segments_run_as_plain_python(tmp_path):
    """With NUMBA_DISABLE_JIT=1 the module (segments included) runs as Python, for pdb."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, {tests!r})
        from test_numba_rows import _rnn_step, _values_and_data
        import numpy as np
        values, data = _values_and_data()
        step, params = _rnn_step("numba", values, driver_jit=False)
        assert "seg0_enter(lanes" in step.source
        reference, _ = _rnn_step("numpy", values)
        np.testing.assert_allclose(step(*data), reference(*data), rtol=1e-5)
        print("ok")
    """).format(tests=str(Path(__file__).parent))
    environment = {**os.environ, "NUMBA_DISABLE_JIT": "1", "GRAPHCOMP_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
