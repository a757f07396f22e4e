"""gc.scan(..., checkpoint=k): the carry kept every k steps, the rest recomputed backward.

Gradients against the same scan without a checkpoint and the loop unrolled, on numpy and
numba, for several k (k > T, k = T, T % k != 0, T = 0) in one compiled function per k; the
residual memory against the report; bad k; nested scans and a gradient of a gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scan_bodies import apply_body, bodies, lstm_step

import graphcomp as gc
from graphcomp.errors import CompileError, GraphError
from graphcomp.inspect.bytes import format_bytes, scan_residual_bytes
from graphcomp.loops import checkpoint as checkpoint_module
from graphcomp.loops import scan_output

RTOL = 1e-10
B, H = 2, 3
LENGTHS = (0, 1, 4, 5, 7)


@pytest.fixture(scope="module")
def values() -> dict:
    rng = np.random.default_rng(7)
    return {"W": rng.normal(size=(H, H)) * 0.5, "u": rng.normal(size=H), "h0": rng.normal(
        size=(B, H)), "xs": {T: rng.normal(size=(T, B, H)) for T in LENGTHS}}


def _rnn(values: dict, k: int | None, backend: str, unrolled: int | None = None,
         reverse: bool = False) -> Callable:
    """Loss and gradients (W, u, xs, h0) of a tanh RNN with an elementwise invariant ``u``;
    ``unrolled``: the same loop unrolled for that many steps instead of a scan."""
    with gc.Graph():
        xs = gc.placeholder(("T", B, H) if unrolled is None else (unrolled, B, H), "float64",
                            name="xs")
        h0 = gc.placeholder((B, H), "float64", name="h0")
        W, u = gc.parameter(values["W"], name="W"), gc.parameter(values["u"], name="u")

        def step(h: gc.Tensor, x: gc.Tensor) -> tuple:
            h = gc.tanh(h @ W + x) * u
            return h, gc.sin(h)

        if unrolled is None:
            h, ys = gc.scan(step, h0, xs, checkpoint=k, reverse=reverse)
        else:
            h, outs = h0, [None] * unrolled
            for t in range(unrolled - 1, -1, -1) if reverse else range(unrolled):
                h, outs[t] = step(h, xs[t])
            ys = gc.stack(outs) if outs else xs
        loss = gc.sum(ys * ys) + gc.sum(h * h)
        return gc.compile([xs, h0], [loss, *gc.grad(loss, [W, u, xs, h0])], backend=backend)


def _close(got: list, want: list) -> None:
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize("reverse", [False, True])
def test_numpy_gradients_equal_the_plain_scan_and_the_unrolled_loop(values: dict, reverse: bool):
    plain = _rnn(values, None, "numpy", reverse=reverse)
    for k in (1, 2, 3, 4, 5, 7, 10):  # k = T, k > T and T % k != 0 among the lengths
        f = _rnn(values, k, "numpy", reverse=reverse)
        for T in LENGTHS:
            feed = (values["xs"][T], values["h0"])
            _close(f(*feed), plain(*feed))
    for T in (4, 5):
        unrolled = _rnn(values, None, "numpy", unrolled=T, reverse=reverse)
        _close(_rnn(values, 3, "numpy", reverse=reverse)(values["xs"][T], values["h0"]),
               unrolled(values["xs"][T], values["h0"]))


@pytest.fixture(scope="module")
def numba_rnn(values: dict) -> dict:
    return {k: _rnn(values, k, "numba") for k in (None, 3)}


@pytest.mark.parametrize("T", LENGTHS)
def test_numba_gradients_equal_numpy(values: dict, numba_rnn: dict, T: int):
    feed = (values["xs"][T], values["h0"])
    expected = _rnn(values, None, "numpy")(*feed)
    _close(numba_rnn[3](*feed), expected)
    _close(numba_rnn[None](*feed), expected)


def test_numba_python_and_native_drivers_with_a_reverse_scan(values: dict):
    with gc.Graph():
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        W = gc.parameter(values["W"], name="W")
        h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x), None), gc.constant(values["h0"]), xs,
                       reverse=True, checkpoint=2)
        outputs = gc.grad(gc.sum(h * h), [W, xs])
        expected = gc.compile([xs], outputs, backend="numpy")
        native = gc.compile([xs], outputs, backend="numba", driver_jit=True)
    for T in (5, 0):
        _close(native(values["xs"][T]), expected(values["xs"][T]))


def _lstm(p: dict, k: int | None, backend: str) -> Callable:
    with gc.Graph():
        xs = gc.placeholder(("T", B, 2), "float64", name="xs")
        params = {name: gc.parameter(v, name=name) for name, v in p.items()}
        init = {"h": gc.constant(np.zeros((B, H))), "c": gc.constant(np.zeros((B, H)))}
        carry, ys = gc.scan(lstm_step(params), init, xs, checkpoint=k)
        loss = gc.sum(carry["h"] * carry["c"]) + gc.sum(ys["norm"])
        return gc.compile([xs], [loss, *gc.grad(loss, [*params.values(), xs])],
                          backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_an_lstm_with_a_dict_carry(backend: str):
    rng = np.random.default_rng(3)
    p = {"Wx": rng.normal(size=(2, 4 * H)), "Wh": rng.normal(size=(H, 4 * H)),
         "b": rng.normal(size=4 * H)}
    f, plain = _lstm(p, 2, backend), _lstm(p, None, "numpy")
    for T in (5, 2, 0):
        xs = rng.normal(size=(T, B, 2))
        _close(f(xs), plain(xs))


@pytest.mark.parametrize("layer", ["lstm", "gru"])
def test_the_recurrent_layers_pass_the_checkpoint_on(layer: str):
    x_value = np.random.default_rng(5).normal(size=(5, B, 2))
    results = []
    for k in (2, None):
        with gc.Graph():
            x = gc.placeholder(("T", B, 2), "float64", name="x")
            hs, _ = getattr(gc.nn, layer)(x, H, checkpoint=k, seed=0)
            params = [p for p in x.graph.nodes() if p.op == "parameter"]
            assert all(n.attrs.get("checkpoint") == k for n in x.graph.nodes() if n.op == "scan"
                       and n.role != "adjoint")
            loss = gc.sum(hs * hs)
            grads = gc.grad(loss, [gc.Tensor(p) for p in params] + [x])
            results.append(gc.compile([x], [loss, *grads], backend="numpy")(x_value))
    _close(*results)


def test_check_grads_passes():
    rng = np.random.default_rng(0)
    with gc.Graph():
        xs = gc.placeholder((5, 2), "float64", name="xs")
        w = gc.parameter(rng.normal(size=2), name="w")
        h, _ = gc.scan(lambda c, x: (gc.tanh(c * w + x), None), np.zeros(2), xs, checkpoint=2)
        loss = gc.sum(h * h)
        gc.check_grads(loss, [w, xs], {xs: rng.normal(size=(5, 2))}, rtol=1e-6).assert_passed()


def _bytes_at(formula: int | str, binding: dict[str, int]) -> int:
    """A report's byte count at ``binding``: a sum of products of ints, symbols and the
    ``ceil(T/k)`` and ``min(T,k)`` factors of a checkpointed scan."""
    if isinstance(formula, int):
        return formula
    total = 0
    for term in formula.split(" + "):
        value = 1
        for factor in term.split("*"):
            if factor.startswith("ceil("):
                symbol, k = factor[5:-1].split("/")
                value *= -(-binding[symbol] // int(k))
            elif factor.startswith("min("):
                symbol, k = factor[4:-1].split(",")
                value *= min(binding[symbol], int(k))
            else:
                value *= int(factor) if factor.isdigit() else binding[factor]
        total += value
    return total


def _record_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list:
    """The list that every ``Checkpoints`` made from now on (in this test) is appended to."""
    held: list = []
    made = checkpoint_module.Checkpoints.__init__

    def record(self: checkpoint_module.Checkpoints, *args: object) -> None:
        made(self, *args)
        held.append(self)

    monkeypatch.setattr(checkpoint_module.Checkpoints, "__init__", record)
    return held


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_residual_memory_is_what_the_report_prints(values: dict, backend: str,
                                                       monkeypatch: pytest.MonkeyPatch):
    held = _record_checkpoints(monkeypatch)
    with gc.Graph():
        xs = gc.placeholder(("T", "B", H), "float64", name="xs")
        h0 = gc.placeholder(("B", H), "float64", name="h0")
        W, u = gc.parameter(values["W"], name="W"), gc.parameter(values["u"], name="u")
        h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x) * u, None), h0, xs, checkpoint=3)
        A = gc.adjoint_graph(gc.sum(h * h), [W, u])
        f = gc.compile([xs, h0], gc.grad(gc.sum(h * h), [W, u]), backend=backend)
    scan = h.node.inputs[0]
    per_step, total = (format_bytes(b) for b in scan_residual_bytes(scan))
    assert total == "24*B*ceil(T/3) + 48*B*min(T,3)"  # h_{t-1}, and tanh's output
    for T, batch in ((7, 2), (2, 1), (6, 3)):
        held.clear()
        f(np.ones((T, batch, H)), np.ones((batch, H)))
        binding = {"T": T, "B": batch}
        (checkpoints,) = held
        assert checkpoints.nbytes == _bytes_at(total, binding)
        others = 8 * (H * H + H + batch * H)  # W, u and the final h, read by the adjoint too
        assert _bytes_at(A.graph["residual_bytes"], binding) == checkpoints.nbytes + others
        assert _bytes_at(per_step, binding) == 48 * batch
    plain = 2 * 7 * 2 * H * 8  # what the scan without a checkpoint stacks for T = 7, B = 2
    assert plain / _bytes_at(total, {"T": 7, "B": 2}) > 1.5
    with gc.Graph():  # static shapes: the report is an int
        xs = gc.placeholder((7, 2, H), "float64", name="xs")
        W, u = gc.parameter(values["W"], name="W"), gc.parameter(values["u"], name="u")
        h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x) * u, None), np.ones((2, H)), xs,
                       checkpoint=3)
        f = gc.compile([xs], gc.grad(gc.sum(h * h), [W, u]), backend=backend)
    held.clear()
    f(np.ones((7, 2, H)))
    assert format_bytes(scan_residual_bytes(h.node.inputs[0])[1]) == held[0].nbytes == (
        3 * 2 * H * 8 + 3 * 2 * 2 * H * 8)  # 3 checkpoints, a segment of 3 steps of 2 stacks


def test_numba_stores_nothing_of_length_T_in_the_forward_loop(values: dict, numba_rnn: dict):
    from graphcomp.backends.numba.stages import ScanLoop

    f = numba_rnn[3]
    f(values["xs"][7], values["h0"])
    forward = [s for s in f._executable.stages
               if isinstance(s, ScanLoop) and s.op.attrs.get("checkpoint") == 3]
    (bound,) = [b for key, b in forward[0]._bound.items() if key[0] == 7]
    assert [len(a) for a in bound.stacks] == [0]  # h_{t-1}: recomputed
    assert bound.shared == {}  # nor kept in tanh's stack (shared_stacks: none when recomputed)
    assert [len(y) for y in bound.ys] == [7, 0, 0]  # the ys sin(h), then tanh(...), h: recomputed


@pytest.mark.parametrize("k", [0, -2, 2.5, True, "3"])
def test_a_bad_checkpoint_names_the_line(k: object):
    with gc.Graph():
        xs = gc.placeholder((3, 2), "float64", name="xs")
        with pytest.raises(GraphError, match=r"test_scan_checkpoint\.py:\d+.*checkpoint must"):
            gc.scan(lambda c, x: (c + x, None), np.zeros(2), xs, checkpoint=k)  # type: ignore[arg-type]


def _nested(values: dict, k: int | None, order: int, backend: str = "numpy",
            nested: bool = True) -> Callable:
    with gc.Graph():
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        W = gc.parameter(values["W"], name="W")

        def inner(c: gc.Tensor, x: gc.Tensor) -> tuple:
            return gc.tanh(c @ W + x), None

        def outer(h: gc.Tensor, x: gc.Tensor) -> tuple:
            if nested:
                h, _ = gc.scan(inner, h, gc.stack([x, 0.5 * x]), checkpoint=k)
            else:
                h = gc.tanh(h @ W + x)
            return h, h

        h, hs = gc.scan(outer, gc.constant(values["h0"]), xs, checkpoint=k)
        (gW,) = gc.grad(gc.sum(hs * hs) + gc.sum(h), [W])
        outputs = [gW, *gc.grad(gc.sum(gW * gW), [W, xs])] if order == 2 else [gW]
        return gc.compile([xs], outputs, backend=backend)


@pytest.mark.parametrize("order", [1, 2])
def test_nested_scans_and_a_gradient_of_a_gradient_on_numpy(values: dict, order: int):
    f, plain = _nested(values, 2, order), _nested(values, None, order)
    for T in (5, 4, 0):
        _close(f(values["xs"][T]), plain(values["xs"][T]))


@pytest.mark.parametrize("nested", [False, True])
def test_a_gradient_of_a_gradient_on_numba(values: dict, nested: bool):
    f, plain = _nested(values, 2, 2, "numba", nested), _nested(values, None, 2, "numpy", nested)
    for T in (5, 0):
        _close(f(values["xs"][T]), plain(values["xs"][T]))


def test_only_scans_read_recomputed_stacks_on_numba(values: dict):
    """On numpy any op may read a recomputed stack (every step at once); numba refuses."""
    results = []
    for k in (3, None):
        with gc.Graph():
            xs = gc.placeholder(("T", B, H), "float64", name="xs")
            W = gc.parameter(values["W"], name="W")
            h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x), None), gc.constant(values["h0"]),
                           xs, checkpoint=k)
            stacked = scan_output(h.node.inputs[0], 1) * 2.0  # the carry each step started from
            results.append(gc.compile([xs], [stacked], backend="numpy")(values["xs"][7]))
            if k is not None:
                with pytest.raises(CompileError, match=r"checkpoint=3.*backend='numpy'"):
                    gc.compile([xs], [stacked], backend="numba")
    _close(*results)


@settings(max_examples=15, deadline=None)
@given(bodies(4), st.integers(0, 7), st.integers(1, 8), st.booleans())
def test_generated_bodies_agree_with_the_plain_scan(steps: list, length: int, k: int,
                                                    reverse: bool):
    rng = np.random.default_rng(length)
    x_value, w_value = rng.normal(size=(length, 2)), rng.normal(size=2)
    results = []
    for checkpoint in (k, None):
        with gc.Graph():
            xs = gc.placeholder(("T", 2), "float64", name="xs")
            w = gc.parameter(w_value, name="w")
            body = lambda c, x: (apply_body(steps, c, x, w), c * x)  # noqa: E731
            c, ys = gc.scan(body, gc.constant(np.ones(2)), xs, reverse=reverse,
                            checkpoint=checkpoint)
            loss = gc.sum(c * c) + gc.sum(ys * ys)
            results.append(gc.compile([xs], [c, ys, *gc.grad(loss, [w, xs])],
                                      backend="numpy")(x_value))
    _close(*results)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_carry_and_the_value_it_is_made_from_share_one_segment(
        values: dict, backend: str, reverse: bool, monkeypatch: pytest.MonkeyPatch):
    """rnn's h_{t-1} and h_t (tanh's output): one recomputed buffer of min(T, k) + 1 rows,
    counted so by the report, gradients equal to the plain scan's."""
    held = _record_checkpoints(monkeypatch)
    functions = []
    for k in (3, None):
        with gc.Graph():
            xs = gc.placeholder(("T", "B", H), "float64", name="xs")
            h0 = gc.placeholder(("B", H), "float64", name="h0")
            W = gc.parameter(values["W"], name="W")
            h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x), None), h0, xs, checkpoint=k,
                           reverse=reverse)
            loss = gc.sum(h * h)
            A = gc.adjoint_graph(loss, [W, h0])
            gradients = [gc.Tensor(h.graph.node(i)) for i in A.graph["gradients"]]
            functions.append(gc.compile([xs, h0], [loss, *gradients], backend=backend))
        if k is not None:
            scan, report = h.node.inputs[0], A
    per_step, total = (format_bytes(b) for b in scan_residual_bytes(scan))
    assert (per_step, total) == ("24*B", "24*B + 24*B*ceil(T/3) + 24*B*min(T,3)")
    for T in (7, 3, 1, 0):
        held.clear()
        feed = [values["xs"].get(T, np.ones((T, B, H))), values["h0"]]
        _close(functions[0](*feed), functions[1](*feed))
        binding = {"T": T, "B": B}
        (checkpoints,) = held
        assert checkpoints.nbytes == _bytes_at(total, binding)
        others = 8 * (H * H + B * H)  # W and the final h, read by the adjoint too
        assert _bytes_at(report.graph["residual_bytes"], binding) == checkpoints.nbytes + others
