"""gc.scan on the numpy backend: forward and gradients against the same loop unrolled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scan_bodies import lstm_step

import graphcomp as gc

RTOL = 1e-10
T, B, H = 4, 2, 3


def _run(inputs: list, outputs: list, feed: list) -> list[np.ndarray]:
    return gc.compile(inputs, outputs, backend="numpy")(*feed)


def _rnn_step(W: gc.Tensor, U: gc.Tensor, b: gc.Tensor) -> Callable:
    return lambda h, x: (gc.tanh(h @ W + x @ U + b),) * 2


def _rnn_case(use_scan: bool, values: dict, reverse: bool = False) -> list[np.ndarray]:
    """Loss and gradients of a tanh RNN, built with scan or unrolled in Python."""
    with gc.Graph():
        xs = gc.placeholder((T, B, H), "float64", name="xs")
        h0 = gc.placeholder((B, H), "float64", name="h0")
        W, U, b = (gc.parameter(values[k], name=k) for k in ("W", "U", "b"))
        step = _rnn_step(W, U, b)
        if use_scan:
            h, hs = gc.scan(step, h0, xs, reverse=reverse)
        else:
            h, outs = h0, [None] * T
            for t in (range(T - 1, -1, -1) if reverse else range(T)):
                h, outs[t] = step(h, xs[t])
            hs = gc.stack(outs)
        loss = gc.sum(hs * hs * values["weights"]) + gc.sum(gc.sin(h))
        grads = gc.grad(loss, [W, U, b, xs, h0])
        return _run([xs, h0], [loss, h, hs, *grads], [values["xs"], values["h0"]])


@pytest.fixture(scope="module")
def rnn_values() -> dict:
    rng = np.random.default_rng(1)
    return {"W": rng.normal(size=(H, H)) * 0.5, "U": rng.normal(size=(H, H)) * 0.5,
            "b": rng.normal(size=H), "xs": rng.normal(size=(T, B, H)),
            "h0": rng.normal(size=(B, H)), "weights": rng.normal(size=(T, B, H))}


@pytest.mark.parametrize("reverse", [False, True])
def test_tanh_rnn_forward_and_gradients_equal_the_unrolled_loop(rnn_values: dict, reverse: bool):
    scanned = _rnn_case(True, rnn_values, reverse)
    unrolled = _rnn_case(False, rnn_values, reverse)
    for a, b in zip(scanned, unrolled, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-14)


def test_lstm_with_a_dict_carry_matches_the_unrolled_loop():
    rng = np.random.default_rng(2)
    values = {"Wx": rng.normal(size=(H, 4 * H)) * 0.4, "Wh": rng.normal(size=(H, 4 * H)) * 0.4,
              "b": rng.normal(size=4 * H) * 0.1}
    xs_value = rng.normal(size=(T, B, H))
    results = []
    for use_scan in (True, False):
        with gc.Graph():
            xs = gc.placeholder((T, B, H), "float64", name="xs")
            p = {k: gc.parameter(v, name=k) for k, v in values.items()}
            init = {"h": gc.constant(np.zeros((B, H))), "c": gc.constant(np.ones((B, H)))}
            step = lstm_step(p)
            if use_scan:
                last, ys = gc.scan(step, init, xs)
                hs, norms = ys["h"], ys["norm"]
            else:
                last, outs = init, []
                for t in range(T):
                    last, y = step(last, xs[t])
                    outs.append(y)
                hs, norms = gc.stack([y["h"] for y in outs]), gc.stack([y["norm"] for y in outs])
            loss = gc.sum(hs * hs) + gc.sum(norms) + gc.sum(last["c"])
            grads = gc.grad(loss, [*p.values(), xs])
            results.append(_run([xs], [loss, *grads], [xs_value]))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-14)


def test_symbolic_length_one_function_for_every_length_including_zero():
    with gc.Graph():
        xs = gc.placeholder(("T", 2), "float64", name="xs")
        w = gc.parameter(np.array([0.5, -0.3]), name="w")
        c, ys = gc.scan(lambda c, x: (c * w + x, c), gc.constant(np.ones(2)), xs)
        gw = gc.grad(gc.sum(ys) + gc.sum(c), w)
        f = gc.compile([xs], [c, ys, gw], backend="numpy")
    for length in (3, 5):
        x = np.arange(2.0 * length).reshape(length, 2)
        c_ref, ys_ref = np.ones(2), []
        for t in range(length):
            ys_ref.append(c_ref)
            c_ref = c_ref * np.array([0.5, -0.3]) + x[t]
        c_val, ys_val, _ = f(x)
        np.testing.assert_allclose(c_val, c_ref, rtol=RTOL)
        np.testing.assert_allclose(ys_val, np.stack(ys_ref), rtol=RTOL)
    c0, ys0, gw0 = f(np.zeros((0, 2)))
    np.testing.assert_array_equal(c0, np.ones(2))
    assert ys0.shape == (0, 2)
    np.testing.assert_array_equal(gw0, np.zeros(2))


def test_length_without_xs():
    with gc.Graph():
        a = gc.placeholder((), "float64", name="a")
        c, powers = gc.scan(lambda c, _: (c * a, c), gc.constant(1.0), length=4)
        da = gc.grad(c, a)
        f = gc.compile([a], [c, powers, da], backend="numpy")
    c_val, powers_val, da_val = f(np.float64(1.5))
    np.testing.assert_allclose(c_val, 1.5 ** 4, rtol=RTOL)
    np.testing.assert_allclose(powers_val, [1.0, 1.5, 1.5 ** 2, 1.5 ** 3], rtol=RTOL)
    np.testing.assert_allclose(da_val, 4 * 1.5 ** 3, rtol=RTOL)


def _nested(use_scan: bool, x_value: np.ndarray, w_value: np.ndarray) -> list[np.ndarray]:
    with gc.Graph():
        xs = gc.placeholder(x_value.shape, "float64", name="xs")
        w = gc.parameter(w_value, name="w")

        def inner(c: gc.Tensor, x: gc.Tensor) -> tuple:
            return gc.tanh(c * w + x), c

        def outer(c: gc.Tensor, row: gc.Tensor) -> tuple:
            if use_scan:
                c2, ys = gc.scan(inner, c, row)
                return c2, gc.sum(ys)
            ys = []
            for t in range(x_value.shape[1]):
                ys.append(c)
                c = inner(c, row[t])[0]
            return c, gc.sum(gc.stack(ys))

        if use_scan:
            c, totals = gc.scan(outer, gc.constant(np.zeros(2)), xs)
        else:
            c, outs = gc.constant(np.zeros(2)), []
            for t in range(x_value.shape[0]):
                c, y = outer(c, xs[t])
                outs.append(y)
            totals = gc.stack(outs)
        loss = gc.sum(c * c) + gc.sum(totals * totals)
        gw, gx = gc.grad(loss, [w, xs])
        (hw,) = gc.grad(gc.sum(gw * gw), [w])  # gradient of a gradient through both loops
        return _run([xs], [loss, gw, gx, hw], [x_value])


def test_nested_scan_and_its_second_derivative_match_unrolled_loops():
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(3, 2, 2)), rng.normal(size=2)
    for a, b in zip(_nested(True, x, w), _nested(False, x, w), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-14)


def test_grad_of_grad_and_check_grads_on_a_tiny_scan():
    with gc.Graph():
        xs = gc.placeholder((3, 2), "float64", name="xs")
        w = gc.parameter(np.array([0.7, -0.4]), name="w")
        c, ys = gc.scan(lambda c, x: (gc.sin(c * w) + x, c * c), gc.constant(np.ones(2)), xs)
        loss = gc.sum(ys) + gc.sum(c)
        feed = {xs: np.random.default_rng(4).normal(size=(3, 2))}
        gc.check_grads(loss, [w, xs], feed, rtol=1e-6).assert_passed()
        gc.check_grads(loss, [w], feed, order=2, rtol=1e-5).assert_passed()


def test_a_body_slicing_a_batch_axis_bound_later_has_a_gradient():
    # The slice's stop is the symbol N when the body is traced; the loss binds N = 2 afterwards,
    # and the gradient's replay of the body must accept inputs of the bound size.
    def case(use_scan: bool) -> list[np.ndarray]:
        with gc.Graph():
            xs = gc.placeholder((T, None, 2 * H), "float64", name="xs")
            W = gc.parameter(np.linspace(-1.0, 1.0, H * 2 * H).reshape(H, 2 * H), name="W")
            h0 = gc.zeros_like(xs[0][:, :H])

            def step(h: gc.Tensor, x: gc.Tensor) -> tuple:
                z = x + h @ W
                h = gc.tanh(z[:, :H]) * gc.sigmoid(z[:, H:])
                return h, h

            if use_scan:
                _, hs = gc.scan(step, h0, xs)
            else:
                h, outs = h0, []
                for t in range(T):
                    h, out = step(h, xs[t])
                    outs.append(out)
                hs = gc.stack(outs)
            loss = gc.sum(hs * np.arange(T * B * H).reshape(T, B, H))
            return _run([xs], [loss, *gc.grad(loss, [W, xs])],
                        [np.linspace(-2.0, 2.0, T * B * 2 * H).reshape(T, B, 2 * H)])

    for a, b in zip(case(True), case(False), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)
