"""Every bad input of the foundation issue: exception type, key words of the message, no leaks.

Build-time errors must name the user's ``file:line``; here that is a line of this file, found
from the traceback (the innermost frame of this file is where the user called graphcomp).
"""

from __future__ import annotations

import os
import traceback

import numpy as np
import pytest

import graphcomp as gc

FILE = os.path.basename(__file__)


def raised_at(info: pytest.ExceptionInfo) -> str:
    """``test_errors.py:LINE`` of the innermost frame of this file in the traceback."""
    lines = [e.lineno + 1 for e in info.traceback if os.path.basename(str(e.path)) == FILE]
    return f"{FILE}:{lines[-1]}"


def assert_clean(info: pytest.ExceptionInfo, *words: str) -> str:
    """A GraphcompError whose message holds ``words`` and whose traceback shows no numpy or
    networkx frame (not even in a chained exception)."""
    error = info.value
    assert isinstance(error, gc.GraphcompError), type(error)
    message = str(error)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert error.__cause__ is None, "a chained library exception would print its traceback"
    assert error.__context__ is None or error.__suppress_context__
    printed = "".join(traceback.format_exception(error))
    for library in ("numpy", "networkx"):
        assert f"{os.sep}{library}{os.sep}" not in printed, printed
    return message


# ---------------------------------------------------------------- build time: shapes


def test_matmul_inner_dimension_mismatch():
    x = gc.placeholder((None, 64), "float64", name="x")
    W = gc.parameter(np.zeros((32, 10)), name="W")
    with pytest.raises(gc.ShapeError) as info:
        x @ W
    assert_clean(info, "matmul", '"x"', '"W"', "64", "32", "[N,64]", "[32,10]", raised_at(info))


def test_matmul_batch_dimensions_mismatch():
    a = gc.placeholder((2, 3, 4), "float64", name="a")
    b = gc.placeholder((5, 4, 6), "float64", name="b")
    with pytest.raises(gc.ShapeError) as info:
        gc.matmul(a, b)
    assert_clean(info, "matmul", "[2,3,4]", "[5,4,6]", "2 vs 5", raised_at(info))


def test_broadcasting_mismatch():
    x = gc.placeholder((None, 3), "float32", name="x")
    y = gc.placeholder((4,), "float32", name="y")
    with pytest.raises(gc.ShapeError) as info:
        x * y
    assert_clean(
        info, "multiply", '"x"', '"y"', "[N,3]", "[4]", "do not broadcast", raised_at(info)
    )


def test_broadcasting_mismatch_through_a_python_operator_chain():
    x = gc.placeholder((2, 3), "float64", name="x")
    with pytest.raises(gc.ShapeError) as info:
        (x + 1.0) - gc.placeholder((3, 2), "float64", name="z")
    assert_clean(info, "subtract", '"z"', "[2,3]", "[3,2]", raised_at(info))


def test_bad_axis_and_bad_reshape_name_the_line():
    x = gc.placeholder((2, 3), "float64", name="x")
    with pytest.raises(gc.ShapeError) as info:
        x.sum(axis=2)
    assert_clean(info, "axis 2", "rank 2", raised_at(info))
    with pytest.raises(gc.ShapeError) as info:
        x.reshape(4, 2)
    assert_clean(info, "reshape", "[2,3]", "[4,2]", raised_at(info))
    with pytest.raises(gc.ShapeError) as info:
        x[5]
    assert_clean(info, "index 5", "size 2", raised_at(info))
    with pytest.raises(gc.ShapeError) as info:
        gc.transpose(x, (0, 3))
    assert_clean(info, "transpose", "(0, 3)", raised_at(info))


# ---------------------------------------------------------------- build time: dtypes


@pytest.mark.parametrize("dtype", ["float16", "complex128", "not-a-dtype", object, "uint8"])
def test_unknown_dtype_of_a_placeholder(dtype):
    with pytest.raises(gc.DTypeError) as info:
        gc.placeholder((3,), dtype, name="h")
    assert_clean(info, "unsupported dtype", "placeholder 'h'", "float32", raised_at(info))


