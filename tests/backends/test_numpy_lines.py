"""The numpy backend's straight-line function (numpy_lines.py) gives ``evaluate``'s results.

After its first run, a step list runs as one generated function that calls ufuncs directly,
writes results into dead buffers (``out=``), folds values of constants and writes dense
updates into the parameters; a ``Function`` calls it through ``NumpyExecutable.runner``.
Several training steps of every benchmark workload (scans, random ops and sparse updates
among them) must equal, bit for bit, the same steps taken with ``evaluate``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numpy_backend import Steps, evaluate
from graphcomp.runtime.binding import check_inputs
from graphcomp.runtime.program import build_program

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import workloads
from test_numpy_steps import SMALL

STEPS = 4


def _by_evaluate(problem: workloads.Problem) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Losses and final parameters of ``STEPS`` steps taken with ``evaluate`` alone."""
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    updates = workloads.graphcomp_updates(problem, params, grads)
    program = build_program(inputs, [loss], updates)
    storage = program.graph.parameter_values
    losses = []
    for _ in range(STEPS):
        arrays, binding = check_inputs(program.inputs, list(problem.inputs), program.dims)
        values = evaluate(program, arrays, binding)
        losses.append(values[loss.node.id].copy())
        news = [values[v.id].copy() for _, v in program.updates]
        for (param, _), new in zip(program.updates, news, strict=True):
            storage[param.id][...] = new
    return losses, [p.value for p in params]


def _by_function(
    problem: workloads.Problem,
) -> tuple[list[np.ndarray], list[np.ndarray], gc.Function]:
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    updates = workloads.graphcomp_updates(problem, params, grads)
    step = gc.compile(inputs, loss, updates=updates, backend="numpy")
    losses = [step(*problem.inputs) for _ in range(STEPS)]
    return losses, [p.value for p in params], step


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert np.asarray(g).dtype == np.asarray(w).dtype and np.shape(g) == np.shape(w)
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", list(SMALL))
def test_training_steps_equal_evaluate_bit_for_bit(name: str) -> None:
    problem = workloads.make(name, **SMALL[name])
    want_losses, want_params = _by_evaluate(problem)
    losses, params, step = _by_function(problem)
    _same(losses, want_losses)
    _same(params, want_params)
    steps: Steps = next(iter(step._executable._steps.values()))
    assert steps.fast is not None and "def step(inputs):" in steps.fast.source
    assert step._fast  # the Function called the runner after the first, checked call


def test_the_mlp_step_writes_buffers_and_parameters_in_place() -> None:
    problem = workloads.make("tiny_mlp")
    _, _, step = _by_function(problem)
    steps: Steps = next(iter(step._executable._steps.values()))
    assert steps.observed is not None
    # every dense SGD update (p - lr * g) lands in its parameter; products reuse buffers
    assert len(steps.observed.param_in_place) == len(step.program.updates)
    assert len(steps.observed.out_into) >= 10
    assert steps.observed.folded  # the mean's 1 / n and its broadcasts


def test_an_output_that_views_a_parameter_reads_the_value_before_the_update() -> None:
    with gc.Graph():
        x = gc.placeholder((2, 3), "float64", name="x")
        w = gc.parameter(np.arange(6.0).reshape(3, 2), name="w")
        loss = gc.sum(gc.tanh(x @ w))
        (g,) = gc.grad(loss, [w])
        step = gc.compile([x], [loss, gc.transpose(w)], updates=[(w, w - 0.5 * g)],
                          backend="numpy", copy_outputs=False)
    x_value = np.ones((2, 3))
    for _ in range(3):
        before = w.value
        _, seen = step(x_value)
        np.testing.assert_array_equal(seen, before.T)
        assert not np.shares_memory(seen, w.value) or np.array_equal(seen, w.value.T)
    steps: Steps = next(iter(step._executable._steps.values()))
    assert steps.observed is not None and not steps.observed.param_in_place


def test_a_swap_of_two_parameters_goes_through_the_checked_path() -> None:
    with gc.Graph():
        x = gc.placeholder((2,), "float64", name="x")
        a = gc.parameter(np.array([1.0, 2.0]), name="a")
        b = gc.parameter(np.array([3.0, 4.0]), name="b")
        step = gc.compile([x], gc.sum(a * x), updates=[(a, b), (b, a)], backend="numpy")
    for k in range(4):
        assert step(np.ones(2)) == (3.0 if k % 2 == 0 else 7.0)
        np.testing.assert_array_equal(a.value, [3.0, 4.0] if k % 2 == 0 else [1.0, 2.0])
    assert not step._fast  # new values that alias another parameter: no runner


def test_a_bad_index_after_the_first_call_names_its_node() -> None:
    with gc.Graph():
        table = gc.placeholder((4, 2), "float64", name="table")
        ids = gc.placeholder((3,), "int64", name="ids")
        f = gc.compile([table, ids], gc.exp(gc.take(table, ids, axis=0)), backend="numpy")
    for _ in range(2):
        f(np.zeros((4, 2)), np.array([0, 1, 3]))
    with pytest.raises(gc.InputError, match="ids"):
        f(np.zeros((4, 2)), np.array([0, 1, 7]))


