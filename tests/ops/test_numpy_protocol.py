"""numpy's own functions on a Tensor build graph nodes, or raise a TypeError that says why.

Before: ``np.prod(t)`` returned the tensor unreduced (a silently wrong shape) and ``np.sum(t)``
failed inside Tensor.sum with "unexpected keyword argument 'out'".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import graphcomp as gc

X = np.random.default_rng(0).normal(size=(4, 3))

# (numpy call on a tensor or an array, as the user writes it)
CALLS: dict[str, Callable] = {
    "exp": lambda x: np.exp(x),
    "sum axis": lambda x: np.sum(x, axis=0),
    "sum keepdims": lambda x: np.sum(x, axis=1, keepdims=True),
    "max": lambda x: np.max(x),
    "amin axis": lambda x: np.amin(x, axis=1),
    "mean": lambda x: np.mean(x, axis=0),
    "argmax": lambda x: np.argmax(x, axis=1),
    "concatenate": lambda x: np.concatenate([x, x], axis=1),
    "stack": lambda x: np.stack([x, x]),
    "array + tensor": lambda x: np.ones(3) + x,
    "numpy scalar * tensor": lambda x: np.float64(2.0) * x,
    "array @ tensor": lambda x: np.eye(4) @ x,
    "matmul": lambda x: np.matmul(x, np.eye(3)),
    "clip": lambda x: np.clip(x, -0.5, 0.5),
    "where": lambda x: np.where(x > 0, x, 0.0),
    "transpose": lambda x: np.transpose(x),
    "reshape": lambda x: np.reshape(x, (2, 6)),
    "absolute, square": lambda x: np.square(np.abs(x)),
    "maximum": lambda x: np.maximum(x, 0.0),
    "comparison": lambda x: np.greater_equal(x, 0.0),
    "einsum": lambda x: np.einsum("ij,kj->ik", x, x),
    "dot": lambda x: np.dot(x, np.eye(3)),
    "tensordot": lambda x: np.tensordot(x, x, 2),
}


@pytest.fixture(scope="module")
def evaluated() -> dict[str, np.ndarray]:
    with gc.Graph():
        x = gc.placeholder((4, 3), "float64", name="x")
        outputs = {name: call(x) for name, call in CALLS.items()}
    assert all(isinstance(o, gc.Tensor) for o in outputs.values())
    f = gc.compile([x], list(outputs.values()), backend="numpy")
    return dict(zip(outputs, f(X), strict=True))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_call_on_a_tensor_builds_the_graph_numpy_computes(name: str, evaluated):
    expected = CALLS[name](X)
    np.testing.assert_allclose(evaluated[name], expected, rtol=1e-12)
    assert np.shape(evaluated[name]) == np.shape(expected)


@pytest.mark.parametrize(("call", "says"), [
    (lambda x: np.median(x), "graphcomp has no median"),
    (lambda x: np.linalg.norm(x), "graphcomp has no norm"),
    (lambda x: np.fmod(x, 2.0), "graphcomp has no fmod"),
    (lambda x: np.sum(x, dtype="float32"), "dtype='float32'"),
    (lambda x: np.add(x, 1.0, out=np.zeros((4, 3))), "argument out="),
    (lambda x: np.add.reduce(x), "numpy.add.reduce"),
    (lambda x: np.asarray(x), "is a graph node, not an array"),
    (lambda x: np.sum(x, 0, None), "after the first 2 by name"),
])
def test_what_graphcomp_cannot_do_is_a_type_error_naming_it(call: Callable, says: str):
    with gc.Graph():
        x = gc.placeholder((4, 3), "float64", name="x")
        with pytest.raises(TypeError, match=says.replace("(", r"\(").replace(")", r"\)")):
            call(x)


def test_numpy_defaults_passed_explicitly_are_accepted():
    with gc.Graph():
        x = gc.placeholder((4, 3), "float64", name="x")
        y = np.sum(x, axis=0, out=None, dtype=None)
        z = np.exp(x, out=None)
    assert y.shape == (3,) and z.op == "exp"


def test_a_list_of_tensors_is_stacked_where_numpy_takes_an_array():
    with gc.Graph():
        x = gc.placeholder((4, 3), "float64", name="x")
        m = gc.mean([x, x + 2.0])
        s = gc.sum([[x, x], [x, x]], axis=(0, 1))
        f = gc.compile([x], [m, s], backend="numpy")
    m_v, s_v = f(X)
    np.testing.assert_allclose(m_v, np.mean([X, X + 2.0]))
    np.testing.assert_allclose(s_v, 4 * X)
