"""custom_vjp, hvp, conventions at non-differentiable points, and stability of cross-entropy."""

import numpy as np
import pytest

import graphcomp as gc


def run(outputs, inputs=(), *args):
    return gc.compile(list(inputs), outputs, backend="numpy")(*args)


# ---------------------------------------------------------------- custom_vjp


@gc.custom_vjp
def safe_norm(x):
    return gc.sqrt(gc.sum(x * x))


@safe_norm.defvjp
def _safe_norm_vjp(x, out, g):
    return g * x / gc.maximum(out, 1e-12)


def test_custom_vjp_uses_the_users_rule():
    with gc.Graph():
        x = gc.parameter(np.zeros(3), name="x")
        gx = gc.grad(safe_norm(x), x)
        # Differentiating the body itself would give 0/0 = NaN at x = 0.
        naive = gc.grad(gc.sqrt(gc.sum(x * x)), x)
    safe, plain = run([gx, naive])
    np.testing.assert_array_equal(safe, np.zeros(3))
    assert np.isnan(plain).all()


def test_custom_vjp_first_and_second_order_match_finite_differences():
    with gc.Graph():
        x = gc.parameter(np.array([3.0, -4.0, 1.0]), name="x")
        y = safe_norm(x * 2.0) * x
        gc.check_grads(y, x, order=1)
        gc.check_grads(y, x, order=2)


def test_custom_vjp_rule_that_lies_is_what_grad_returns():
    @gc.custom_vjp
    def clip_gradient(x):
        return x * 1.0

    @clip_gradient.defvjp
    def _(x, out, g):
        return gc.clip(g, -1.0, 1.0)

    with gc.Graph():
        x = gc.parameter(np.array([1.0, 2.0]), name="x")
        gx = gc.grad(gc.sum(clip_gradient(x) * 5.0), x)
    np.testing.assert_array_equal(run(gx), [1.0, 1.0])


def test_custom_vjp_returning_an_input_still_gets_its_rule():
    @gc.custom_vjp
    def identity(x):
        return x

    @identity.defvjp
    def _(x, out, g):
        return 3.0 * g

    with gc.Graph():
        x = gc.parameter(np.array([1.0, 2.0]), name="x")
        gx = gc.grad(gc.sum(identity(x)), x)
    np.testing.assert_array_equal(run(gx), [3.0, 3.0])


def test_custom_vjp_errors_are_clear():
    @gc.custom_vjp
    def no_rule(x):
        return x * 2.0

    @gc.custom_vjp
    def two_inputs(x, y):
        return x * y

    @two_inputs.defvjp
    def _(x, y, out, g):
        return g * y  # one gradient for two inputs

    with gc.Graph():
        x = gc.parameter(np.ones(2), name="x")
        with pytest.raises(gc.GraphError, match="has no gradient rule"):
            no_rule(x)
        with pytest.raises(gc.GraphError, match="returned 1 gradient"):
            gc.grad(gc.sum(two_inputs(x, x)), x)


# ---------------------------------------------------------------- hvp


def test_hvp_matches_finite_differences_of_gradients():
    rng = np.random.default_rng(3)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        W = gc.parameter(rng.standard_normal((3, 2)), name="W")
        b = gc.parameter(rng.standard_normal(2), name="b")
        vW = gc.placeholder((3, 2), "float64", name="vW")
        vb = gc.placeholder((2,), "float64", name="vb")
        loss = gc.mean(gc.softplus(x @ W + b) ** 2.0)
        hW, hb = gc.hvp(loss, [W, b], [vW, vb])
        gW, gb = gc.grad(loss, [W, b])
    xv = rng.standard_normal((4, 3))
    vWv, vbv = rng.standard_normal((3, 2)), rng.standard_normal(2)
    hv = run([hW, hb], [x, vW, vb], xv, vWv, vbv)
    grads = gc.compile([x], [gW, gb])
    W0, b0, eps = W.value, b.value, 1e-5
    W.assign(W0 + eps * vWv)
    b.assign(b0 + eps * vbv)
    plus = grads(xv)
    W.assign(W0 - eps * vWv)
    b.assign(b0 - eps * vbv)
    minus = grads(xv)
    for h, p, m in zip(hv, plus, minus, strict=True):
        np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_hvp_of_a_cubic_is_exact():
    with gc.Graph():
        w = gc.parameter(np.array([1.0, -2.0]), name="w")
        hv = gc.hvp(gc.sum(w * w * w), w, gc.constant(np.array([1.0, 0.5])))
    np.testing.assert_allclose(run(hv), [6.0, -6.0])