def test_unknown_dtype_of_a_parameter_constant_and_cast():
    with pytest.raises(gc.DTypeError) as info:
        gc.parameter(np.zeros(3, dtype=np.float16), name="p")
    assert_clean(info, "unsupported dtype", "float16", "parameter 'p'", raised_at(info))
    with pytest.raises(gc.DTypeError) as info:
        gc.constant(np.zeros(2, dtype=np.complex64))
    assert_clean(info, "unsupported dtype", "complex64", "constant", raised_at(info))
    x = gc.placeholder((3,), "float64", name="x")
    with pytest.raises(gc.DTypeError) as info:
        x.astype("float16")
    assert_clean(info, "unsupported dtype", "float16", "cast", raised_at(info))


def test_dtype_misuse_in_ops():
    x = gc.placeholder((3,), "float64", name="x")
    with pytest.raises(gc.DTypeError) as info:
        gc.where(x, x, x)
    assert_clean(info, "where", "bool", "float64", raised_at(info))
    with pytest.raises(gc.DTypeError) as info:
        gc.one_hot(x, 4)
    assert_clean(info, "one_hot", "integer", raised_at(info))
    flags = gc.placeholder((3,), "bool", name="flags")
    with pytest.raises(gc.DTypeError) as info:
        -flags
    assert_clean(info, "negative", '"flags"', "bool", raised_at(info))


# ---------------------------------------------------------------- build time: graphs


def test_mixing_tensors_of_two_graphs_in_an_op():
    with gc.Graph(name="first"):
        x = gc.placeholder((3,), "float64", name="x")
    with gc.Graph(name="second"):
        y = gc.placeholder((3,), "float64", name="y")
    with pytest.raises(gc.GraphError) as info:
        x + y
    assert_clean(info, "'first'", "'second'", '"y"', "cannot be mixed", raised_at(info))


def test_mixing_tensors_of_two_graphs_in_compile():
    with gc.Graph(name="first"):
        x = gc.placeholder((3,), "float64", name="x")
    with gc.Graph(name="second"):
        y = gc.placeholder((3,), "float64", name="y")
        out = y * 2.0
    with pytest.raises(gc.GraphError) as info:
        gc.compile([x], out, backend="numpy")
    assert_clean(info, "'first'", "'second'", "one function compiles one graph")


def test_parameter_with_nan_and_check_finite():
    with pytest.raises(gc.NonFiniteError) as info:
        gc.parameter(np.array([1.0, np.nan, np.inf]), name="W", check_finite=True)
    assert_clean(info, "parameter 'W'", "2 non-finite", "check_finite=True", raised_at(info))
    # Without the flag the value is accepted as given.
    W = gc.parameter(np.array([1.0, np.nan]), name="W2")
    assert np.isnan(W.value[1])


def test_parameter_assign_with_nan_and_check_finite():
    W = gc.parameter(np.ones(3), name="W")
    with pytest.raises(gc.NonFiniteError) as info:
        W.assign(np.array([0.0, np.nan, 1.0]), check_finite=True)
    assert_clean(info, '"W"', "1 non-finite")
    np.testing.assert_array_equal(W.value, np.ones(3))  # the failed assign changed nothing


def test_cycle_names_its_nodes():
    with gc.Graph(name="loop") as g:
        a = gc.placeholder((3,), "float64", name="a")
        b = gc.exp(a)
        c = gc.sin(b)
    g.nx.add_edge(c.node.id, b.node.id, slots=(1,))  # corrupt the graph on purpose
    with pytest.raises(gc.GraphError) as info:
        gc.compile([a], c, backend="numpy")
    message = assert_clean(info, "'loop'", "cycle", f"exp %{b.node.id}", f"sin %{c.node.id}")
    loop = message.split("cycle: ")[1].split(";")[0].split(" -> ")
    assert len(loop) == 3 and loop[0] == loop[-1]  # the message closes the loop


def test_output_needs_a_placeholder_that_is_not_an_input():
    x = gc.placeholder((None, 4), "float64", name="x")
    lr = gc.placeholder((), "float64", name="lr")
    out = gc.sum(x) * lr
    with pytest.raises(gc.GraphError) as info:
        gc.compile([x], out, backend="numpy")
    created = f"{FILE}:"  # the placeholder's creation line is in this file
    assert_clean(info, "placeholder", '"lr"', "not among", "inputs", created)