def test_a_refused_update_after_a_dense_one_leaves_the_parameters_alone() -> None:
    rng = np.random.default_rng(0)
    with gc.Graph():
        ids = gc.placeholder((3,), "int64", name="ids")
        dense = gc.parameter(rng.standard_normal(3), name="dense")
        table = gc.parameter(rng.standard_normal((5, 3)), name="table")
        loss = gc.sum(gc.take(table, ids, axis=0) * dense)
        updates = gc.optim.SGD(lr=0.5).updates(loss, [dense, table])
        step = gc.compile([ids], loss, updates=updates, backend="numpy")
    for _ in range(2):
        step(np.array([0, 1, 4]))
    before = [dense.value, table.value]
    with pytest.raises(gc.InputError):
        step(np.array([0, 1, 5]))
    _same([dense.value, table.value], before)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_relu_as_bits_times_the_mask_equals_where_bit_for_bit(dtype: str) -> None:
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((6, 7)) * 100).astype(dtype)
    if a.dtype.kind == "f":
        a.ravel()[:6] = [np.nan, -0.0, np.inf, -np.inf, -np.nan, 0.0]
    with gc.Graph():
        x = gc.placeholder((6, 7), dtype, name="x")
        relu = gc.relu(x) if a.dtype.kind == "f" else gc.where(x > 3, x, gc.zeros_like(x))
        f = gc.compile([x], [relu, gc.where(x < 1, x, gc.zeros_like(x))], backend="numpy")
    for _ in range(3):  # the first call checks; later ones run the straight-line function
        got = f(a)
    steps: Steps = next(iter(f._executable._steps.values()))
    assert steps.observed is not None and len(steps.observed.zero_select) == 2
    arrays, binding = check_inputs(f.program.inputs, [a], f.program.dims)
    values = evaluate(f.program, arrays, binding)
    for g, node in zip(got, f.program.outputs, strict=True):
        want = values[node.id]
        assert g.dtype == want.dtype
        bits = f"u{want.dtype.itemsize}"
        np.testing.assert_array_equal(g.view(bits), want.view(bits))


def test_a_function_that_computes_nothing_returns_its_inputs() -> None:
    with gc.Graph():
        x = gc.placeholder((2,), "float64", name="x")
        w = gc.parameter(np.ones(2), name="w")
        f = gc.compile([x], [x, w], backend="numpy")
    for k in range(3):
        got = f(np.full(2, float(k)))
        _same(got, [np.full(2, float(k)), np.ones(2)])


def test_every_numpy_ufunc_entry_is_what_the_implementation_computes() -> None:
    from graphcomp.ops.registry import REGISTRY

    rng = np.random.default_rng(11)
    checked = 0
    for op in REGISTRY.values():
        if op.numpy_ufunc is None:
            continue
        assert op.samples is not None, op.name
        for dtype in ("float32", "float64"):
            for sample in op.samples(rng, np.dtype(dtype)):
                with np.errstate(all="ignore"):
                    want = np.asarray(op.numpy_impl(list(sample.args), dict(sample.attrs), ()))
                    got = np.asarray(op.numpy_ufunc(*sample.args))
                assert got.dtype == want.dtype and got.shape == want.shape, op.name
                np.testing.assert_array_equal(got, want, err_msg=op.name)
                checked += 1
    assert checked > 40


def _checkpointed_rnn() -> tuple[list[gc.Tensor], gc.Tensor, list]:
    rng = np.random.default_rng(2)
    with gc.Graph():
        xs = gc.placeholder((6, 3, 4), "float64", name="xs")
        w = gc.parameter(rng.standard_normal((4, 4)) * 0.5, name="w")
        u = gc.parameter(rng.standard_normal(4), name="u")

        def step(h: gc.Tensor, x: gc.Tensor) -> tuple:
            h = gc.tanh(h @ w + x) * u
            return h, gc.sin(h)

        h, ys = gc.scan(step, xs[0], xs, checkpoint=2)
        loss = gc.sum(ys * ys) + gc.sum(h * h)
        grads = gc.grad(loss, [w, u])
        updates = [(p, p - 0.1 * g) for p, g in zip([w, u], grads, strict=True)]
    return [xs], loss, updates


def test_a_checkpointed_scan_trains_as_evaluate_does() -> None:
    data = np.random.default_rng(4).standard_normal((6, 3, 4))
    inputs, loss, updates = _checkpointed_rnn()
    step = gc.compile(inputs, loss, updates=updates, backend="numpy")
    losses = [step(data) for _ in range(STEPS)]
    got = [p.value for p, _ in updates]
    assert any(n.attrs.get("checkpoint") == 2 for n in step.program.schedule if n.op == "scan")
    inputs, loss, updates = _checkpointed_rnn()
    program = build_program(inputs, [loss], updates)
    storage, want_losses = program.graph.parameter_values, []
    for _ in range(STEPS):
        arrays, binding = check_inputs(program.inputs, [data], program.dims)
        values = evaluate(program, arrays, binding)
        want_losses.append(values[loss.node.id].copy())
        news = [values[v.id].copy() for _, v in program.updates]
        for (param, _), new in zip(program.updates, news, strict=True):
            storage[param.id][...] = new
    _same(losses, want_losses)
    _same(got, [storage[p.node.id] for p, _ in updates])
