"""The numpy backend's step list (``Steps``) gives exactly ``evaluate``'s results.

``NumpyExecutable.run`` calls the same implementations on the same arrays as ``evaluate`` but
drops each intermediate after its last reader; its outputs and new parameter values must be
bit-for-bit those of ``evaluate`` on every benchmark workload's training step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends import numpy_backend
from graphcomp.backends.numpy_backend import Steps, evaluate, make_plan, node_shapes
from graphcomp.runtime.binding import check_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import workloads

SMALL = {
    "tiny_mlp": {}, "mlp": {"batch": 16}, "ewise": {"size": 4096}, "rnn": {"steps": 5},
    "logreg": {}, "lstm": {"steps": 5, "hidden": 16, "features": 8, "batch": 4},
    "vae": {"batch": 16, "noise_input": 1}, "cnn": {"batch": 4}, "rnn_scan": {"steps": 5},
    "word2vec": {},
}


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", list(SMALL))
def test_the_step_list_equals_evaluate_on_the_workloads(name: str) -> None:
    problem = workloads.make(name, **SMALL[name])
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    updates = workloads.graphcomp_updates(problem, params, grads)
    step = gc.compile(inputs, loss, updates=updates, backend="numpy")
    program = step.program
    for _ in range(2):  # the first run checks the shapes, the second does not
        arrays, binding = check_inputs(program.inputs, list(problem.inputs), program.dims)
        values = evaluate(program, arrays, binding)
        outputs, new_values = step._executable.run(arrays, binding)
        _same(outputs, [values[n.id] for n in program.outputs])
        _same(new_values, [values[v.id] for _, v in program.updates])
        step(*problem.inputs)  # the parameters move on between the two rounds


@pytest.mark.parametrize("name", list(SMALL))
def test_results_written_into_dying_buffers_equal_evaluate(name: str, monkeypatch) -> None:
    # Every elementwise step big enough writes into the buffer of an input read for the last
    # time; with the bound at one element, the small workloads do it wherever it is allowed.
    monkeypatch.setattr(numpy_backend, "REUSE_MIN_SIZE", 1)
    test_the_step_list_equals_evaluate_on_the_workloads(name)


def test_reused_buffers_leave_dense_updates_in_their_parameters(monkeypatch) -> None:
    # With every elementwise step eligible, the straight-line function still writes each
    # dense SGD update into its parameter (not into the gradient's dying buffer), and three
    # runs equal evaluate (a step that wrote into a buffer keeps its out= in later runs).
    monkeypatch.setattr(numpy_backend, "REUSE_MIN_SIZE", 1)
    problem = workloads.make("vae", **SMALL["vae"])
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    step = gc.compile(inputs, loss, updates=workloads.graphcomp_updates(
        problem, params, grads), backend="numpy")
    program = step.program
    for _ in range(3):
        arrays, binding = check_inputs(program.inputs, list(problem.inputs), program.dims)
        values = evaluate(program, arrays, binding)
        _, new_values = step._executable.run(arrays, binding)
        _same(new_values, [values[v.id] for _, v in program.updates])
        step(*problem.inputs)
    (steps,) = step._executable._steps.values()
    assert steps.observed is not None
    assert len(steps.observed.param_in_place) == len(program.updates)


def test_the_elementwise_workload_reuses_buffers_and_small_arrays_do_not() -> None:
    def reused(size: int) -> int:
        problem = workloads.make("ewise", size=size)
        inputs, loss, params, grads = workloads.graphcomp_graph(problem)
        program = gc.compile(inputs, loss, updates=workloads.graphcomp_updates(
            problem, params, grads), backend="numpy").program
        _, binding = check_inputs(program.inputs, list(problem.inputs), program.dims)
        return len(Steps(program, make_plan(program), node_shapes(program, binding)).reuse)

    assert reused(numpy_backend.REUSE_MIN_SIZE) >= 10 and reused(64) == 0


def test_an_intermediate_that_a_view_reads_keeps_its_buffer(monkeypatch) -> None:
    monkeypatch.setattr(numpy_backend, "REUSE_MIN_SIZE", 1)
    with gc.Graph():
        x = gc.placeholder((2, 3), "float64", name="x")
        a = gc.exp(x)
        view = gc.transpose(a)  # a view of a's buffer, read after a's last reader
        b = gc.sin(a)
        out = b + gc.transpose(view)
        f = gc.compile([x], out, backend="numpy")
    program = f.program
    arrays, binding = check_inputs(program.inputs, [np.arange(6.0).reshape(2, 3)],
                                   program.dims)
    steps = Steps(program, make_plan(program), node_shapes(program, binding))
    reused = {steps.nodes[k].id: i for k, (_, i) in steps.reuse.items()}
    assert b.node.id not in reused  # a is read by a transpose: no view of it may exist
    assert reused.get(out.node.id) == b.node.id
    _same(steps.run(arrays)[0], [evaluate(program, arrays, binding)[out.node.id]])
    x0 = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(f(x0), np.sin(np.exp(x0)) + np.exp(x0))


def test_an_output_read_again_later_is_kept_and_intermediates_are_dropped() -> None:
    with gc.Graph():
        x = gc.placeholder((3,), "float64", name="x")
        a = gc.exp(x)
        b = gc.sin(a)
        out = [a, b + a, gc.sum(b)]
        f = gc.compile([x], out, backend="numpy")
    program = f.program
    arrays, binding = check_inputs(program.inputs, [np.arange(3.0)], program.dims)
    steps = Steps(program, make_plan(program), node_shapes(program, binding))
    dropped = {i for *_, drop in steps.steps for i in drop}
    assert b.node.id in dropped and a.node.id not in dropped
    values = evaluate(program, arrays, binding)
    _same(steps.run(arrays)[0], [values[t.node.id] for t in out])


def test_a_bad_index_names_its_node_in_the_step_list() -> None:
    with gc.Graph():
        table = gc.placeholder((4, 2), "float64", name="table")
        ids = gc.placeholder((3,), "int64", name="ids")
        f = gc.compile([table, ids], gc.take(table, ids, axis=0), backend="numpy")
    f(np.zeros((4, 2)), np.array([0, 1, 3]))
    with pytest.raises(gc.InputError, match="ids"):
        f(np.zeros((4, 2)), np.array([0, 1, 7]))


def _two_tables(extra_output: bool = False):
    """Two embedding tables, each gathered by its own ids and updated by sparse SGD."""
    rng = np.random.default_rng(3)
    with gc.Graph():
        ids = gc.placeholder((None, 2), "int64", name="ids")
        table = gc.parameter(rng.standard_normal((9, 3)), name="table")
        context = gc.parameter(rng.standard_normal((7, 3)), name="context")
        first, second = gc.take(table, ids[:, 0], axis=0), gc.take(context, ids[:, 1], axis=0)
        loss = gc.sum(gc.tanh(first * second))
        updates = gc.optim.SGD(lr=0.5).updates(loss, [table, context])
        outputs = [loss, gc.reshape(table, (27,))] if extra_output else [loss]
        step = gc.compile([ids], outputs, updates=updates, backend="numpy")
    return step, (table, context)


def _steps_of(step) -> Steps:
    return next(iter(step._executable._steps.values()))


def _run_against_evaluate(step, ids: np.ndarray) -> list[np.ndarray]:
    """One run of ``step``'s step list, checked bit for bit against ``evaluate``; its new
    parameter values."""
    program = step.program
    arrays, binding = check_inputs(program.inputs, [ids], program.dims)
    values = evaluate(program, arrays, binding)
    outputs, new_values = step._executable.run(arrays, binding)
    _same(outputs + new_values, [values[n.id] for n in program.outputs]
          + [values[v.id] for _, v in program.updates])
    return new_values


def test_sparse_updates_write_into_their_parameters_and_equal_evaluate() -> None:
    step, params = _two_tables()
    assert [v.op for _, v in step.program.updates][:2] == ["sparse_sgd", "sparse_sgd"]
    storage = [step.program.graph.parameter_values[p.node.id] for p in params]
    for ids in (np.array([[0, 6], [8, 0], [0, 1]]), np.array([[3, 3], [3, -1]])):
        new_values = _run_against_evaluate(step, ids)
        assert all(new is own for new, own in zip(new_values, storage, strict=False))


def test_a_refused_id_leaves_both_tables_as_they_were() -> None:
    step, params = _two_tables()
    step(np.array([[0, 6], [8, 0]]))
    before = [p.value for p in params]
    with pytest.raises(gc.InputError, match="out of range"):
        step(np.array([[0, 6], [8, 7]]))  # context has 7 rows: its id 7 is refused
    for p, old in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.value, old)


def test_a_table_read_after_its_update_is_copied_not_written() -> None:
    step, params = _two_tables(extra_output=True)
    table = step.program.graph.parameter_values[params[0].node.id]
    for _ in range(2):
        new_values = _run_against_evaluate(step, np.array([[0, 6], [8, 0], [0, 1]]))
        assert new_values[0] is not table  # the output reads the table before the update
        step(np.array([[0, 6], [8, 0], [0, 1]]))
    assert len(_steps_of(step).in_place) == 1  # the context table only


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sigmoid_in_two_buffers_equals_the_eight_buffer_formula(dtype: str) -> None:
    from graphcomp.ops.elementwise import _sigmoid

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(1000) * 30, [0.0, -0.0, np.inf, -np.inf, np.nan,
                                                         1e-30, -1e-30, 88.0, -88.0, 800.0]])
    for value in (x.astype(dtype), x.astype(dtype).reshape(10, 101), np.asarray(x[3], dtype)):
        with np.errstate(all="ignore"):
            e = np.exp(-np.abs(value))
            want = np.where(value >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(value.dtype)
            got = _sigmoid(value)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