def test_update_needs_a_placeholder_that_is_not_an_input():
    W = gc.parameter(np.ones(2), name="W")
    g = gc.placeholder((2,), "float64", name="g")
    with pytest.raises(gc.GraphError) as info:
        gc.compile([], W * 1.0, updates=[(W, W - g)], backend="numpy")
    assert_clean(info, '"g"', "not among")


def test_bad_compile_requests():
    x = gc.placeholder((3,), "float64", name="x")
    W = gc.parameter(np.ones(3), name="W")
    y = x * W
    twin = gc.placeholder((3,), "float64", name="x")
    cases = [
        (gc.GraphError, lambda: gc.compile([y], y), ["inputs must be placeholders"]),
        (gc.GraphError, lambda: gc.compile([x, x], y), ["listed twice"]),
        (gc.GraphError, lambda: gc.compile([x, twin], y + twin), ["share a name", "'x'"]),
        (gc.GraphError, lambda: gc.compile([x], [y, 3.0]), ["Tensor", "float"]),
        (gc.GraphError, lambda: gc.compile([x], y, updates=[(y, y)]), ["not a parameter"]),
        (gc.GraphError, lambda: gc.compile([x], y, updates=[(W, y), (W, y)]), ["twice"]),
        (gc.ShapeError, lambda: gc.compile([x], y, updates=[(W, gc.sum(y))]), ['"W"', "[3]"]),
        (gc.DTypeError, lambda: gc.compile([x], y, updates=[(W, y > 0)]), ['"W"', "bool"]),
        (gc.GraphError, lambda: gc.compile([], [], updates=None), ["at least one output"]),
        (gc.CompileError, lambda: gc.compile([x], y, backend="fortran"), ["'fortran'", "numpy"]),
    ]
    for error, build, words in cases:
        with pytest.raises(error) as info:
            build()
        assert_clean(info, *words)


# ---------------------------------------------------------------- call time


@pytest.fixture
def f_and_x():
    x = gc.placeholder((None, 4), "float64", name="x")
    y = gc.placeholder((None,), "int64", name="y")
    W = gc.parameter(np.ones((4, 3)), name="W")
    loss = gc.mean(gc.softmax_cross_entropy(x @ W, y))
    return gc.compile([x, y], loss, backend="numpy")


def test_placeholder_fed_the_wrong_rank(f_and_x):
    with pytest.raises(gc.InputError) as info:
        f_and_x(np.ones(4), np.zeros(1, dtype=np.int64))
    assert_clean(info, "placeholder 'x'", "expected rank 2", "[N,4]", "got rank 1", "(4,)")


def test_placeholder_fed_the_wrong_shape(f_and_x):
    with pytest.raises(gc.InputError) as info:
        f_and_x(np.ones((2, 5)), np.zeros(2, dtype=np.int64))
    assert_clean(info, "placeholder 'x'", "[N,4]", "(2, 5)", "axis 1 must be 4")


def test_placeholder_fed_the_wrong_dtype(f_and_x):
    with pytest.raises(gc.InputError) as info:
        f_and_x(np.ones((2, 4), dtype=np.float32), np.zeros(2, dtype=np.int64))
    assert_clean(info, "placeholder 'x'", "expected dtype float64", "got float32", "astype")
    with pytest.raises(gc.InputError) as info:
        f_and_x(np.ones((2, 4)), np.zeros(2))  # float labels for an int64 placeholder
    assert_clean(info, "placeholder 'y'", "int64", "float64")
    with pytest.raises(gc.InputError) as info:
        f_and_x([["a"] * 4], [0])
    assert_clean(info, "placeholder 'x'", "float64", "<U1")


def test_symbolic_dims_bound_inconsistently(f_and_x):
    # x and y share the batch size through the loss; N is bound by x first.
    with pytest.raises(gc.InputError) as info:
        f_and_x(np.ones((2, 4)), np.zeros(3, dtype=np.int64))
    assert_clean(info, "placeholder 'y'", "N=2", "bound by placeholder 'x'", "(3,)")


