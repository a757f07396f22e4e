"""gc.grad on small graphs whose gradients are known in closed form."""

import numpy as np
import pytest

import graphcomp as gc


def run(outputs, inputs=(), *args):
    return gc.compile(list(inputs), outputs, backend="numpy")(*args)


def test_two_layer_gradients_match_closed_form():
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        W = gc.parameter(rng.standard_normal((3, 4)), name="W")
        b = gc.parameter(np.zeros(4), name="b")
        h = gc.tanh(x @ W + b)
        loss = gc.mean(h * h)
        gW, gb = gc.grad(loss, [W, b])
    xv = rng.standard_normal((5, 3))
    gW_v, gb_v = run([gW, gb], [x], xv)
    z = np.tanh(xv @ W.value + b.value)
    dz = 2 * z / z.size * (1 - z * z)
    np.testing.assert_allclose(gW_v, xv.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(gb_v, dz.sum(0), rtol=1e-12)


def test_single_wrt_gives_single_gradient():
    with gc.Graph():
        w = gc.parameter(np.array([1.0, -2.0]), name="w")
        gw = gc.grad(gc.sum(w * w * w), w)
    assert isinstance(gw, gc.Tensor)
    np.testing.assert_allclose(run(gw), 3 * np.array([1.0, 4.0]))


def test_fan_out_contributions_are_summed():
    with gc.Graph():
        w = gc.parameter(np.array([0.5, 2.0]), name="w")
        loss = gc.sum(gc.exp(w) + w * 3.0 + gc.sin(w))
        gw = gc.grad(loss, w)
    wv = np.array([0.5, 2.0])
    np.testing.assert_allclose(run(gw), np.exp(wv) + 3.0 + np.cos(wv), rtol=1e-14)


def test_broadcasting_in_both_operands_is_undone():
    rng = np.random.default_rng(1)
    av, bv = rng.standard_normal((3, 1)), rng.standard_normal((1, 4))
    with gc.Graph():
        a = gc.parameter(av, name="a")
        b = gc.parameter(bv, name="b")
        ga, gb = gc.grad(gc.sum(a * b), [a, b])
    ga_v, gb_v = run([ga, gb])
    assert ga_v.shape == (3, 1) and gb_v.shape == (1, 4)
    np.testing.assert_allclose(ga_v, np.full((3, 1), bv.sum()), rtol=1e-14)
    np.testing.assert_allclose(gb_v, np.full((1, 4), av.sum()), rtol=1e-14)


def test_stop_gradient_cuts_the_path():
    with gc.Graph():
        w = gc.parameter(np.array([1.5, -0.5]), name="w")
        loss = gc.sum(w * gc.stop_gradient(w))
        gw = gc.grad(loss, w)
    np.testing.assert_allclose(run(gw), np.array([1.5, -0.5]))


def test_integer_inputs_carry_no_gradient():
    with gc.Graph():
        k = gc.placeholder((3,), "int64", name="k")
        w = gc.parameter(np.array([1.0, 2.0, 3.0]), name="w")
        loss = gc.sum(w * k) + gc.sum(gc.cast(w, "int32") * 2.0)
        gw, gk = gc.grad(loss, [w, k])
    gw_v, gk_v = run([gw, gk], [k], np.array([4, 5, 6]))
    np.testing.assert_array_equal(gw_v, [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(gk_v, [0, 0, 0])
    with pytest.raises(gc.GraphError, match="integer/bool values carry no gradient"):
        gc.grad(loss, k, strict=True)


def test_disconnected_wrt_gets_zeros_of_its_symbolic_shape():
    with gc.Graph():
        x = gc.placeholder((None, 2), "float64", name="x")
        w = gc.parameter(np.array([1.0, 2.0]), name="w")
        loss = gc.sum(w * w)
        gx = gc.grad(loss, x)
        assert gx.shape == x.shape
        with pytest.raises(gc.GraphError, match="does not depend on it"):
            gc.grad(loss, x, strict=True)
    np.testing.assert_array_equal(run(gx, [x], np.ones((4, 2))), np.zeros((4, 2)))


def test_non_scalar_output_needs_a_seed():
    with gc.Graph():
        w = gc.parameter(np.array([1.0, 2.0]), name="w")
        y = w * w
        with pytest.raises(gc.GraphError, match="not a scalar; pass seed"):
            gc.grad(y, w)
        gw = gc.grad(y, w, seed=np.array([3.0, -1.0]))
        with pytest.raises(gc.ShapeError, match="seed has shape"):
            gc.grad(y, w, seed=np.ones(3))
    np.testing.assert_allclose(run(gw), [6.0, -4.0])


def test_second_and_third_order():
    with gc.Graph():
        w = gc.parameter(np.array(0.7), name="w")
        y = gc.sin(w) * w
        d1 = gc.grad(y, w)
        d2 = gc.grad(d1, w)
        d3 = gc.grad(d2, w)
    v = 0.7
    got = run([d1, d2, d3])
    want = [np.cos(v) * v + np.sin(v), 2 * np.cos(v) - v * np.sin(v),
            -3 * np.sin(v) - v * np.cos(v)]
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_adjoint_nodes_are_tagged_with_their_forward_node():
    with gc.Graph():
        w = gc.parameter(np.ones(3), name="w")
        y = gc.exp(w)
        loss = gc.sum(y)
        gw = gc.grad(loss, w)
    G = gc.to_networkx(gw)
    roles = {n: d["role"] for n, d in G.nodes(data=True)}
    assert roles[w.node.id] == "forward" and roles[gw.node.id] == "adjoint"
    assert G.nodes[gw.node.id]["forward_of"] == y.node.id
    for _, data in G.nodes(data=True):
        assert (data["role"] == "adjoint") == (data["forward_of"] is not None)
    assert "# adjoint of %" in gc.format(gw)


def test_misuse_is_reported_as_graph_errors():
    with gc.Graph(name="one"):
        w = gc.parameter(np.ones(2), name="w")
        loss = gc.sum(w * w)
        k = gc.placeholder((2,), "int64", name="k")
    with gc.Graph(name="two"):
        v = gc.parameter(np.ones(2), name="v")
    with pytest.raises(gc.GraphError, match="belongs to graph 'two'"):
        gc.grad(loss, [w, v])
    with pytest.raises(gc.GraphError, match="only float outputs can be differentiated"):
        gc.grad(gc.sum(k), w)


def test_gradient_with_respect_to_an_intermediate_node():
    with gc.Graph():
        w = gc.parameter(np.array([0.5, 1.5]), name="w")
        h = gc.exp(w)
        loss = gc.sum(h * h)
        gh, gw = gc.grad(loss, [h, w])
    gh_v, gw_v = run([gh, gw])
    hv = np.exp([0.5, 1.5])
    np.testing.assert_allclose(gh_v, 2 * hv, rtol=1e-14)
    np.testing.assert_allclose(gw_v, 2 * hv * hv, rtol=1e-14)
