"""gc.nn.lstm / gru and their cells: against Python loops, numpy formulas and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc

T, B, F, H = 4, 3, 2, 3
RTOL = 1e-10


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _numpy_lstm(xs, w_x, w_h, b, h, c):
    """The LSTM equations written with numpy, gates (i, f, g, o) in column blocks."""
    hs = []
    for x in xs:
        z = x @ w_x + h @ w_h + b
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs), h, c


def _numpy_gru(xs, w_x, w_h, b_x, b_h, h):
    hs = []
    for x in xs:
        a, u = x @ w_x + b_x, h @ w_h + b_h
        r = _sigmoid(a[:, :H] + u[:, :H])
        z = _sigmoid(a[:, H:2 * H] + u[:, H:2 * H])
        n = np.tanh(a[:, 2 * H:] + r * u[:, 2 * H:])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs), h


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(3)
    return {"xs": rng.normal(size=(T, B, F)), "h0": rng.normal(size=(B, H)) * 0.5,
            "c0": rng.normal(size=(B, H)) * 0.5, "weights": rng.normal(size=(T, B, H))}


def _lstm_case(data: dict, use_layer: bool) -> tuple[list[np.ndarray], list]:
    """Loss, outputs and gradients of an LSTM: the layer (scan) or its cell in a Python loop."""
    with gc.Graph() as g:
        xs = gc.placeholder((T, None, F), "float64", name="xs")
        h0 = gc.placeholder((None, H), "float64", name="h0")
        c0 = gc.placeholder((None, H), "float64", name="c0")
        if use_layer:
            hs, (h, c) = gc.nn.lstm(xs, H, initial=(h0, c0), name="rnn")
        else:
            cell = gc.nn.lstm_cell(F, H, dtype="float64", name="rnn")
            carry, outs = (h0, c0), []
            for t in range(T):
                carry, out = cell(carry, xs[t])
                outs.append(out)
            hs, (h, c) = gc.stack(outs), carry
        params = gc.parameters(g)
        loss = gc.sum(hs * data["weights"]) + gc.sum(gc.sin(c))
        grads = gc.grad(loss, [*params, xs, h0, c0])
        f = gc.compile([xs, h0, c0], [loss, hs, h, c, *grads], backend="numpy")
        values = f(data["xs"], data["h0"], data["c0"])
    return values, [p.value for p in params]


def test_lstm_layer_equals_its_cell_unrolled_and_the_numpy_equations(data: dict):
    scanned, params = _lstm_case(data, use_layer=True)
    unrolled, same_params = _lstm_case(data, use_layer=False)
    for a, b in zip(params, same_params, strict=True):
        np.testing.assert_array_equal(a, b)  # both made in scope "rnn": same initial values
    for a, b in zip(scanned, unrolled, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)
    hs, h, c = _numpy_lstm(data["xs"], *params, data["h0"], data["c0"])
    np.testing.assert_allclose(scanned[1], hs, rtol=RTOL)
    np.testing.assert_allclose(scanned[2], h, rtol=RTOL)
    np.testing.assert_allclose(scanned[3], c, rtol=RTOL)
    assert all(np.any(grad != 0) for grad in scanned[4:])


def _gru_case(data: dict, use_layer: bool) -> tuple[list[np.ndarray], list]:
    with gc.Graph() as g:
        xs = gc.placeholder((T, None, F), "float64", name="xs")
        h0 = gc.placeholder((None, H), "float64", name="h0")
        if use_layer:
            hs, h = gc.nn.gru(xs, H, initial=h0, name="rnn")
        else:
            cell = gc.nn.gru_cell(F, H, dtype="float64", name="rnn")
            h, outs = h0, []
            for t in range(T):
                h, out = cell(h, xs[t])
                outs.append(out)
            hs = gc.stack(outs)
        params = gc.parameters(g)
        # non-zero biases, so that their gradients are tested through every path
        for p in params[2:]:
            p.value[...] = np.linspace(-0.5, 0.5, p.value.size)
        loss = gc.sum(hs * data["weights"]) + gc.sum(gc.sin(h))
        grads = gc.grad(loss, [*params, xs, h0])
        f = gc.compile([xs, h0], [loss, hs, h, *grads], backend="numpy")
        values = f(data["xs"], data["h0"])
    return values, [p.value for p in params]


def test_gru_layer_equals_its_cell_unrolled_and_the_numpy_equations(data: dict):
    scanned, params = _gru_case(data, use_layer=True)
    unrolled, _ = _gru_case(data, use_layer=False)
    for a, b in zip(scanned, unrolled, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)
    hs, h = _numpy_gru(data["xs"], *params, data["h0"])
    np.testing.assert_allclose(scanned[1], hs, rtol=RTOL)
    np.testing.assert_allclose(scanned[2], h, rtol=RTOL)
    assert all(np.any(grad != 0) for grad in scanned[3:])


@pytest.mark.parametrize("layer", ["lstm", "gru"])
def test_gradients_match_finite_differences(data: dict, layer: str):
    with gc.Graph() as g:
        xs = gc.placeholder((T, None, F), "float64", name="xs")
        if layer == "lstm":
            hs, (h, c) = gc.nn.lstm(xs, H)
            loss = gc.sum(hs * data["weights"]) + gc.sum(c * c)
        else:
            hs, h = gc.nn.gru(xs, H)
            loss = gc.sum(hs * data["weights"]) + gc.sum(h * h)
        report = gc.check_grads(loss, [*gc.parameters(g), xs], {xs: data["xs"]}, rtol=1e-6)
    report.assert_passed()


def test_batch_major_layout_is_the_time_major_result_transposed(data: dict):
    outputs = []
    for time_major in (True, False):
        with gc.Graph():
            shape = (T, None, F) if time_major else (None, T, F)
            xs = gc.placeholder(shape, "float64", name="xs")
            hs, (h, _) = gc.nn.lstm(xs, H, time_major=time_major)
            feed = data["xs"] if time_major else data["xs"].transpose(1, 0, 2)
            outputs.append(gc.compile([xs], [hs, h], backend="numpy")(feed))
    (hs_t, h_t), (hs_b, h_b) = outputs
    assert hs_b.shape == (B, T, H)
    np.testing.assert_array_equal(hs_b, hs_t.transpose(1, 0, 2))
    np.testing.assert_array_equal(h_b, h_t)


def test_a_cell_is_a_scan_step_and_one_function_takes_any_length(data: dict):
    with gc.Graph() as g:
        xs = gc.placeholder(("T", None, F), "float64", name="xs")
        cell = gc.nn.gru_cell(F, H, dtype="float64")
        h, hs = gc.scan(cell, cell.zero_carry(xs.shape[1]), xs)
        f = gc.compile([xs], [h, hs], backend="numpy")
    assert [p.name for p in gc.parameters(g)] == ["gru_cell/w_x", "gru_cell/w_h",
                                                  "gru_cell/b_x", "gru_cell/b_h"]
    values = [p.value for p in gc.parameters(g)]
    for steps in (T, 1):
        h_val, hs_val = f(data["xs"][:steps])
        want_hs, want_h = _numpy_gru(data["xs"][:steps], *values, np.zeros((B, H)))
        np.testing.assert_allclose(hs_val, want_hs, rtol=RTOL)
        np.testing.assert_allclose(h_val, want_h, rtol=RTOL)


def test_initial_values_forget_bias_and_orthogonal_recurrent_weights():
    with gc.Graph() as g:
        cell = gc.nn.lstm_cell(5, 4, forget_bias=1.0)
        second = gc.nn.lstm_cell(5, 4)
    assert [p.name for p in gc.parameters(g)][3:] == ["lstm_cell_1/w_x", "lstm_cell_1/w_h",
                                                      "lstm_cell_1/b"]
    np.testing.assert_array_equal(cell.b.value, np.repeat([0.0, 1.0, 0.0, 0.0], 4))
    w_h = cell.w_h.value.astype(np.float64)
    np.testing.assert_allclose(w_h @ w_h.T, np.eye(4), atol=1e-6)  # orthonormal rows
    assert not np.array_equal(cell.w_x.value, second.w_x.value)
    assert cell.w_x.value.dtype == np.float32


def test_a_sequence_of_the_wrong_rank_names_the_line():
    with gc.Graph():
        x = gc.placeholder((None, 8), "float32", name="x")
        with pytest.raises(gc.ShapeError, match=r"lstm: input .*x.* must be a sequence.*"
                                                r"test_recurrent\.py"):
            gc.nn.lstm(x, 4)
        xs = gc.placeholder(("T", None, "F"), "float32", name="xs")
        with pytest.raises(gc.ShapeError, match=r"feature axis .* must be static"):
            gc.nn.gru(xs, 4)