def test_missing_input(f_and_x):
    with pytest.raises(gc.InputError) as info:
        f_and_x(np.ones((2, 4)))
    assert_clean(info, "missing input", "placeholder 'y'")
    with pytest.raises(gc.InputError) as info:
        f_and_x()
    assert_clean(info, "missing input", "placeholder 'x'", "placeholder 'y'")


def test_unknown_keyword_input(f_and_x):
    with pytest.raises(gc.InputError) as info:
        f_and_x(x=np.ones((2, 4)), labels=np.zeros(2, dtype=np.int64))
    assert_clean(info, "unknown input 'labels'", "'x'", "'y'")


def test_too_many_and_doubled_inputs(f_and_x):
    xv, yv = np.ones((2, 4)), np.zeros(2, dtype=np.int64)
    with pytest.raises(gc.InputError) as info:
        f_and_x(xv, yv, yv)
    assert_clean(info, "at most 2 positional", "got 3")
    with pytest.raises(gc.InputError) as info:
        f_and_x(xv, yv, x=xv)
    assert_clean(info, "'x'", "both by position and by name")


def test_errors_leave_the_function_usable(f_and_x):
    with pytest.raises(gc.InputError):
        f_and_x(np.ones((2, 5)), np.zeros(2, dtype=np.int64))
    value = f_and_x(np.ones((2, 4)), np.zeros(2, dtype=np.int64))
    np.testing.assert_allclose(value, np.log(3.0))


def test_more_build_time_misuse_names_the_line():
    x = gc.placeholder((3, 4), "float64", name="x")
    i = gc.placeholder((3,), "int32", name="i")
    s = gc.placeholder((None, 4), "float64", name="s")
    cases = [
        (gc.DTypeError, lambda: i + 2**40, ["out of bounds", "int32"]),
        (gc.DTypeError, lambda: x + "a", ["cannot combine", "float64"]),
        (gc.DTypeError, lambda: gc.take(x, [0.5]), ["take", "integers", "float64"]),
        (gc.ShapeError, lambda: x[True], ["boolean index"]),
        (gc.ShapeError, lambda: s[::-1], ["only ':'", "symbolic dimension 'N'"]),
        (gc.ShapeError, lambda: x[:, [0, 5]], ["index 5", "out of range", "size 4"]),
        (gc.ShapeError, lambda: x[[0, 1], [0, 1, 2]], ["shape mismatch", "broadcast"]),
        (gc.ShapeError, lambda: x.sum(axis=1.5), ["axis 1.5", "not an integer"]),
        (gc.ShapeError, lambda: gc.stack([]), ["stack", "at least one"]),
        (gc.ShapeError, lambda: gc.concatenate([]), ["concatenate", "at least one"]),
        (gc.ShapeError, lambda: gc.stack([i, i], axis=3), ["axis 3", "rank 2"]),
        (gc.ShapeError, lambda: gc.pad(x, ((1, 2, 3),)), ["pad_width", "rank 2"]),
        (gc.ShapeError, lambda: gc.max(x[:0], axis=0), ["max", "size 0"]),
        (gc.ShapeError, lambda: gc.placeholder((2.5,), name="p"), ["placeholder 'p'", "2.5"]),
    ]
    for error, build, words in cases:
        with pytest.raises(error) as info:
            build()
        assert_clean(info, *words, raised_at(info))


def test_index_out_of_range_at_call_time_names_the_node():
    table = gc.parameter(np.ones((5, 2)), name="table")
    ids = gc.placeholder((None,), "int64", name="ids")
    rows = gc.take(table, ids, axis=0)
    f = gc.compile([ids], rows, backend="numpy")
    with pytest.raises(gc.InputError) as info:
        f(np.array([0, 7]))
    assert_clean(info, f"take %{rows.node.id}", "index 7", "size 5", f"{FILE}:")
    np.testing.assert_array_equal(f(np.array([4, -5])), np.ones((2, 2)))  # negatives count back
    # The compiled kernel checks bounds too; the runtime names the node that checks them.
    compiled = gc.compile([ids], rows * 2.0, backend="numba")
    with pytest.raises(gc.InputError) as info:
        compiled(np.array([0, 7]))
    assert_clean(info, f"take %{rows.node.id}", "out of range", f"{FILE}:")
    np.testing.assert_array_equal(compiled(np.array([4, -5])), 2 * np.ones((2, 2)))
