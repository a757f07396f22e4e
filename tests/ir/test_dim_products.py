"""Symbolic products of dimensions (``N*64``): the dim values, the dim table's solving,
reshape inference, printing, call-time binding and both backends on an im2col-like graph.

Compiled functions are shared through a module-scoped fixture: compile time dominates.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ir import DimMismatch, DimTable, SymDim, dim_value

FILE = os.path.basename(__file__)


# ---------------------------------------------------------------- the dim values


def test_symbol_times_int_is_a_product_dim_not_a_string():
    with gc.Graph():
        x = gc.placeholder((None, 8, 8, 9), "float64", name="x")
        t = gc.placeholder(("T",), "float64", name="t")
    n = x.shape[0]
    assert isinstance(n, SymDim) and n == "N"
    assert n * 64 == "N*64" and 64 * n == "N*64" and isinstance(n * 64, SymDim)
    assert n * np.int64(3) == "N*3"
    assert n * t.shape[0] == "N*T" and t.shape[0] * n == "N*T"
    assert n * 0 == 0 and isinstance(n * 0, int)
    assert x.size == "N*576"


def test_product_dims_are_canonical_hashable_and_picklable():
    assert SymDim("64*N") == SymDim("N*64") == "N*64"
    assert SymDim("T*N") == "N*T" and hash(SymDim("T*N")) == hash("N*T")
    assert SymDim("N*2*32").coeff == 64 and SymDim("N*2*32").factors == ("N",)
    assert {SymDim("N"): 1}["N"] == 1
    restored = pickle.loads(pickle.dumps(SymDim("N*64")))
    assert restored == "N*64" and restored.factors == ("N",) and restored.coeff == 64
    assert dim_value(SymDim("N*T*2"), {"N": 3, "T": 5}) == 30


# ---------------------------------------------------------------- solving in the dim table


def test_resolving_goes_inside_products():
    table = DimTable()
    table.unify("M", "N")
    assert table.resolve("N*64") == "M*64"
    table.unify("N", 2)
    assert table.resolve("M*64") == 128 and table.resolve("N*T") == "T*2"


@pytest.mark.parametrize(
    ("a", "b", "resolved"),
    [
        ("N*64", 128, {"N": 2}),
        ("N*64", "M*64", {"M": "N"}),
        ("N*64", "M*32", {"M": "N*2"}),
        ("K", "N*T", {"K": "N*T"}),
        ("N*T", "M*T", {"M": "N"}),
        (0, "N*64", {"N": 0}),
    ],
)
def test_solvable_equalities_tie_the_symbol(a, b, resolved):
    table = DimTable()
    table.unify(a, b)
    assert {s: table.resolve(s) for s in resolved} == resolved
    assert table.resolve(a) == table.resolve(b)
    assert table.pending() == []


@pytest.mark.parametrize(
    ("a", "b"), [("N*64", 100), ("N", "N*64"), ("N*64", "N*32"), ("N*T*2", "N*T*3")]
)
def test_contradictions_raise(a, b):
    with pytest.raises(DimMismatch, match=r"!="):
        DimTable().unify(a, b)


def test_unsolvable_equalities_wait_until_a_symbol_is_tied():
    table = DimTable()
    table.unify("N*T", 128)
    table.unify("A*3", "B*2")
    assert table.pending() == [("N*T", 128), ("A*3", "B*2")]
    table.unify("T", 4)
    assert table.resolve("N") == 32 and table.pending() == [("A*3", "B*2")]
    state = table.snapshot()
    with pytest.raises(DimMismatch):
        table.unify("A", 5)  # 15 == B*2 has no whole solution
    table.restore(state)
    assert table.pending() == [("A*3", "B*2")]


# ---------------------------------------------------------------- reshape and printing


def test_reshape_infers_and_divides_products():
    with gc.Graph():
        x = gc.placeholder((None, 8, 8, 9), "float64", name="x")
        cols = gc.reshape(x, (-1, 9))
        assert cols.shape == ("N*64", 9)
        assert gc.reshape(cols, (-1, 8, 8, 9)).shape == ("N", 8, 8, 9)
        assert gc.reshape(cols, ("N", 8, 8, 9)).shape == ("N", 8, 8, 9)
        assert gc.reshape(cols, (x.shape[0], 64, 9)).shape == ("N", 64, 9)
        assert gc.reshape(x, (x.shape[0] * 64, 9)).shape == ("N*64", 9)
        assert gc.reshape(x, ("N*8", -1)).shape == ("N*8", 72)
        assert gc.reshape(x, (-1,)).shape == ("N*576",)
        y = gc.placeholder((None, 9), "float64", name="y")
        assert (cols + y).shape == ("N*64", 9)
        assert y.shape == ("N*64", 9)  # y's symbol was tied to N*64


def test_format_prints_product_dims():
    with gc.Graph():
        x = gc.placeholder((None, 8, 8, 9), "float32", name="x")
        cols = gc.reshape(x, (-1, 9))
        loss = gc.sum(gc.tanh(cols))
        (gx,) = gc.grad(loss, [x])
    assert "f32[N*64,9]" in gc.format(cols)
    listing = gc.format(gx)
    assert "f32[N*64,9]" in listing and "f32[N,8,8,9]" in listing


def test_reshape_contradictions_name_the_line():
    with gc.Graph():
        x = gc.placeholder((None, 8, 8, 9), "float64", name="x")
        cols = gc.reshape(x, (-1, 9))
        with pytest.raises(gc.ShapeError, match=rf"{FILE}:\d+") as info:
            gc.reshape(x, (-1, 10))
        assert "cannot reshape [N,8,8,9]" in str(info.value)
        with pytest.raises(gc.ShapeError, match=rf"{FILE}:\d+: .*N\*64 .*100"):
            cols + gc.placeholder((100, 9), "float64", name="z")
        with pytest.raises(gc.ShapeError, match=rf"{FILE}:\d+"):
            gc.reshape(cols, ("T", 64, 9))  # T is no factor of N*64*9
        assert x.shape == ("N", 8, 8, 9)  # the failed ops tied nothing


# ---------------------------------------------------------------- both backends


def _im2col_graph(dtype: str = "float64"):
    """2x2 patches of an [N,4,4] image as rows of an [N*4,4] matrix, times W, and back."""
    rng = np.random.default_rng(0)
    graph = gc.Graph(name="im2col")
    with graph:
        x = gc.placeholder((None, 4, 4), dtype, name="x")
        w = gc.parameter(rng.standard_normal((4, 3)).astype(dtype), name="w")
        patches = gc.transpose(gc.reshape(x, (-1, 2, 2, 2, 2)), (0, 1, 3, 2, 4))
        cols = gc.reshape(patches, (-1, 4))
        out = gc.reshape(gc.tanh(cols @ w), (x.shape[0], 2, 2, 3))
        loss = gc.sum(out * out)
        gx, gw = gc.grad(loss, [x, w])
    return graph, x, w, cols, out, loss, gx, gw


@pytest.fixture(scope="module")
def im2col():
    graph, x, w, cols, out, _loss, gx, gw = _im2col_graph()
    functions = {b: gc.compile([x], [cols, out, gx, gw], backend=b) for b in ("numpy", "numba")}
    return graph, w, functions


def _reference(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = a.shape[0]
    cols = a.reshape(n, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(-1, 4)
    return cols, np.tanh(cols @ w).reshape(n, 2, 2, 3)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_round_trip_with_two_batch_sizes(im2col, backend):
    graph, w, functions = im2col
    weights = graph.parameter_values[w.node.id]
    for n in (2, 5):
        a = np.random.default_rng(n).standard_normal((n, 4, 4))
        cols, out, gx, gw = functions[backend](a)
        want_cols, want_out = _reference(a, weights)
        assert cols.shape == (n * 4, 4) and out.shape == (n, 2, 2, 3) and gx.shape == a.shape
        np.testing.assert_allclose(cols, want_cols)
        np.testing.assert_allclose(out, want_out, rtol=1e-12)
        reference = functions["numpy"](a)
        np.testing.assert_allclose(gx, reference[2], rtol=1e-10)
        np.testing.assert_allclose(gw, reference[3], rtol=1e-10)
    if backend == "numba":  # sizes of product dims are computed from the bound symbol
        assert "d_N * 16" in functions[backend].source


def test_gradient_through_product_reshapes_by_finite_differences():
    _, x, w, _, _, loss, _, _ = _im2col_graph()
    a = np.random.default_rng(1).standard_normal((3, 4, 4))
    report = gc.testing.check_grads(loss, [x, w], {x: a}, raise_on_failure=False)
    assert report.passed, report


# ---------------------------------------------------------------- call-time binding


def test_product_axes_bind_and_check_at_call_time():
    with gc.Graph():
        x = gc.placeholder((None, 8, 8, 9), "float64", name="x")
        y = gc.placeholder((None, 9), "float64", name="y")
        total = gc.reshape(gc.reshape(x, (-1, 9)) + y, (-1, 8, 8, 9))
        z = gc.placeholder(("B*4", 3), "float64", name="z")
        split = gc.reshape(z, ("B", 4, 3))
    f = gc.compile([y, x], total, backend="numpy")  # y's product axis waits for N
    a, b = np.ones((2, 8, 8, 9)), np.ones((128, 9))
    np.testing.assert_array_equal(f(b, a), np.full((2, 8, 8, 9), 2.0))
    with pytest.raises(gc.InputError, match=r"placeholder 'y'.*N=2 .*bound by placeholder 'x'"
                                           r".*axis 0 is N\*64: it must be 128"):
        f(np.ones((100, 9)), a)
    g = gc.compile([z], split, backend="numpy")  # B is solved from z alone
    assert g(np.ones((8, 3))).shape == (2, 4, 3)
    with pytest.raises(gc.InputError, match=r"placeholder 'z'.*axis 0 is B\*4: it must be a "
                                           r"multiple of 4"):
        g(np.ones((7, 3)))


def test_unsolved_equalities_are_checked_at_call_time():
    with gc.Graph():
        a = gc.placeholder(("N", "T"), "float64", name="a")
        flat = gc.reshape(a, (-1,)) + np.zeros(12)  # N*T == 12: checked when N, T are bound
    f = gc.compile([a], flat, backend="numpy")
    assert f(np.ones((3, 4))).shape == (12,)
    with pytest.raises(gc.InputError, match=r"requires N\*T == 12.*N=2, T=4"):
        f(np.ones((2, 4)))


def test_malformed_dim_text_is_a_shape_error():
    with gc.Graph():
        with pytest.raises(gc.ShapeError, match=r"dimension 'N\*' must be"):
            gc.placeholder(("N*", 3), "float64", name="bad")
        x = gc.placeholder(("B*4", 3), "float64", name="x")
        assert x.shape == ("B*4", 3)
        with pytest.raises(gc.ShapeError, match=rf"'\*' is not a dimension.*{FILE}:\d+"):
            gc.reshape(x, ("*", 3))
