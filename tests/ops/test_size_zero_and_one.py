"""Dimensions of size one and zero, alike on every backend and both numba drivers.

A symbolic dimension bound to 1 or 0, or a static width of 1, computes what the numpy oracle
computes. A max or argmax over an axis bound to 0 has no value: every backend refuses it with
the same ``InputError``. See docs/guarantees.md, "Dimensions of size one and zero".
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.train.examples.classifiers import CLASSIFIERS

EMPTY_MAX = "max over axes (0,) of an input of shape (0, 3): an empty axis has no max"
NUMBA = [{"driver_jit": False}, {"driver_jit": True}]
NUMBA_IDS = ["numba-python", "numba-njit"]


def _graph() -> tuple[list[gc.Tensor], list[gc.Tensor]]:
    """A small graph of many ops over a batch N, with static widths of 1, and its gradients."""
    x = gc.placeholder((None, 1), "float64", name="x")
    ids = gc.placeholder((None,), "int64", name="ids")
    y = gc.placeholder((None,), "int64", name="y")
    w = gc.parameter(np.array([[0.5, -1.0, 2.0]]), name="w")  # (1, 3): a width-1 input
    v = gc.parameter(np.array([[1.5], [0.25], [-0.5]]), name="v")  # (3, 1): a width-1 output
    h = gc.relu(x @ w + 0.1)
    narrow = h @ v  # (N, 1)
    rows = gc.take(gc.constant(np.arange(6.0).reshape(3, 2)), ids, axis=0)
    both = gc.concatenate([h, narrow, rows], axis=1)  # (N, 6)
    loss = gc.sum(gc.softmax_cross_entropy(both, y)) + gc.sum(gc.softmax(narrow, axis=-1))
    outputs = [both, gc.max(narrow, axis=-1), gc.argmax(both, axis=-1), gc.transpose(both),
               gc.log_softmax(both, axis=-1), gc.sum(both, axis=0), loss, *gc.grad(loss, [w, v])]
    return [x, ids, y], outputs


@pytest.fixture(scope="module")
def functions() -> dict[str, gc.Function]:
    with gc.Graph():
        inputs, outputs = _graph()
        compiled = {"numpy": gc.compile(inputs, outputs, backend="numpy")}
        for options, name in zip(NUMBA, NUMBA_IDS, strict=True):
            compiled[name] = gc.compile(inputs, outputs, backend="numba", **options)
    return compiled


def _feeds(n: int) -> list[np.ndarray]:
    return [np.linspace(-1, 1, n).reshape(n, 1), np.arange(n) % 3, (np.arange(n) * 5) % 6]


@pytest.mark.parametrize("name", NUMBA_IDS)
@pytest.mark.parametrize("n", [1, 0, 4])
def test_a_batch_of_one_or_zero_matches_numpy(functions: dict, name: str, n: int) -> None:
    expected = functions["numpy"](*_feeds(n))
    actual = functions[name](*_feeds(n))
    for position, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert a.shape == e.shape and a.dtype == e.dtype, (name, n, position)
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12, err_msg=f"{name} {position}")


@pytest.fixture(scope="module")
def over_batch() -> dict[str, tuple[gc.Function, gc.Function]]:
    """max, argmax and softmax over the batch axis N; softmax and a mean loss over classes."""
    with gc.Graph():
        z = gc.placeholder((None, 3), "float32", name="z")
        y = gc.placeholder((None,), "int64", name="y")
        refused = [gc.max(z, axis=0), gc.argmax(z, axis=0), gc.softmax(z, axis=0)]
        defined = [gc.softmax(z, axis=-1), gc.mean(gc.softmax_cross_entropy(z, y))]
        compiled = {}
        for backend, options, name in [("numpy", {}, "numpy"), ("numba", NUMBA[0], NUMBA_IDS[0]),
                                       ("numba", NUMBA[1], NUMBA_IDS[1])]:
            compiled[name] = (gc.compile([z], refused, backend=backend, **options),
                              gc.compile([z, y], defined, backend=backend, **options))
    return compiled


def test_a_max_over_a_batch_of_zero_is_refused_alike(over_batch: dict) -> None:
    messages = set()
    for refused, _ in over_batch.values():
        with pytest.raises(gc.InputError, match=re.escape(EMPTY_MAX)) as info:
            refused(np.zeros((0, 3), np.float32))
        messages.add(str(info.value))
    assert len(messages) == 1, messages
    one = np.array([[1.0, -2.0, 3.0]], np.float32)
    for refused, _ in over_batch.values():
        top, first, probabilities = refused(one)
        np.testing.assert_array_equal(top, one[0])
        np.testing.assert_array_equal(first, [0, 0, 0])
        np.testing.assert_array_equal(probabilities, np.ones((1, 3), np.float32))


def test_softmax_over_classes_of_a_batch_of_zero_is_empty_and_its_mean_nan(
        over_batch: dict) -> None:
    for name, (_, defined) in over_batch.items():
        probabilities, loss = defined(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
        assert probabilities.shape == (0, 3), name
        assert np.isnan(loss), name  # numpy's mean of nothing


@pytest.mark.parametrize("example", sorted(CLASSIFIERS))
def test_a_training_step_of_each_example_runs_on_a_batch_of_one(example: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 64)).astype("float32")  # every example reads digits
    y = np.array([9])
    results = []
    for backend in ("numpy", "numba"):
        with gc.Graph():
            model = CLASSIFIERS[example].build(0)
            optimizer = CLASSIFIERS[example].make_optimizer(10)
            updates = optimizer.updates(model.loss, model.params)
            step = gc.compile([model.x, model.y], [model.loss, model.accuracy], updates=updates,
                              backend=backend)
            outputs = [float(v) for v in step(x, y)] + [float(v) for v in step(x, y)]
            results.append((outputs, [p.value.copy() for p in model.params]))
    (expected, expected_params), (actual, actual_params) = results
    assert np.all(np.isfinite(actual)) and actual[2] < actual[0]  # the second step learned
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    for e, a in zip(expected_params, actual_params, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-3, atol=1e-5)
