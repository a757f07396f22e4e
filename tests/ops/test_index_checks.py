"""Index checks at call time, alike on every backend and both numba drivers.

Class labels (``one_hot``, integer labels of ``softmax_cross_entropy``) must lie in
``[0, classes)``; ``take`` and ``scatter_add`` follow numpy (``-k`` counts from the end). A bad
index is an ``InputError`` naming the node, the user's line and the placeholder it came from,
and leaves parameters as they were. See docs/guarantees.md, "Index checks".
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import functions as F

FILE = os.path.basename(__file__)
CLASSES = 8
BAD_LABELS = [CLASSES, -1, 2**40]
# numpy, then the numba backend with a Python driver and with an njit driver.
BACKENDS = [("numpy", {}), ("numba", {"driver_jit": False}), ("numba", {"driver_jit": True})]
IDS = ["numpy", "numba-python", "numba-njit"]


def _line_of(build: Callable) -> str:
    return f"{FILE}:{build.__code__.co_firstlineno}"


class Step:
    """A training step on a softmax cross-entropy, with a step counter updated beside it."""

    def __init__(self, backend: str, options: dict) -> None:
        with gc.Graph():
            self.x = gc.placeholder((None, 4), "float64", name="x")
            self.y = gc.placeholder((None,), "int64", name="y")
            self.w = gc.parameter(np.linspace(-1, 1, 4 * CLASSES).reshape(4, CLASSES), name="w")
            self.count = gc.parameter(np.zeros(()), name="count")
            self.loss = gc.mean(gc.softmax_cross_entropy(self.x @ self.w, self.y))  # loss line
            (g,) = gc.grad(self.loss, [self.w])
            self.f = gc.compile([self.x, self.y], self.loss, backend=backend, **options,
                                updates=[(self.w, self.w - 0.1 * g), (self.count, self.count + 1)])

    def saved(self) -> tuple[np.ndarray, np.ndarray]:
        return self.w.value.copy(), self.count.value.copy()


@pytest.fixture(scope="module", params=BACKENDS, ids=IDS)
def step(request: pytest.FixtureRequest) -> Step:
    backend, options = request.param
    return Step(backend, options)


X = np.arange(12.0).reshape(3, 4) / 10


@pytest.mark.parametrize("bad", BAD_LABELS)
def test_an_out_of_range_label_is_refused_and_changes_nothing(step: Step, bad: int) -> None:
    before = step.saved()
    with pytest.raises(gc.InputError) as info:
        step.f(X, np.array([1, bad, 0]))
    message = str(info.value)
    assert f"label {bad} is out of range for {CLASSES} classes" in message, message
    assert "placeholder 'y'" in message and f"{FILE}:" in message, message
    after = step.saved()
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1] == before[1]
    # The function still runs, and a good batch takes its step.
    assert np.isfinite(step.f(X, np.array([1, CLASSES - 1, 0])))
    assert step.count.value == before[1] + 1


def test_every_backend_words_a_bad_label_alike() -> None:
    messages = set()
    for backend, options in BACKENDS:
        with gc.Graph():
            z = gc.placeholder((None, 3), "float32", name="z")
            labels = gc.placeholder((None,), "int32", name="labels")
            out = gc.one_hot(labels, 3) * z
            f = gc.compile([z, labels], out, backend=backend, **options)
        with pytest.raises(gc.InputError) as info:
            f(np.ones((2, 3), np.float32), np.array([0, 3], np.int32))
        messages.add(str(info.value).replace(str(labels.node.id), "#"))
        good = f(np.ones((2, 3), np.float32), np.array([2, 0], np.int32))
        np.testing.assert_array_equal(good, [[0, 0, 1], [1, 0, 0]])
    assert len(messages) == 1, messages
    (message,) = messages
    assert "label 3 is out of range for 3 classes" in message and "placeholder 'labels'" in message


def test_constant_labels_out_of_range_are_refused_while_building() -> None:
    def build() -> gc.Tensor:
        return gc.one_hot([0, 5], 5)

    with gc.Graph(), pytest.raises(gc.InputError) as info:
        build()
    assert "label 5 is out of range for 5 classes" in str(info.value)
    assert _line_of(build).split(":")[0] in str(info.value)


class Gather:
    """take and scatter_add on the indices of one placeholder, and take on computed indices."""

    def __init__(self, backend: str, options: dict) -> None:
        with gc.Graph():
            self.ids = gc.placeholder((None,), "int64", name="ids")
            table = gc.constant(np.arange(10.0).reshape(5, 2))
            self.rows = gc.take(table, self.ids, axis=0)
            base = gc.constant(np.zeros((5, 2)))
            self.added = F.scatter_add(base, self.ids, gc.ones_like(self.rows))
            self.f = gc.compile([self.ids], [self.rows, self.added], backend=backend, **options)
            shifted = gc.take(table, self.ids + 1, axis=0)
            self.computed = gc.compile([self.ids], shifted, backend=backend, **options)


@pytest.fixture(scope="module", params=BACKENDS, ids=IDS)
def gather(request: pytest.FixtureRequest) -> Gather:
    backend, options = request.param
    return Gather(backend, options)


def test_take_and_scatter_add_count_negative_indices_from_the_end(gather: Gather) -> None:
    rows, added = gather.f(np.array([4, -5, -1]))
    np.testing.assert_array_equal(rows, np.arange(10.0).reshape(5, 2)[[4, -5, -1]])
    expected = np.zeros((5, 2))
    np.add.at(expected, [4, -5, -1], 1.0)
    np.testing.assert_array_equal(added, expected)


@pytest.mark.parametrize("bad", [5, -6, 2**40])
def test_an_index_out_of_range_names_the_node_and_placeholder(gather: Gather, bad: int) -> None:
    with pytest.raises(gc.InputError) as info:
        gather.f(np.array([0, bad]))
    message = str(info.value)
    assert f"take %{gather.rows.node.id}" in message, message
    assert f"index {bad} is out of range for an axis of size 5" in message, message
    assert "placeholder 'ids'" in message and f"{FILE}:" in message, message


def test_computed_indices_name_the_node_only(gather: Gather) -> None:
    with pytest.raises(gc.InputError) as info:
        gather.computed(np.array([0, 4]))
    message = str(info.value)
    assert "take %" in message and "out of range" in message and f"{FILE}:" in message, message
    assert "placeholder" not in message, message


def test_labels_reject_what_take_accepts() -> None:
    # The same -1: the last row for take (numpy's rule), an error as a class label.
    with gc.Graph():
        ids = gc.placeholder((None,), "int64", name="ids")
        rows = gc.take(gc.constant(np.eye(3)), ids, axis=0)
        hot = gc.one_hot(ids, 3, "float64")
        f = gc.compile([ids], rows, backend="numpy")
        g = gc.compile([ids], hot, backend="numpy")
    np.testing.assert_array_equal(f(np.array([-1])), [[0.0, 0.0, 1.0]])
    with pytest.raises(gc.InputError, match="label -1 is out of range"):
        g(np.array([-1]))
