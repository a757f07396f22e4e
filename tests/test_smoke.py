"""End-to-end check of the README example on the numpy backend."""

import numpy as np

import graphcomp as gc


def test_readme_logreg_matches_numpy():
    rng = np.random.default_rng(0)
    with gc.Graph(name="logreg"):
        x = gc.placeholder((None, 64), "float64", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        W = gc.parameter(rng.standard_normal((64, 10)), name="W")
        b = gc.parameter(rng.standard_normal(10), name="b")
        logits = x @ W + b
        loss = gc.mean(gc.softmax_cross_entropy(logits, y))
        probs = gc.softmax(logits, axis=-1)
    f = gc.compile([x, y], [loss, probs], backend="numpy")
    xv, yv = rng.standard_normal((7, 64)), rng.integers(0, 10, 7)
    loss_v, probs_v = f(xv, yv)
    z = xv @ W.value + b.value
    expected = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(7), yv])
    np.testing.assert_allclose(loss_v, expected, rtol=1e-12)
    np.testing.assert_allclose(probs_v, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)
    loss_kw, _ = f(y=yv, x=xv)
    assert loss_kw == loss_v