# ---------------------------------------------------------------- conventions


def test_conventions_at_non_differentiable_points():
    with gc.Graph():
        x = gc.parameter(np.array([0.0, 2.0, -1.0]), name="x")
        y = gc.parameter(np.array([0.0, 2.0, 3.0]), name="y")
        g_relu = gc.grad(gc.sum(gc.relu(x)), x)
        g_abs = gc.grad(gc.sum(gc.abs(x)), x)
        g_mx, g_my = gc.grad(gc.sum(gc.maximum(x, y)), [x, y])
        m = gc.parameter(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), name="m")
        g_reduce = gc.grad(gc.sum(gc.max(m, axis=1)), m)
    relu, ab, mx, my, red = run([g_relu, g_abs, g_mx, g_my, g_reduce])
    np.testing.assert_array_equal(relu, [0.0, 1.0, 0.0])  # relu'(0) = 0
    np.testing.assert_array_equal(ab, [0.0, 1.0, -1.0])  # abs'(0) = 0
    np.testing.assert_array_equal(mx, [0.5, 0.5, 0.0])  # ties split equally (JAX)
    np.testing.assert_array_equal(my, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(red, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_softmax_cross_entropy_gradient_is_finite_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], "float32")
    labels = np.array([1, 0])
    with gc.Graph():
        z = gc.placeholder((None, 3), "float32", name="z")
        y = gc.placeholder((None,), "int64", name="y")
        loss = gc.mean(gc.softmax_cross_entropy(z, y))
        gz = gc.grad(loss, z)
    loss_v, gz_v = run([loss, gz], [z, y], logits, labels)
    assert np.isfinite(loss_v) and np.isfinite(gz_v).all()
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(gz_v, (probs - np.eye(3)[labels]) / 2, atol=1e-7)


def test_softmax_cross_entropy_matches_finite_differences():
    rng = np.random.default_rng(5)
    with gc.Graph():
        z = gc.placeholder((None, 4), "float32", name="z")
        y = gc.placeholder((None,), "int64", name="y")
        loss = gc.mean(gc.softmax_cross_entropy(z, y))
        feed = {z: rng.standard_normal((3, 4)) * 3, y: np.array([0, 3, 1])}
        report = gc.check_grads(loss, z, feed, order=2)
    assert report.passed and report.order == 2


def test_custom_vjp_rule_with_a_wrong_shape_is_named():
    @gc.custom_vjp
    def total(x):
        return gc.sum(x)

    @total.defvjp
    def _(x, out, g):
        return g  # forgot to broadcast back to x's shape

    with gc.Graph():
        x = gc.parameter(np.ones(3), name="x")
        with pytest.raises(gc.ShapeError, match=r"custom_vjp rule of 'total'.*f64\[\] for input"):
            gc.grad(total(x), x)


def test_custom_vjp_straight_through_a_non_differentiable_body():
    @gc.custom_vjp
    def round_ste(x):
        return gc.cast(gc.cast(x + 0.5, "int64"), "float64")  # no gradient flows through ints

    @round_ste.defvjp
    def _(x, out, g):
        return g  # straight-through estimator

    with gc.Graph():
        x = gc.parameter(np.array([0.2, 1.7]), name="x")
        y = round_ste(x * 3.0)
        gx = gc.grad(gc.sum(y * y), x)
    np.testing.assert_allclose(run(gx), 3.0 * 2 * np.array([1.0, 5.0]))
