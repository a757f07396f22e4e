"""The public API of the foundation issue, each piece checked against numpy (or scipy)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np
import pytest
from scipy import special

import graphcomp as gc

RNG = np.random.default_rng(1234)


def run(inputs: list[gc.Tensor], outputs: Any, *values: Any) -> Any:
    return gc.compile(inputs, outputs, backend="numpy")(*values)


def close(actual: np.ndarray, expected: np.ndarray, dtype: Any = None) -> None:
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == (expected.dtype if dtype is None else np.dtype(dtype))
    if actual.dtype.kind == "f":
        tol = 1e-5 if actual.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(actual, expected)


# ---------------------------------------------------------------- Tensor operators

A = RNG.standard_normal((3, 4))
B = RNG.standard_normal(4)
M = RNG.standard_normal((4, 5))
POS = np.abs(A) + 0.5

BINARY_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@pytest.mark.parametrize("symbol", list(BINARY_OPERATORS))
def test_binary_operator_with_broadcasting(symbol: str):
    op = BINARY_OPERATORS[symbol]
    a = gc.placeholder((None, 4), "float64", name="a")
    b = gc.placeholder((4,), "float64", name="b")
    left = POS if symbol == "**" else A
    b_value = np.where(A[0] > 0, A[0], 1.0)  # ties in == and != for some entries
    close(run([a, b], op(a, b), left, b_value), op(left, b_value))


@pytest.mark.parametrize("symbol", list(BINARY_OPERATORS))
def test_binary_operator_with_python_scalars_on_either_side(symbol: str):
    op = BINARY_OPERATORS[symbol]
    a = gc.placeholder((3, 4), "float64", name="a")
    close(run([a], op(a, 1.5), POS), op(POS, 1.5))
    close(run([a], op(2.0, a), POS), op(2.0, POS))


def test_operators_with_numpy_arrays_on_the_left():
    a = gc.placeholder((3, 4), "float64", name="a")
    outs = [B + a, B - a, B * a, B / a, B < a]
    expected_values = [B + POS, B - POS, B * POS, B / POS, B < POS]
    for out, expected in zip(run([a], outs, POS), expected_values, strict=True):
        close(out, expected)


def test_matmul_operator_and_unary_minus():
    a = gc.placeholder((None, 4), "float64", name="a")
    m = gc.placeholder((4, 5), "float64", name="m")
    v = gc.placeholder((4,), "float64", name="v")
    outs = run([a, m, v], [a @ m, -a, a @ v, v @ m, v @ v, M.T @ a.T], A, M, B)
    for out, expected in zip(outs, [A @ M, -A, A @ B, B @ M, B @ B, M.T @ A.T], strict=True):
        close(out, expected)
    batched = gc.placeholder((2, 3, 4), "float64", name="batched")
    value = RNG.standard_normal((2, 3, 4))
    close(run([batched, m], batched @ m, value, M), value @ M)


INDEXES = [
    1,
    -1,
    slice(1, 3),
    (slice(None), 2),
    (slice(None, None, 2),),
    None,
    (Ellipsis, 1),
    (1, Ellipsis, None),
    (slice(None), None, slice(1, None)),
    (slice(5, 10),),
    (slice(-3, -1), slice(None, None, 3)),
    (slice(2, 0),),
    (Ellipsis, None),
    (Ellipsis,),
    (),
    (0, 1, 2),
    (None, -2, slice(None), None, slice(0, 4, 2)),
]


@pytest.mark.parametrize("index", INDEXES, ids=repr)
def test_basic_indexing_matches_numpy(index: Any):
    value = RNG.standard_normal((3, 4, 5))
    x = gc.placeholder((3, 4, 5), "float64", name="x")
    y = x[index]
    expected = value[index]
    assert y.shape == expected.shape
    close(run([x], y, value), expected)


def test_indexing_symbolic_batch_and_integer_arrays():
    value = RNG.standard_normal((6, 4))
    x = gc.placeholder((None, 4), "float64", name="x")
    outs = [x[:, 1], x[..., :2], x[:, None, ::2], x[..., None, 3]]
    expected = [value[:, 1], value[..., :2], value[:, None, ::2], value[..., None, 3]]
    assert outs[0].shape == ("N",)
    for out, want in zip(run([x], outs, value), expected, strict=True):
        close(out, want)
    table = gc.placeholder((6, 4), "float64", name="table")
    outs = [table[[0, 2]], table[np.array([5, 1])], table[gc.constant(np.array([[1], [4]]))]]
    expected = [value[[0, 2]], value[[5, 1]], value[np.array([[1], [4]])]]
    for out, want in zip(run([table], outs, value), expected, strict=True):
        close(out, want)


def test_static_facts_and_methods():
    x = gc.placeholder((None, 3, 4), "float32", name="x")
    assert x.shape == ("N", 3, 4) and x.ndim == 3 and x.dtype == np.float32
    value = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    outs = [
        x.T,
        x.transpose(0, 2, 1),
        x.reshape("N", 12),
        x.reshape(("N", 2, 6)),
        x.reshape(x.shape[0], -1),
        x.astype("float64"),
        x.astype("int32"),
        x.sum(),
        x.sum(axis=1),
        x.sum(axis=(0, 2), keepdims=True),
        x.mean(),
        x.mean(axis=-1, keepdims=True),
        x.max(),
        x.max(axis=(1, 2)),
        x.min(axis=0),
        x.argmax(axis=1),
    ]
    expected = [
        value.T,
        value.transpose(0, 2, 1),
        value.reshape(2, 12),
        value.reshape(2, 2, 6),
        value.reshape(2, -1),
        value.astype("float64"),
        value.astype("int32"),
        value.sum(),
        value.sum(axis=1),
        value.sum(axis=(0, 2), keepdims=True),
        value.mean(),
        value.mean(axis=-1, keepdims=True),
        value.max(),
        value.max(axis=(1, 2)),
        value.min(axis=0),
        value.argmax(axis=1),
    ]
    for out, want in zip(run([x], outs, value), expected, strict=True):
        close(out, want)
    assert x.T.shape == (4, 3, "N")


# ---------------------------------------------------------------- dtypes: weak Python scalars


@pytest.mark.parametrize(
    ("dtype", "scalar", "op"),
    [
        ("float32", 2.0, "*"),
        ("float32", 3, "+"),
        ("float32", 0.5, "**"),
        ("int64", 2.5, "*"),
        ("int32", 2, "*"),
        ("int32", 2.5, "+"),
        ("int32", 7, "/"),
        ("int64", 2, "-"),
        ("bool", 1, "+"),
        ("float64", 2, "/"),
        ("float32", np.float64(2.0), "*"),  # numpy scalars are strong: float64
    ],
)
def test_python_scalars_are_weak(dtype: str, scalar: Any, op: str):
    value = (np.arange(1, 7).reshape(2, 3) % 3).astype(dtype)
    x = gc.placeholder((2, 3), dtype, name="x")
    fn = BINARY_OPERATORS[op]
    expected = fn(value, scalar)
    if op == "**":
        expected = expected.astype(np.result_type(value, scalar))
    y = fn(x, scalar)
    assert y.dtype == expected.dtype, (dtype, scalar, op)
    close(run([x], y, value), expected)


@pytest.mark.parametrize(
    ("a", "b"),
    [("float32", "float64"), ("int32", "float32"), ("int32", "int64"), ("bool", "int32")],
)
def test_tensor_tensor_promotion_follows_numpy(a: str, b: str):
    va, vb = np.ones(3, a), np.full(3, 2, b)
    x, y = gc.placeholder((3,), a, name="x"), gc.placeholder((3,), b, name="y")
    close(run([x, y], x + y, va, vb), va + vb)
    close(run([x, y], gc.maximum(x, y), va, vb), np.maximum(va, vb))


# ---------------------------------------------------------------- the functions


X = RNG.standard_normal((4, 5))
Y = RNG.standard_normal((4, 5))
LABELS = np.array([0, 4, 2, 2])
TARGETS = RNG.uniform(size=(4, 5))


def _sigmoid_bce(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    p = special.expit(z)
    return -(t * np.log(p) + (1 - t) * np.log1p(-p))


# name -> (graphcomp call on placeholders x, y; numpy result on X, Y)
FUNCTIONS: dict[str, tuple[Callable, Callable]] = {
    "exp": (lambda x, y: gc.exp(x), lambda x, y: np.exp(x)),
    "log": (lambda x, y: gc.log(gc.abs(x)), lambda x, y: np.log(np.abs(x))),
    "log1p": (lambda x, y: gc.log1p(gc.abs(x)), lambda x, y: np.log1p(np.abs(x))),
    "expm1": (lambda x, y: gc.expm1(x), lambda x, y: np.expm1(x)),
    "sqrt": (lambda x, y: gc.sqrt(gc.abs(x)), lambda x, y: np.sqrt(np.abs(x))),
    "square": (lambda x, y: gc.square(x), lambda x, y: np.square(x)),
    "abs": (lambda x, y: gc.abs(x), lambda x, y: np.abs(x)),
    "sign": (lambda x, y: gc.sign(x), lambda x, y: np.sign(x)),
    "sin": (lambda x, y: gc.sin(x), lambda x, y: np.sin(x)),
    "cos": (lambda x, y: gc.cos(x), lambda x, y: np.cos(x)),
    "tanh": (lambda x, y: gc.tanh(x), lambda x, y: np.tanh(x)),
    "sigmoid": (lambda x, y: gc.sigmoid(x), lambda x, y: special.expit(x)),
    "relu": (lambda x, y: gc.relu(x), lambda x, y: np.maximum(x, 0)),
    "softplus": (lambda x, y: gc.softplus(x), lambda x, y: np.logaddexp(0, x)),
    "maximum": (lambda x, y: gc.maximum(x, y), lambda x, y: np.maximum(x, y)),
    "minimum": (lambda x, y: gc.minimum(x, y[0]), lambda x, y: np.minimum(x, y[0])),
    "where": (lambda x, y: gc.where(x > y, x, 0.0), lambda x, y: np.where(x > y, x, 0.0)),
    "clip": (lambda x, y: gc.clip(x, -0.5, 0.5), lambda x, y: np.clip(x, -0.5, 0.5)),
    "power": (lambda x, y: gc.power(gc.abs(x), y), lambda x, y: np.power(np.abs(x), y)),
    "sum": (lambda x, y: gc.sum(x, axis=0), lambda x, y: np.sum(x, axis=0)),
    "mean": (lambda x, y: gc.mean(x, axis=(0, 1)), lambda x, y: np.mean(x)),
    "max": (lambda x, y: gc.max(x, axis=-1, keepdims=True), lambda x, y: x.max(-1, keepdims=True)),
    "min": (lambda x, y: gc.min(x, axis=1), lambda x, y: np.min(x, axis=1)),
    "argmax": (lambda x, y: gc.argmax(x, axis=1), lambda x, y: np.argmax(x, axis=1)),
    "logsumexp": (lambda x, y: gc.logsumexp(x, axis=1), lambda x, y: special.logsumexp(x, 1)),
    "softmax": (lambda x, y: gc.softmax(x, axis=0), lambda x, y: special.softmax(x, 0)),
    "log_softmax": (lambda x, y: gc.log_softmax(x), lambda x, y: special.log_softmax(x, -1)),
    "softmax_cross_entropy": (
        lambda x, y: gc.softmax_cross_entropy(x, LABELS),
        lambda x, y: -special.log_softmax(x, -1)[np.arange(4), LABELS],
    ),
    "sigmoid_binary_cross_entropy": (
        lambda x, y: gc.sigmoid_binary_cross_entropy(x, TARGETS),
        lambda x, y: _sigmoid_bce(x, TARGETS),
    ),
    "matmul": (lambda x, y: gc.matmul(x, y.T), lambda x, y: np.matmul(x, y.T)),
    "reshape": (lambda x, y: gc.reshape(x, (2, -1)), lambda x, y: np.reshape(x, (2, -1))),
    "transpose": (lambda x, y: gc.transpose(x), lambda x, y: np.transpose(x)),
    "broadcast_to": (
        lambda x, y: gc.broadcast_to(x[0], (3, 5)),
        lambda x, y: np.broadcast_to(x[0], (3, 5)),
    ),
    "expand_dims": (lambda x, y: gc.expand_dims(x, (0, -1)), lambda x, y: x[None, :, :, None]),
    "squeeze": (lambda x, y: gc.squeeze(x[:1, None]), lambda x, y: np.squeeze(x[:1, None])),
    "concatenate": (
        lambda x, y: gc.concatenate([x, y, x], axis=1),
        lambda x, y: np.concatenate([x, y, x], axis=1),
    ),
    "stack": (lambda x, y: gc.stack([x, y], axis=1), lambda x, y: np.stack([x, y], axis=1)),
    "pad": (
        lambda x, y: gc.pad(x, ((1, 0), (2, 3)), constant_values=7.0),
        lambda x, y: np.pad(x, ((1, 0), (2, 3)), constant_values=7.0),
    ),
    "take": (lambda x, y: gc.take(x, [3, 0, 3], axis=1), lambda x, y: np.take(x, [3, 0, 3], 1)),
    "one_hot": (lambda x, y: gc.one_hot(LABELS, 5), lambda x, y: np.eye(5, dtype="f4")[LABELS]),
    "stop_gradient": (lambda x, y: gc.stop_gradient(x), lambda x, y: x),
    "zeros_like": (lambda x, y: gc.zeros_like(x), lambda x, y: np.zeros_like(x)),
    "ones_like": (lambda x, y: gc.ones_like(x, "int32"), lambda x, y: np.ones_like(x, "int32")),
    "cast": (lambda x, y: gc.cast(x * 3, "int64"), lambda x, y: (x * 3).astype("int64")),
}

ISSUE_FUNCTIONS = (
    "exp log log1p expm1 sqrt square abs sign sin cos tanh sigmoid relu softplus maximum minimum "
    "where clip power sum mean max min argmax logsumexp softmax log_softmax softmax_cross_entropy "
    "sigmoid_binary_cross_entropy matmul reshape transpose broadcast_to expand_dims squeeze "
    "concatenate stack pad take one_hot stop_gradient zeros_like ones_like cast"
).split()


def test_every_function_of_the_issue_is_exported_and_tested():
    assert sorted(FUNCTIONS) == sorted(ISSUE_FUNCTIONS)
    for name in ISSUE_FUNCTIONS:
        assert callable(getattr(gc, name)) and name in gc.__all__


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ISSUE_FUNCTIONS)
def test_function_matches_numpy(name: str, dtype: str):
    build, reference = FUNCTIONS[name]
    x = gc.placeholder((4, 5), dtype, name="x")
    y = gc.placeholder((4, 5), dtype, name="y")
    xv, yv = X.astype(dtype), Y.astype(dtype)
    out = build(x, y)
    expected = np.asarray(reference(xv, yv))
    if expected.dtype.kind == "f" and out.dtype.kind == "f":
        expected = expected.astype(out.dtype)  # scipy/np.eye may pick another float width
    close(run([x, y], out, xv, yv), expected)


def test_mean_with_a_symbolic_axis_divides_by_the_bound_size():
    x = gc.placeholder((None, 3), "float64", name="x")
    f = gc.compile([x], [gc.mean(x), gc.mean(x, axis=0)], backend="numpy")
    for n in (1, 4, 9):
        value = RNG.standard_normal((n, 3))
        total, per_column = f(value)
        close(total, value.mean())
        close(per_column, value.mean(axis=0))


def test_integer_mean_and_division_give_float64():
    i = gc.placeholder((4,), "int32", name="i")
    assert gc.mean(i).dtype == np.float64 and (i / 2).dtype == np.float64
    close(run([i], [gc.mean(i)], np.arange(4, dtype="int32"))[0], np.mean(np.arange(4)))


# ---------------------------------------------------------------- numerical stability

BIG = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 999.0, 1000.0]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_composites_are_stable_for_huge_logits(dtype: str):
    z = gc.placeholder((3, 3), dtype, name="z")
    labels = np.array([1, 0, 2])
    outs = {
        "softmax": gc.softmax(z),
        "log_softmax": gc.log_softmax(z),
        "logsumexp": gc.logsumexp(z, axis=-1),
        "xent": gc.softmax_cross_entropy(z, labels),
        "xent_probs": gc.softmax_cross_entropy(z, np.eye(3)[labels]),
        "bce": gc.sigmoid_binary_cross_entropy(z, np.eye(3)),
        "softplus": gc.softplus(z),
        "sigmoid": gc.sigmoid(z),
    }
    values = dict(zip(outs, run([z], list(outs.values()), BIG.astype(dtype)), strict=True))
    for name, value in values.items():
        assert np.all(np.isfinite(value)), (name, value)
        assert value.dtype == np.dtype(dtype)
    # float32 rounds x - logsumexp(x) near 1000 to its ulp there, about 6e-5.
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == "float64" else {"rtol": 1e-5, "atol": 1.5e-4}
    ref = BIG.astype("float64")
    lse = special.logsumexp(ref, axis=-1)
    np.testing.assert_allclose(values["softmax"], special.softmax(ref, -1), **tol)
    np.testing.assert_allclose(values["log_softmax"], ref - lse[:, None], **tol)
    np.testing.assert_allclose(values["logsumexp"], lse, **tol)
    np.testing.assert_allclose(values["xent"], lse - ref[np.arange(3), labels], **tol)
    np.testing.assert_allclose(values["xent_probs"], values["xent"], **tol)
    bce = np.logaddexp(0, ref) - ref * np.eye(3)
    np.testing.assert_allclose(values["bce"], bce, **tol)
    np.testing.assert_allclose(values["softplus"], np.logaddexp(0, ref), **tol)
    np.testing.assert_allclose(values["sigmoid"], special.expit(ref), **tol)


# ---------------------------------------------------------------- symbolic dimensions


def test_none_dims_are_independent_and_named_dims_are_tied():
    a = gc.placeholder((None, 2), "float64", name="a")
    b = gc.placeholder((None, 2), "float64", name="b")
    assert a.shape[0] != b.shape[0]
    f = gc.compile([a, b], [gc.sum(a), gc.sum(b)], backend="numpy")
    sa, sb = f(np.ones((3, 2)), np.ones((5, 2)))
    assert (sa, sb) == (6.0, 10.0)

    c = gc.placeholder(("batch", 2), "float64", name="c")
    d = gc.placeholder(("batch",), "int64", name="d")
    assert c.shape[0] == d.shape[0] == "batch"
    g = gc.compile([c, d], [gc.sum(c), gc.sum(d)], backend="numpy")
    assert g(np.ones((4, 2)), np.arange(4))[1] == 6
    with pytest.raises(gc.InputError, match="batch=4"):
        g(np.ones((4, 2)), np.arange(5))


def test_batch_size_changes_between_calls():
    x = gc.placeholder((None, 3), "float64", name="x")
    W = gc.parameter(RNG.standard_normal((3, 2)), name="W")
    f = gc.compile([x], gc.softmax(x @ W), backend="numpy")
    for n in (1, 7, 2, 7, 0):
        value = RNG.standard_normal((n, 3))
        close(f(value), special.softmax(value @ W.value, axis=-1))


def test_a_dim_bound_to_a_size_by_an_op_is_checked_at_call_time():
    x = gc.placeholder(("n", 3), "float64", name="x")
    y = x + np.ones((4, 3))  # ties n = 4
    assert x.shape == (4, 3)
    f = gc.compile([x], y, backend="numpy")
    close(f(np.zeros((4, 3))), np.ones((4, 3)))
    with pytest.raises(gc.InputError, match="axis 0 must be 4"):
        f(np.zeros((5, 3)))


# ---------------------------------------------------------------- compile and call


def test_single_output_list_outputs_and_keywords():
    x = gc.placeholder((None,), "float64", name="x")
    y = gc.placeholder((None,), "float64", name="y")
    xv, yv = np.arange(3.0), np.ones(3)
    single = gc.compile([x, y], x + y, backend="numpy")
    assert isinstance(single(xv, yv), np.ndarray)
    one_in_list = gc.compile([x, y], [x + y], backend="numpy")(xv, yv)
    assert isinstance(one_in_list, list) and len(one_in_list) == 1
    pair = gc.compile([x, y], (x * y, x - y), backend="numpy")
    out = pair(y=yv, x=xv)
    close(out[0], xv * yv)
    close(out[1], xv - yv)
    close(pair(xv, y=yv)[1], xv - yv)
    assert pair.input_names == ["x", "y"]


def test_updates_apply_after_all_outputs():
    x = gc.placeholder((2,), "float64", name="x")
    W = gc.parameter(np.array([1.0, 2.0]), name="W")
    V = gc.parameter(np.array([10.0, 20.0]), name="V")
    step = gc.compile([x], [W * 1.0, W, gc.sum(V)], updates={W: W + x, V: V * W}, backend="numpy")
    scaled, w_out, v_sum = step(np.array([1.0, 1.0]))
    close(scaled, np.array([1.0, 2.0]))
    close(w_out, np.array([1.0, 2.0]))  # the old value, though W itself is an output
    close(v_sum, np.array(30.0))
    close(W.value, np.array([2.0, 3.0]))
    close(V.value, np.array([10.0, 40.0]))  # V * W used the old W
    scaled, w_out, _ = step(np.array([0.5, 0.5]))
    close(w_out, np.array([2.0, 3.0]))
    close(W.value, np.array([2.5, 3.5]))


def test_updates_that_swap_two_parameters():
    W = gc.parameter(np.zeros(2), name="W")
    V = gc.parameter(np.array([5.0, 6.0]), name="V")
    swap = gc.compile(
        [], [], updates=[(W, gc.stop_gradient(V)), (V, gc.stop_gradient(W))], backend="numpy"
    )
    swap()
    close(W.value, np.array([5.0, 6.0]))
    close(V.value, np.zeros(2))


def test_parameter_value_is_a_copy_and_assign_checks():
    W = gc.parameter(np.ones((2, 2)), name="W")
    f = gc.compile([], gc.sum(W), backend="numpy")
    seen = W.value
    seen[:] = 100.0
    assert f() == 4.0  # mutating the copy changed nothing
    W.assign(np.full((2, 2), 2.0))
    assert f() == 8.0
    W.assign(np.arange(4).reshape(2, 2))  # ints cast safely into a float parameter
    assert f() == 6.0 and W.value.dtype == np.float64
    with pytest.raises(gc.ShapeError, match=r"\(3,\).*\(2, 2\)"):
        W.assign(np.ones(3))
    with pytest.raises(gc.DTypeError, match="<U1"):
        W.assign(np.array([["a", "b"], ["c", "d"]]))
    counts = gc.parameter(np.zeros(3, dtype=np.int64), name="counts")
    with pytest.raises(gc.DTypeError, match=r"float64.*int64"):
        counts.assign(np.ones(3))
    original = np.ones(3)
    P = gc.parameter(original, name="P")
    original[:] = 5.0
    close(P.value, np.ones(3))  # the value was copied in


# ---------------------------------------------------------------- inspection


def _logreg() -> dict[str, gc.Tensor]:
    x = gc.placeholder((None, 64), "float64", name="x")
    y = gc.placeholder((None,), "int64", name="y")
    W = gc.parameter(np.zeros((64, 10)), name="W")
    b = gc.parameter(np.zeros(10), name="b")
    mm = x @ W
    logits = mm + b
    loss = gc.mean(gc.softmax_cross_entropy(logits, y))
    probs = gc.softmax(logits, axis=-1)
    return {
        "x": x,
        "y": y,
        "W": W,
        "b": b,
        "mm": mm,
        "logits": logits,
        "loss": loss,
        "probs": probs,
    }


TYPE = r" : (f32|f64|i32|i64|bool)\[[\w,]*\]$"
LINE = re.compile(r"^%(\d+) = (\w+)(\[[^\]]*\])?( \"\w+\")?( %\d+)*" + TYPE)
CONSTANT_LINE = re.compile(r"^%(\d+) = constant (<\d+ values>|\S+)" + TYPE)


def test_format_lists_one_node_per_line():
    t = _logreg()
    text = gc.format([t["loss"], t["probs"]])
    lines = text.splitlines()
    ids = [t[k].node.id for k in ("x", "W", "mm")]
    assert f"%{ids[2]} = matmul %{ids[0]} %{ids[1]} : f64[N,10]" in lines
    assert f'%{ids[0]} = placeholder "x" : f64[N,64]' in lines
    assert f'%{t["W"].node.id} = parameter "W" : f64[64,10]' in lines
    assert lines[-1] == f"return %{t['loss'].node.id}, %{t['probs'].node.id}"
    matches = [LINE.match(line) or CONSTANT_LINE.match(line) for line in lines[:-1]]
    assert all(matches), [line for line, m in zip(lines[:-1], matches, strict=True) if not m]
    defined = [int(m.group(1)) for m in matches]
    for line in lines[:-1]:  # every operand is defined on an earlier line
        here = int(line.split(" ")[0][1:])
        for operand in re.findall(r" %(\d+)", line):
            assert defined.index(int(operand)) < defined.index(here)
    assert gc.format(t["probs"]).count("\n") < text.count("\n")  # pruned to what it needs


def test_to_networkx_attributes():
    t = _logreg()
    G = gc.to_networkx([t["loss"]])
    assert isinstance(G, nx.DiGraph) and nx.is_directed_acyclic_graph(G)
    x, W, mm = (G.nodes[t[k].node.id] for k in ("x", "W", "mm"))
    assert x["op"] == "placeholder" and x["name"] == "x" and x["shape"] == ("N", 64)
    assert W["op"] == "parameter" and W["dtype"] == "float64" and W["role"] == "forward"
    assert mm["op"] == "matmul" and mm["shape"] == ("N", 10) and mm["name"] is None
    assert G.has_edge(t["x"].node.id, t["mm"].node.id)
    assert G.edges[t["W"].node.id, t["mm"].node.id]["slots"] == (1,)
    for _, data in G.nodes(data=True):
        assert {"op", "shape", "dtype", "name", "role"} <= set(data)
    assert t["probs"].node.id not in G  # only what the loss depends on
    ancestors = nx.ancestors(G, t["loss"].node.id) | {t["loss"].node.id}
    assert ancestors == set(G.nodes)


def test_small_numpy_conveniences():
    x = gc.placeholder(6, "float64", name="x")  # an int shape, as numpy accepts
    assert x.shape == (6,)
    m = gc.placeholder((2, 3), "float64", name="m")
    value = RNG.standard_normal((2, 3))
    outs = [
        gc.argmax(m),  # over the flattened array
        m.sum(axis=range(2)),
        m.sum(axis=np.array([1])),
        gc.stack([m, m], axis=-1),
        gc.expand_dims(m, np.int64(1)),
        m.astype(bool),
    ]
    expected = [
        np.argmax(value),
        value.sum(),
        value.sum(axis=1),
        np.stack([value, value], axis=-1),
        value[:, None],
        value.astype(bool),
    ]
    for out, want in zip(run([m], outs, value), expected, strict=True):
        close(out, want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_ops_built_after_compile_do_not_change_what_a_function_accepts(backend):
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        total = gc.sum(x * 2.0)
        f = gc.compile([x], total, backend=backend)
        tied = x + gc.constant(np.ones((5, 3)))  # ties x's batch dim to 5 for later programs
    assert tied.shape == (5, 3)
    assert float(f(np.ones((7, 3)))) == 42.0
    g = gc.compile([x], gc.sum(tied), backend="numpy")
    with pytest.raises(gc.InputError, match="axis 0 must be 5"):
        g(np.ones((7, 3)))
