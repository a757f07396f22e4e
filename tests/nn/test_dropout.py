"""gc.nn.dropout: inverted dropout in training, the identity in evaluation, one graph for both;
gradients by finite differences at a fixed seed; numba draws the numpy backend's masks; errors."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc

RNG = np.random.default_rng(11)


def _model(rate: float, shape: tuple = (None, 64), seed: int = 3) -> dict:
    with gc.Graph(seed=seed) as g:
        x = gc.placeholder(shape, "float64", name="x")
        training = gc.placeholder((), "bool", name="training")
        y = gc.nn.dropout(x, rate, training)
    return {"graph": g, "x": x, "training": training, "y": y}


def test_python_false_and_rate_zero_are_the_identity():
    with gc.Graph():
        x = gc.placeholder((None, 3), "float32", name="x")
        assert gc.nn.dropout(x, 0.5, False) is x
        assert gc.nn.dropout(x, 0.0, True) is x
        assert gc.nn.dropout(x, 0.0, gc.placeholder((), "bool", name="t")) is x


def test_training_zeroes_a_fraction_rate_and_scales_the_rest():
    rate = 0.3
    m = _model(rate)
    f = gc.compile([m["x"], m["training"]], m["y"], backend="numpy")
    X = RNG.uniform(1.0, 2.0, (500, 64))
    y = f(X, np.array(True))
    dropped = y == 0.0
    np.testing.assert_allclose(y[~dropped], X[~dropped] / (1.0 - rate), rtol=1e-15)
    n = X.size  # binomial: 5 standard deviations
    assert abs(dropped.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    assert abs(y.sum() / X.sum() - 1.0) < 0.02  # inverted dropout keeps the expectation


def test_a_placeholder_flag_serves_training_and_evaluation_in_one_graph():
    m = _model(0.5)
    f = gc.compile([m["x"], m["training"]], m["y"], backend="numpy")
    X = RNG.uniform(1.0, 2.0, (8, 64))
    np.testing.assert_array_equal(f(X, np.array(False)), X)
    first, second = f(X, np.array(True)), f(X, np.array(True))
    assert (first == 0).any() and (second == 0).any()
    assert ((first == 0) != (second == 0)).any()  # each call draws a new mask
    np.testing.assert_array_equal(f(X, np.array(False)), X)


def test_numba_draws_the_same_masks_as_numpy():
    X = RNG.standard_normal((16, 64))
    results = {}
    for backend in ("numpy", "numba"):
        m = _model(0.25)
        f = gc.compile([m["x"], m["training"]], m["y"], backend=backend)
        results[backend] = [f(X, np.array(flag)) for flag in (True, False, True)]
    for a, b in zip(results["numpy"], results["numba"], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-15)


@pytest.mark.parametrize("flag", [True, "placeholder"])
def test_gradient_matches_finite_differences_at_a_fixed_seed(flag):
    with gc.Graph(seed=9) as g:
        x = gc.placeholder((4, 5), "float64", name="x")
        w = gc.parameter(RNG.standard_normal((5, 3)), name="w")
        training = gc.placeholder((), "bool", name="training")
        h = gc.nn.dropout(gc.tanh(x @ w), 0.4, training if flag == "placeholder" else True)
        loss = gc.sum(gc.sin(h))
        (d_w,) = gc.grad(loss, [w])
        f = gc.compile([x, training], [loss, d_w], backend="numpy")
    X, on = RNG.standard_normal((4, 5)), np.array(True)
    _, analytic = f(X, on)  # call 0 of seed 9
    values, numeric = g.parameter_values[w.node.id], np.zeros_like(analytic)
    for index in np.ndindex(*values.shape):
        losses = []
        for step in (1e-6, -1e-6):
            values[index] += step
            gc.seed(g, 9)  # the same mask on both sides (the first call's)
            losses.append(f(X, on)[0])
            values[index] -= step
        numeric[index] = (losses[0] - losses[1]) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    if flag == "placeholder":  # evaluation: the gradient of the network without dropout
        _, evaluation = f(X, np.array(False))
        t = np.tanh(X @ values)
        np.testing.assert_allclose(evaluation, X.T @ (np.cos(t) * (1 - t**2)), rtol=1e-12)
        assert not np.allclose(analytic, evaluation)  # the training mask changed the gradient


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, "0.5", True, None])
def test_a_rate_outside_zero_one_is_refused(rate):
    with gc.Graph():
        x = gc.placeholder((None, 2), "float64", name="x")
        with pytest.raises(gc.RangeError, match=r"dropout: rate must be .*test_dropout\.py:"):
            gc.nn.dropout(x, rate, True)


@pytest.mark.parametrize("flag, error", [
    (1, gc.DTypeError), ("yes", gc.DTypeError), (("float32", ()), gc.DTypeError),
    (("bool", (1,)), gc.ShapeError)])
def test_a_training_flag_that_is_not_a_boolean_scalar_is_refused(flag, error):
    with gc.Graph():
        x = gc.placeholder((None, 2), "float64", name="x")
        if isinstance(flag, tuple):
            flag = gc.placeholder(flag[1], flag[0], name="training")
        with pytest.raises(error, match=r"dropout: training .*test_dropout\.py:"):
            gc.nn.dropout(x, 0.5, flag)


def test_dropout_in_a_scope_trains_with_an_optimizer_taking_every_trainable_parameter():
    with gc.Graph(seed=2) as g:
        x = gc.placeholder((None, 4), "float64", name="x")
        with gc.name_scope("block"):
            h = gc.nn.dropout(gc.nn.dense(x, 3), 0.5, True)
        loss = gc.mean(gc.square(h))
        step = gc.compile([x], loss, updates=gc.optim.SGD(lr=0.1).updates(loss),
                          backend="numpy")
    state = gc.random.state(g)
    assert state.name == "random.state" and not state.trainable  # graph-wide, never trained
    assert [p.name for p in gc.parameters(g, trainable=True)] == ["block/dense/w", "block/dense/b"]
    X = RNG.standard_normal((6, 4))
    step(X)
    step(X)
    assert state.value[1] == 2  # two calls drew two masks
