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
