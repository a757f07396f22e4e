"""gc.check_grads itself: it must pass right gradients, catch wrong ones, and report clearly."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import REGISTRY
from graphcomp.ops import functions as F


def test_report_lists_each_wrt_with_its_errors():
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.parameter(np.array([0.5, -1.0, 2.0]), name="w")
        report = gc.check_grads(gc.tanh(x * w), [w, x], feed={x: np.ones((2, 3))})
    assert report.passed
    assert [e.label for e in report.entries] == ['%1 "w"', '%0 "x"']
    assert [e.shape for e in report.entries] == [(3,), (2, 3)]
    assert report.max_abs_error < 1e-8 and report.max_rel_error < 1e-6
    assert 'ok   %1 "w"' in str(report)


def test_a_wrong_vjp_rule_is_caught(monkeypatch):
    wrong = lambda g, out, ins, attrs: [g * out * 1.001]  # noqa: E731 - exp' off by 0.1%
    monkeypatch.setattr(REGISTRY["exp"], "vjp", wrong)
    with gc.Graph():
        w = gc.parameter(np.array([0.3, -0.2]), name="w")
        loss = gc.sum(gc.exp(w))
        report = gc.check_grads(loss, w, raise_on_failure=False)
        assert not report.passed
        assert "FAIL %0" in str(report)
        with pytest.raises(AssertionError, match="gradients disagree with finite differences"):
            gc.check_grads(loss, w)


def test_a_wrong_second_derivative_is_caught_only_at_order_2(monkeypatch):
    # sin' written with a forward value held constant: right value, wrong derivative of it.
    def rule(g, out, ins, attrs):
        return [g * F.stop_gradient(F.cos(ins[0]))]

    monkeypatch.setattr(REGISTRY["sin"], "vjp", rule)
    with gc.Graph():
        w = gc.parameter(np.array([0.3, 1.2]), name="w")
        loss = gc.sum(gc.sin(w))
        assert gc.check_grads(loss, w, order=1).passed
        assert not gc.check_grads(loss, w, order=2, raise_on_failure=False).passed


def test_float32_graphs_are_checked_in_float64():
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((None, 4), "float32", name="x")
        W = gc.parameter(rng.standard_normal((4, 3)).astype("float32"), name="W")
        loss = gc.mean(gc.log_softmax(x @ W))
        report = gc.check_grads(loss, W, {x: rng.standard_normal((5, 4))}, rtol=1e-7)
    assert report.passed


def test_wrt_must_be_a_float_source():
    with gc.Graph():
        x = gc.placeholder((3,), "float64", name="x")
        k = gc.placeholder((3,), "int64", name="k")
        y = gc.exp(x)
        with pytest.raises(gc.GraphError, match="wrt must be float placeholders or parameters"):
            gc.check_grads(gc.sum(y), y, {x: np.ones(3)})
        with pytest.raises(gc.GraphError, match="wrt must be float placeholders or parameters"):
            gc.check_grads(gc.sum(y * k), k, {x: np.ones(3), k: np.ones(3, "int64")})


def test_missing_feed_is_named():
    with gc.Graph():
        x = gc.placeholder((3,), "float64", name="x")
        w = gc.parameter(np.ones(3), name="w")
        with pytest.raises(gc.GraphError, match='feed has no value for placeholder %0 "x"'):
            gc.check_grads(gc.sum(x * w), w)


def test_disconnected_wrt_checks_as_zero():
    with gc.Graph():
        a = gc.parameter(np.ones(2), name="a")
        b = gc.parameter(np.ones(2), name="b")
        report = gc.check_grads(gc.sum(a * a), [a, b])
    assert report.passed and report.entries[1].max_abs_error == 0.0
