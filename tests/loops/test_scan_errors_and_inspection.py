"""gc.scan: build-time errors naming the user's line, listings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scan_bodies import apply_body, bodies

import graphcomp as gc

HERE = "test_scan_errors_and_inspection.py"


def test_a_carry_that_changes_shape_is_a_shape_error():
    with gc.Graph():
        xs = gc.placeholder((3, 2), "float64", name="xs")
        with pytest.raises(gc.ShapeError, match=rf"scan at .*{HERE}:\d+: .*keep its shape"):
            gc.scan(lambda c, x: (gc.concatenate([c, x]), c), gc.constant(np.zeros(2)), xs)


def test_a_carry_that_changes_dtype_is_a_dtype_error():
    with gc.Graph():
        xs = gc.placeholder((3, 2), "float64", name="xs")
        with pytest.raises(gc.DTypeError, match=rf"scan at .*{HERE}:\d+: .*f32\[2\].*f64\[2\]"):
            gc.scan(lambda c, x: (c.astype("float32"), c), gc.constant(np.zeros(2)), xs)


def test_xs_of_different_leading_lengths_is_a_shape_error():
    with gc.Graph():
        a = gc.placeholder((3, 2), "float64", name="a")
        b = gc.placeholder((4, 2), "float64", name="b")
        with pytest.raises(gc.ShapeError, match=rf"scan at .*{HERE}:\d+: xs leaves .* one leading"):
            gc.scan(lambda c, x: (c + x[0] + x[1], c), gc.constant(np.zeros(2)), (a, b))


def test_a_body_using_a_tensor_of_another_graph_is_a_graph_error():
    with gc.Graph():
        stranger = gc.parameter(np.ones(2), name="stranger")
    with gc.Graph():
        xs = gc.placeholder((3, 2), "float64", name="xs")
        with pytest.raises(gc.GraphError, match=rf"add at .*{HERE}:\d+: cannot use .*stranger"):
            gc.scan(lambda c, x: (c + stranger, c), gc.constant(np.zeros(2)), xs)


def test_symbolic_lengths_that_disagree_at_call_time_are_an_input_error():
    with gc.Graph():
        a = gc.placeholder((None, 2), "float64", name="a")
        b = gc.placeholder((None,), "float64", name="b")
        c, _ = gc.scan(lambda c, x: (c * x[1] + x[0], c), gc.constant(np.zeros(2)), (a, b))
        f = gc.compile([a, b], c, backend="numpy")
    with pytest.raises(gc.InputError, match=r"placeholder 'b'.*bound by placeholder 'a'"):
        f(np.ones((3, 2)), np.ones(4))


def test_format_lists_the_body_beneath_the_scan_and_residual_bytes_per_step():
    with gc.Graph():
        xs = gc.placeholder(("T", "B", 2), "float64", name="xs")
        h0 = gc.placeholder(("B", 2), "float64", name="h0")
        W = gc.parameter(np.eye(2), name="W")
        _, hs = gc.scan(lambda c, x: (gc.tanh(c @ W + x),) * 2, h0, xs)
        listing = gc.format(hs)
        A = gc.adjoint_graph(gc.sum(hs), W)
    assert "%3 = scan[reverse=False, T=T] %1 %0 %2 : (f64[B,2], f64[T,B,2])" in listing
    assert "    body: carry %0; x %1; invariants %2 = %2" in listing
    assert "    %3 = matmul %0 %2 : f64[B,2]" in listing
    stacks = [A.nodes[n] for n in A if "bytes_per_step" in A.nodes[n]]
    # h_{t-1}, kept in the buffer of the ys hs (h_t), one row longer: one row in all
    assert [(s["bytes"], s["bytes_per_step"]) for s in stacks] == [("16*B", 0)]
    assert A.graph["residual_bytes"] == "32 + 16*B + 16*B*T"  # W, that row, hs
    assert "scan" in gc.to_dot(hs) and "body: carry" in gc.to_dot(hs)


@settings(max_examples=15, deadline=None)
@given(bodies(4), st.integers(0, 3), st.booleans())
def test_generated_bodies_agree_with_unrolled_loops(steps: list, length: int, reverse: bool):
    rng = np.random.default_rng(length)
    x_value, w_value = rng.normal(size=(length, 2)), rng.normal(size=2)
    results = []
    for use_scan in (True, False):
        with gc.Graph():
            xs = gc.placeholder((length, 2), "float64", name="xs")
            w = gc.parameter(w_value, name="w")
            body = lambda c, x: (apply_body(steps, c, x, w), c * x)  # noqa: E731
            if use_scan:
                c, ys = gc.scan(body, gc.constant(np.ones(2)), xs, reverse=reverse)
            else:
                c, outs = gc.constant(np.ones(2)), [None] * length
                for t in range(length - 1, -1, -1) if reverse else range(length):
                    c, outs[t] = body(c, xs[t])
                ys = gc.stack(outs) if length else gc.constant(np.zeros((0, 2)))
            loss = gc.sum(c * c) + gc.sum(ys)
            results.append(gc.compile([xs], [c, ys, *gc.grad(loss, [w, xs])],
                                      backend="numpy")(x_value))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
