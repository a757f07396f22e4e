"""The benchmark workloads: each one as a graphcomp training step and as numpy written by hand.

A ``Problem`` holds initial parameter values, one batch of data, the learning rate, a function
that builds the loss with graphcomp, and the hand-written numpy forward + backward pass. Both
sides start from the same values, so their gradients can be compared (tests/benchmarks).

graphcomp is imported on first use (``gc`` below), not with this module: the numpy-by-hand
step of ``bench_first_steps.py`` times a process from its launch and must not pay for
``import graphcomp``.

>>> problem = make("logreg")
>>> step = NumpyStep(problem)
>>> loss = step(*problem.inputs)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import graphcomp as gc


class _Graphcomp:
    """``graphcomp``, imported by the first attribute read (``gc.tanh``, ``gc.Graph``, ...)."""

    def __getattr__(self, name: str) -> Any:
        import graphcomp

        return getattr(graphcomp, name)


if not TYPE_CHECKING:
    gc = _Graphcomp()

Arrays = dict[str, np.ndarray]
LossAndGrads = tuple[float, list[np.ndarray]]


@dataclass
class Problem:
    """One workload: data, initial parameters, the graphcomp loss and the numpy gradient."""

    name: str
    shape: str
    params: Arrays  # initial values, in gradient order
    input_names: list[str]
    inputs: list[np.ndarray]  # one batch, fed at every step
    lr: float
    build_loss: Callable[[dict[str, gc.Tensor], list[gc.Tensor]], gc.Tensor]
    numpy_loss_and_grads: Callable[[Arrays, Sequence[np.ndarray]], LossAndGrads]
    gemm_shapes: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    # The update pairs of the graphcomp step (default: dense ``p - lr * g``), and the
    # hand-written step (default: ``NumpyStep``), for workloads that need their own.
    make_updates: Callable[[list, list], list] | None = None
    numpy_step: Callable[[Problem], Callable[..., float]] | None = None


# ---------------------------------------------------------------- multilayer perceptrons


def _mlp_params(rng: np.random.Generator, sizes: Sequence[int], dtype: str) -> Arrays:
    params: Arrays = {}
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes)):
        scale = np.sqrt(2.0 / fan_in)
        params[f"W{i}"] = (rng.standard_normal((fan_in, fan_out)) * scale).astype(dtype)
        params[f"b{i}"] = np.zeros(fan_out, dtype=dtype)
    return params


def _gc_activation(name: str, a: gc.Tensor) -> gc.Tensor:
    return gc.tanh(a) if name == "tanh" else gc.relu(a)


def _mlp_gc_loss(layers: int, activation: str, loss: str):
    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        x, y = inputs
        h = x
        for i in range(layers):
            h = _gc_activation(activation, h @ p[f"W{i}"] + p[f"b{i}"])
        out = h @ p[f"W{layers}"] + p[f"b{layers}"]
        if loss == "mse":
            return gc.mean(gc.square(out - y))
        return gc.mean(gc.softmax_cross_entropy(out, y))

    return build


def _xent_grad(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, labels]))
    g = exp / total
    g[rows, labels] -= 1
    g /= n
    return loss, g


def _mlp_numpy(layers: int, activation: str, loss: str):
    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        x, y = inputs
        hs = [x]
        for i in range(layers):
            a = hs[-1] @ p[f"W{i}"]
            a += p[f"b{i}"]
            hs.append(np.tanh(a, out=a) if activation == "tanh" else np.maximum(a, 0, out=a))
        out = hs[-1] @ p[f"W{layers}"]
        out += p[f"b{layers}"]
        if loss == "mse":
            d = out - y
            value = float(np.mean(d * d))
            g = d * (2.0 / d.size)
        else:
            value, g = _xent_grad(out, y)
        grads: dict[str, np.ndarray] = {}
        for i in range(layers, -1, -1):  # output layer first
            grads[f"W{i}"], grads[f"b{i}"] = hs[i].T @ g, g.sum(axis=0)
            if i == 0:
                break
            g = g @ p[f"W{i}"].T
            h = hs[i]
            if activation == "tanh":
                g *= 1 - h * h
            else:
                g *= h > 0
        return value, [grads[name] for name in p]

    return loss_and_grads


def _mlp_gemms(sizes: Sequence[int], batch: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The matmul shapes of one training step (no gradient for the input data)."""
    shapes = [((batch, a), (a, b)) for a, b in pairwise(sizes)]
    for i in range(len(sizes) - 1, 0, -1):
        fan_in, fan_out = sizes[i - 1], sizes[i]
        shapes.append(((fan_in, batch), (batch, fan_out)))  # dW = h.T @ g
        if i > 1:
            shapes.append(((batch, fan_out), (fan_out, fan_in)))  # dh = g @ W.T
    return shapes


def tiny_mlp(seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    sizes, batch = [32, 64, 64, 1], 16
    return Problem(
        name="tiny_mlp",
        shape="32-64-64-1 tanh, MSE, batch 16, f64",
        params=_mlp_params(rng, sizes, "float64"),
        input_names=["x", "y"],
        inputs=[rng.standard_normal((batch, 32)), rng.standard_normal((batch, 1))],
        lr=0.01,
        build_loss=_mlp_gc_loss(2, "tanh", "mse"),
        numpy_loss_and_grads=_mlp_numpy(2, "tanh", "mse"),
        gemm_shapes=_mlp_gemms(sizes, batch),
    )


def mlp(seed: int = 0, hidden_layers: int = 2, batch: int = 128) -> Problem:
    rng = np.random.default_rng(seed)
    sizes = [784, *[512] * hidden_layers, 10]
    return Problem(
        name="mlp" if hidden_layers == 2 else f"mlp{hidden_layers}",
        shape=f"{'-'.join(map(str, sizes))} relu, softmax-xent, batch {batch}, f32",
        params=_mlp_params(rng, sizes, "float32"),
        input_names=["x", "labels"],
        inputs=[rng.random((batch, 784), dtype=np.float32), rng.integers(0, 10, batch)],
        lr=0.01,
        build_loss=_mlp_gc_loss(hidden_layers, "relu", "xent"),
        numpy_loss_and_grads=_mlp_numpy(hidden_layers, "relu", "xent"),
        gemm_shapes=_mlp_gemms(sizes, batch),
    )


# ---------------------------------------------------------------- elementwise


def ewise(seed: int = 0, size: int = 2**22) -> Problem:
    rng = np.random.default_rng(seed)

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        (x,) = inputs
        w, b = p["w"], p["b"]
        xw = x * w
        return gc.sum(gc.tanh(xw + b) * gc.sigmoid(xw) + gc.log1p(gc.exp(-gc.abs(x * b))))

    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        (x,) = inputs
        w, b = p["w"], p["b"]
        u = x * w
        t = np.tanh(u + b)
        s = np.exp(-u)
        s += 1
        np.reciprocal(s, out=s)
        v = x * b
        e = np.exp(-np.abs(v))
        value = float(np.sum(t * s + np.log1p(e)))
        dtanh = s * (1 - t * t)  # d/da of tanh(a) * s
        du = dtanh + t * s * (1 - s)
        dv = -np.sign(v) * e / (1 + e)
        return value, [x * du, dtanh + x * dv]

    return Problem(
        name="ewise" if size == 2**22 else f"ewise{size}",
        shape="sum(tanh(x*w+b)*sigmoid(x*w) + log1p(exp(-abs(x*b)))), 2^22 f32 params",
        params={
            "w": (rng.standard_normal(size) * 0.5).astype(np.float32),
            "b": (rng.standard_normal(size) * 0.1).astype(np.float32),
        },
        input_names=["x"],
        inputs=[rng.standard_normal(size).astype(np.float32)],
        lr=1e-3,
        build_loss=build,
        numpy_loss_and_grads=loss_and_grads,
    )


# ---------------------------------------------------------------- recurrent network


def rnn(seed: int = 0, steps: int = 32, hidden: int = 128, features: int = 64,
        batch: int = 32) -> Problem:
    """h_t = tanh(x_t Wx + h_{t-1} Wh + b), h_0 = 0; MSE of h_T Wo + bo against y."""
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        x, y = inputs
        h = gc.tanh(x[0] @ p["Wx"] + p["b"])
        for t in range(1, steps):
            h = gc.tanh(x[t] @ p["Wx"] + h @ p["Wh"] + p["b"])
        out = h @ p["Wo"] + p["bo"]
        return gc.mean(gc.square(out - y))

    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        x, y = inputs
        hs = []
        for t in range(steps):
            a = x[t] @ p["Wx"]
            if t:
                a += hs[-1] @ p["Wh"]
            a += p["b"]
            hs.append(np.tanh(a, out=a))
        out = hs[-1] @ p["Wo"] + p["bo"]
        d = out - y
        value = float(np.mean(d * d))
        g_out = d * f32(2.0 / d.size)
        g_wo, g_bo = hs[-1].T @ g_out, g_out.sum(axis=0)
        g_h = g_out @ p["Wo"].T
        g_wx = np.zeros_like(p["Wx"])
        g_wh = np.zeros_like(p["Wh"])
        g_b = np.zeros_like(p["b"])
        for t in range(steps - 1, -1, -1):
            g_a = g_h * (1 - hs[t] * hs[t])
            g_wx += x[t].T @ g_a
            g_b += g_a.sum(axis=0)
            if t:
                g_wh += hs[t - 1].T @ g_a
                g_h = g_a @ p["Wh"].T
        return value, [g_wx, g_wh, g_b, g_wo, g_bo]

    scale_x, scale_h = 1 / np.sqrt(features), 1 / np.sqrt(hidden)
    return Problem(
        name="rnn" if steps == 32 else f"rnn{steps}",
        shape=f"tanh RNN unrolled T={steps}, hidden {hidden}, input {features}, "
              f"batch {batch}, MSE, f32",
        params={
            "Wx": (rng.standard_normal((features, hidden)) * scale_x).astype(f32),
            "Wh": (rng.standard_normal((hidden, hidden)) * scale_h).astype(f32),
            "b": np.zeros(hidden, f32),
            "Wo": (rng.standard_normal((hidden, 1)) * scale_h).astype(f32),
            "bo": np.zeros(1, f32),
        },
        input_names=["x", "y"],
        inputs=[rng.standard_normal((steps, batch, features)).astype(f32),
                rng.standard_normal((batch, 1)).astype(f32)],
        lr=0.01,
        build_loss=build,
        numpy_loss_and_grads=loss_and_grads,
    )


def rnn_scan(seed: int = 0, steps: int = 32, hidden: int = 128, features: int = 64,
             batch: int = 32) -> Problem:
    """``rnn``'s model and data written with ``gc.scan`` (one traced step); same numpy step."""
    unrolled = rnn(seed, steps, hidden, features, batch)

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        x, y = inputs

        def step(h: gc.Tensor, x_t: gc.Tensor) -> tuple[gc.Tensor, None]:
            return gc.tanh(x_t @ p["Wx"] + h @ p["Wh"] + p["b"]), None

        h, _ = gc.scan(step, gc.tanh(x[0] @ p["Wx"] + p["b"]), x[1:])
        out = h @ p["Wo"] + p["bo"]
        return gc.mean(gc.square(out - y))

    return replace(
        unrolled, name="rnn_scan" if steps == 32 else f"rnn_scan{steps}",
        shape=unrolled.shape.replace("unrolled", "with gc.scan"), build_loss=build)


# ---------------------------------------------------------------- LSTM on gc.scan


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * a) + 1.0)  # no overflow for large |a|


def _lstm_forward(p: Arrays, x: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Every step's gates, cell and hidden states (h_0 = c_0 = 0); gates i, f, g, o."""
    steps, batch, features = x.shape
    hidden = p["Wh"].shape[0]
    projected = (x.reshape(steps * batch, features) @ p["Wx"]).reshape(steps, batch, -1)
    projected += p["b"]
    h = np.zeros((batch, hidden), x.dtype)
    c = np.zeros((batch, hidden), x.dtype)
    saved: dict[str, list[np.ndarray]] = {k: [] for k in ("i", "f", "g", "o", "c", "tc", "h")}
    for t in range(steps):
        z = projected[t] + h @ p["Wh"]
        i, f, o = (_sigmoid(z[:, k * hidden:(k + 1) * hidden]) for k in (0, 1, 3))
        g = np.tanh(z[:, 2 * hidden:3 * hidden])
        c = f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        for key, value in zip(saved, (i, f, g, o, c, tc, h), strict=True):
            saved[key].append(value)
    return saved


def _lstm_backward(p: Arrays, x: np.ndarray, s: dict[str, list[np.ndarray]],
                   g_h: np.ndarray) -> list[np.ndarray]:
    """BPTT from the cotangent of the last hidden state: gradients of Wx, Wh, b."""
    steps, batch, features = x.shape
    g_z = np.empty((steps, batch, p["Wh"].shape[1]), x.dtype)
    g_c = np.zeros_like(g_h)
    g_wh = np.zeros_like(p["Wh"])
    for t in range(steps - 1, -1, -1):
        i, f, g, o, tc = s["i"][t], s["f"][t], s["g"][t], s["o"][t], s["tc"][t]
        g_c += g_h * o * (1 - tc * tc)
        c_prev = s["c"][t - 1] if t else np.zeros_like(g_c)
        blocks = (g_c * g * i * (1 - i), g_c * c_prev * f * (1 - f), g_c * i * (1 - g * g),
                  g_h * tc * o * (1 - o))
        np.concatenate(blocks, axis=1, out=g_z[t])
        g_c = g_c * f
        if t:
            g_wh += s["h"][t - 1].T @ g_z[t]
        g_h = g_z[t] @ p["Wh"].T
    flat = g_z.reshape(steps * batch, -1)
    return [x.reshape(steps * batch, features).T @ flat, g_wh, flat.sum(axis=0)]


def lstm(seed: int = 0, steps: int = 32, hidden: int = 128, features: int = 64,
         batch: int = 32) -> Problem:
    """An LSTM (gates i, f, g, o fused, h_0 = c_0 = 0) run by ``gc.scan``; MSE of h_T against y."""
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        x, y = inputs
        cell = gc.nn.LSTMCell(hidden, p["Wx"], p["Wh"], p["b"])
        (h, _), _ = gc.scan(cell.recur, cell.zero_carry(batch), cell.project(x))
        return gc.mean(gc.square(h - y))

    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        x, y = inputs
        saved = _lstm_forward(p, x)
        d = saved["h"][-1] - y
        value = float(np.mean(d * d))
        return value, _lstm_backward(p, x, saved, d * f32(2.0 / d.size))

    bias = np.zeros(4 * hidden, f32)
    bias[hidden:2 * hidden] = 1.0  # forget gate open at first
    return Problem(
        name="lstm" if steps == 32 else f"lstm{steps}",
        shape=f"LSTM on gc.scan T={steps}, hidden {hidden}, input {features}, batch {batch}, "
              f"MSE of the last state, f32",
        params={
            "Wx": (rng.standard_normal((features, 4 * hidden)) / np.sqrt(features)).astype(f32),
            "Wh": (rng.standard_normal((hidden, 4 * hidden)) / np.sqrt(hidden)).astype(f32),
            "b": bias,
        },
        input_names=["x", "y"],
        inputs=[rng.standard_normal((steps, batch, features)).astype(f32),
                (rng.standard_normal((batch, hidden)) * 0.5).astype(f32)],
        lr=0.01,
        build_loss=build,
        numpy_loss_and_grads=loss_and_grads,
    )


# ---------------------------------------------------------------- logistic regression


def logreg(seed: int = 0) -> Problem:
    """Softmax regression on scikit-learn's bundled 8x8 digits (1797 images), full batch."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.ascontiguousarray(digits.data / 16.0, dtype=np.float64)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        xs, ys = inputs
        return gc.mean(gc.softmax_cross_entropy(xs @ p["W"] + p["b"], ys))

    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        xs, ys = inputs
        logits = xs @ p["W"]
        logits += p["b"]
        value, g = _xent_grad(logits, ys)
        return value, [xs.T @ g, g.sum(axis=0)]

    return Problem(
        name="logreg",
        shape="softmax regression on the 1797 digits, f64",
        params={"W": rng.standard_normal((64, 10)) * 0.01, "b": np.zeros(10)},
        input_names=["x", "labels"],
        inputs=[x, labels],
        lr=0.1,
        build_loss=build,
        numpy_loss_and_grads=loss_and_grads,
    )


# ---------------------------------------------------------------- convolutional network


def _conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid, stride-1 convolution by im2col: (output NCHW, the column view for the backward)."""
    kh, kw = w.shape[2:]
    cols = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # N,C,Ho,Wo,kh,kw
    out = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))  # N,Ho,Wo,O
    out += b
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), cols


def _conv_backward(g: np.ndarray, cols: np.ndarray, w: np.ndarray, input_grad: bool):
    """Gradients of ``_conv_forward`` for the output gradient ``g``: (dx or None, dw, db)."""
    dw = np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))  # O,C,kh,kw
    db = g.sum(axis=(0, 2, 3))
    if not input_grad:
        return None, dw, db
    n, _, ho, wo = g.shape
    kh, kw = w.shape[2:]
    dcols = np.tensordot(g, w, axes=([1], [0]))  # N,Ho,Wo,C,kh,kw
    dx = np.zeros((n, w.shape[1], ho + kh - 1, wo + kw - 1), dtype=g.dtype)
    for i in range(kh):  # col2im: each kernel offset adds one shifted slab
        for j in range(kw):
            dx[:, :, i:i + ho, j:j + wo] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx, dw, db


def _pool_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pooling, stride 2: (output, the windows as an N,C,H/2,2,W/2,2 view)."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2)
    return windows.max(axis=(3, 5)), windows


def _pool_backward(g: np.ndarray, out: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The gradient goes to each window's maximum; ties share it equally."""
    hit = windows == out[:, :, :, None, :, None]
    share = g / hit.sum(axis=(3, 5), dtype=g.dtype)  # an int count would promote to float64
    dx = hit * share[:, :, :, None, :, None]
    return dx.reshape(windows.shape[0], windows.shape[1], windows.shape[2] * 2, -1)


def cnn(seed: int = 0, batch: int = 64) -> Problem:
    """LeNet-5-like: conv 1->6 5x5, pool, conv 6->16 5x5, pool, dense 256-120-84-10, relu."""
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        x, labels = inputs
        h = gc.nn.max_pool2d(gc.relu(gc.nn.conv2d(x, p["c1"], p["c1b"])), 2)
        h = gc.nn.max_pool2d(gc.relu(gc.nn.conv2d(h, p["c2"], p["c2b"])), 2)
        h = gc.nn.flatten(h)
        h = gc.relu(h @ p["W0"] + p["b0"])
        h = gc.relu(h @ p["W1"] + p["b1"])
        return gc.mean(gc.softmax_cross_entropy(h @ p["W2"] + p["b2"], labels))

    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        x, labels = inputs
        a1, cols1 = _conv_forward(x, p["c1"], p["c1b"])
        r1 = np.maximum(a1, 0)
        q1, win1 = _pool_forward(r1)
        a2, cols2 = _conv_forward(q1, p["c2"], p["c2b"])
        r2 = np.maximum(a2, 0)
        q2, win2 = _pool_forward(r2)
        flat = q2.reshape(q2.shape[0], -1)
        value, d_flat, dense_grads = _dense_head(p, flat, labels)
        g2 = _pool_backward(d_flat.reshape(q2.shape), q2, win2) * (r2 > 0)
        dq1, dc2, dc2b = _conv_backward(g2, cols2, p["c2"], input_grad=True)
        g1 = _pool_backward(dq1, q1, win1) * (r1 > 0)
        _, dc1, dc1b = _conv_backward(g1, cols1, p["c1"], input_grad=False)
        return value, [dc1, dc1b, dc2, dc2b, *dense_grads]

    def _dense_head(p: Arrays, flat: np.ndarray, labels: np.ndarray):
        h0 = np.maximum(flat @ p["W0"] + p["b0"], 0)
        h1 = np.maximum(h0 @ p["W1"] + p["b1"], 0)
        value, g = _xent_grad(h1 @ p["W2"] + p["b2"], labels)
        dw2, db2 = h1.T @ g, g.sum(axis=0)
        g = (g @ p["W2"].T) * (h1 > 0)
        dw1, db1 = h0.T @ g, g.sum(axis=0)
        g = (g @ p["W1"].T) * (h0 > 0)
        dw0, db0 = flat.T @ g, g.sum(axis=0)
        return value, g @ p["W0"].T, [dw0, db0, dw1, db1, dw2, db2]

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(f32)

    return Problem(
        name="cnn" if batch == 64 else f"cnn{batch}",
        shape=f"LeNet-5-like, 28x28 inputs, batch {batch}, softmax-xent, f32",
        params={
            "c1": he((6, 1, 5, 5), 25), "c1b": np.zeros(6, f32),
            "c2": he((16, 6, 5, 5), 150), "c2b": np.zeros(16, f32),
            "W0": he((256, 120), 256), "b0": np.zeros(120, f32),
            "W1": he((120, 84), 120), "b1": np.zeros(84, f32),
            "W2": he((84, 10), 84), "b2": np.zeros(10, f32),
        },
        input_names=["x", "labels"],
        inputs=[rng.random((batch, 1, 28, 28), dtype=f32), rng.integers(0, 10, batch)],
        lr=0.01,
        build_loss=build,
        numpy_loss_and_grads=loss_and_grads,
    )


# ---------------------------------------------------------------- variational autoencoder


def _vae_numpy(rng: np.random.Generator):
    """-ELBO of a Bernoulli VAE by hand; ``eps`` is the last input, or drawn here from ``rng``."""

    def loss_and_grads(p: Arrays, inputs: Sequence[np.ndarray]) -> LossAndGrads:
        x = inputs[0]
        batch, latent = x.shape[0], p["bm"].shape[0]
        eps = inputs[1] if len(inputs) > 1 else rng.standard_normal((batch, latent), x.dtype)
        h = np.maximum(x @ p["W0"] + p["b0"], 0)
        mu, log_var = h @ p["Wm"] + p["bm"], h @ p["Wv"] + p["bv"]
        std = np.exp(0.5 * log_var)
        z = mu + std * eps
        d = np.maximum(z @ p["W1"] + p["b1"], 0)
        logits = d @ p["W2"] + p["b2"]
        bce = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
        var = std * std
        value = float((bce.sum() + 0.5 * np.sum(mu * mu + var - 1 - log_var)) / batch)
        g = (1 / (1 + np.exp(-logits)) - x) / batch  # d loss / d logits
        dW2, db2 = d.T @ g, g.sum(axis=0)
        g = (g @ p["W2"].T) * (d > 0)
        dW1, db1 = z.T @ g, g.sum(axis=0)
        g_z = g @ p["W1"].T
        g_mu = g_z + mu / batch
        g_lv = 0.5 * g_z * eps * std + 0.5 * (var - 1) / batch
        dWm, dbm, dWv, dbv = h.T @ g_mu, g_mu.sum(axis=0), h.T @ g_lv, g_lv.sum(axis=0)
        g_h = (g_mu @ p["Wm"].T + g_lv @ p["Wv"].T) * (h > 0)
        dW0, db0 = x.T @ g_h, g_h.sum(axis=0)
        return value, [dW0, db0, dWm, dbm, dWv, dbv, dW1, db1, dW2, db2]

    return loss_and_grads


def vae(seed: int = 0, batch: int = 128, noise_input: int = 0) -> Problem:
    """VAE 784-400-(20 means, 20 log-variances)-400-784, Bernoulli pixels, -ELBO, f32.

    graphcomp draws the reparameterisation noise in the graph (``gc.random.normal``) and the
    numpy step with ``Generator.standard_normal``, each at every step; with ``noise_input=1``
    the noise is an input instead (``eps``), the same array on both sides, so the gradients can
    be compared (tests/benchmarks/test_baselines.py).
    """
    rng = np.random.default_rng(seed)
    f32, latent = np.float32, 20

    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        x = inputs[0]
        h = gc.relu(x @ p["W0"] + p["b0"])
        mu, log_var = h @ p["Wm"] + p["bm"], h @ p["Wv"] + p["bv"]
        eps = inputs[1] if noise_input else gc.random.normal(mu.shape, "float32")
        z = mu + gc.exp(0.5 * log_var) * eps
        logits = gc.relu(z @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        reconstruction = gc.sum(gc.sigmoid_binary_cross_entropy(logits, x))
        kl = 0.5 * gc.sum(mu * mu + gc.exp(log_var) - 1.0 - log_var)
        return (reconstruction + kl) / batch

    def he(fan_in: int, fan_out: int, scale: float = 2.0) -> np.ndarray:
        return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(scale / fan_in)).astype(f32)

    params = {"W0": he(784, 400), "b0": np.zeros(400, f32),
              "Wm": he(400, latent, 1.0), "bm": np.zeros(latent, f32),
              "Wv": he(400, latent, 0.1), "bv": np.zeros(latent, f32),
              "W1": he(latent, 400), "b1": np.zeros(400, f32),
              "W2": he(400, 784, 1.0), "b2": np.zeros(784, f32)}
    inputs = [rng.random((batch, 784), dtype=f32)]
    if noise_input:
        inputs.append(rng.standard_normal((batch, latent), f32))
    return Problem(
        name="vae" if batch == 128 and not noise_input else f"vae{batch}",
        shape=f"784-400-20-400-784 VAE, Bernoulli -ELBO, batch {batch}, f32",
        params=params,
        input_names=["x", "eps"][:len(inputs)],
        inputs=inputs,
        lr=0.001,
        build_loss=build,
        numpy_loss_and_grads=_vae_numpy(rng),
    )


# ---------------------------------------------------------------- word2vec


def _w2v_unigram(vocab: int, size: int = 1 << 16) -> np.ndarray:
    """Zipf counts (1/rank) to the power 0.75, as a table of word ids."""
    weights = (1.0 / np.arange(1, vocab + 1)) ** 0.75
    bounds = np.cumsum(weights) / weights.sum()
    return np.searchsorted(bounds, (np.arange(size) + 0.5) / size).astype(np.int64)


def _w2v_gc_loss(table: np.ndarray, negatives: int):
    def build(p: dict[str, gc.Tensor], inputs: list[gc.Tensor]) -> gc.Tensor:
        center, context = inputs
        n = center.shape[0]
        drawn = gc.take(gc.constant(table), gc.random.randint(0, table.size, (n, negatives)), 0)
        targets = gc.concatenate([gc.expand_dims(context, 1), drawn], axis=1)
        u = gc.take(p["W_out"], targets, axis=0)
        v = gc.take(p["W_in"], center, axis=0)
        scores = gc.sum(u * gc.expand_dims(v, 1), axis=-1)
        sign = np.full((1, negatives + 1), -1.0, np.float32)
        sign[0, 0] = 1.0
        return gc.mean(gc.sum(gc.softplus(-gc.constant(sign) * scores), axis=-1))

    return build


def _w2v_numpy_rows(table: np.ndarray, negatives: int):
    """Loss and the gradients of the gathered rows (negatives drawn in numpy)."""
    rng = np.random.default_rng(1)

    def rows(p: Arrays, inputs: Sequence[np.ndarray]):
        center, context = inputs
        drawn = table[rng.integers(0, table.size, (center.size, negatives))]
        targets = np.concatenate([context[:, None], drawn], axis=1)
        u, v = p["W_out"][targets], p["W_in"][center]
        sign = np.where(np.arange(negatives + 1) == 0, 1.0, -1.0).astype(u.dtype)
        z = -sign * np.einsum("bkd,bd->bk", u, v)
        loss = float(np.mean(np.sum(np.logaddexp(0.0, z), axis=1)))
        g = (-sign / (1.0 + np.exp(-z)) / center.size).astype(u.dtype)  # d loss / d score
        return loss, targets, g[:, :, None] * v[:, None, :], np.einsum("bk,bkd->bd", g, u)

    return rows


class Word2VecNumpyStep:
    """word2vec by hand: gather, score, and SGD on the touched rows only (``np.add.at``)."""

    def __init__(self, problem: Problem, rows) -> None:
        self.params = {k: v.copy() for k, v in problem.params.items()}
        self._rows, self._lr = rows, np.float32(problem.lr)

    def __call__(self, center: np.ndarray, context: np.ndarray) -> float:
        loss, targets, g_u, g_v = self._rows(self.params, (center, context))
        w_out = self.params["W_out"]
        np.add.at(w_out, targets.ravel(), -self._lr * g_u.reshape(-1, w_out.shape[1]))
        np.add.at(self.params["W_in"], center, -self._lr * g_v)
        return loss


def word2vec(seed: int = 0, vocab: int = 1000, batch: int = 512, dim: int = 128,
             negatives: int = 5) -> Problem:
    """Skip-gram with negative sampling: two (vocab, dim) tables, SGD on gathered rows."""
    rng = np.random.default_rng(seed)
    table = _w2v_unigram(vocab)
    params = {"W_in": rng.uniform(-0.5 / dim, 0.5 / dim, (vocab, dim)).astype(np.float32),
              "W_out": (rng.standard_normal((vocab, dim)) * 0.01).astype(np.float32)}
    inputs = [table[rng.integers(0, table.size, batch)], table[rng.integers(0, table.size, batch)]]
    rows = _w2v_numpy_rows(table, negatives)

    def dense(p: Arrays, data: Sequence[np.ndarray]) -> LossAndGrads:
        loss, targets, g_u, g_v = rows(p, data)
        grads = [np.zeros_like(p["W_in"]), np.zeros_like(p["W_out"])]
        np.add.at(grads[0], data[0], g_v)
        np.add.at(grads[1], targets.ravel(), g_u.reshape(-1, dim))
        return loss, grads

    return Problem(
        "word2vec", f"vocab {vocab}, batch {batch}, dim {dim}, {negatives} negatives", params,
        ["center", "context"], inputs, 1.0, _w2v_gc_loss(table, negatives), dense,
        make_updates=lambda ps, gs: gc.optim.SGD(lr=1.0).apply_gradients(ps, gs),
        numpy_step=lambda problem: Word2VecNumpyStep(problem, rows),
    )


WORKLOADS: dict[str, Callable[..., Problem]] = {
    "tiny_mlp": tiny_mlp, "mlp": mlp, "ewise": ewise, "rnn": rnn, "logreg": logreg,
    "cnn": cnn, "lstm": lstm, "vae": vae, "word2vec": word2vec,
    "word2vec_100k": lambda **options: word2vec(**{"vocab": 100_000, **options}),
    "rnn_scan": rnn_scan,
}


def make(name: str, **options: int) -> Problem:
    """The named workload (``tiny_mlp``, ``mlp``, ``ewise``, ``rnn``, ``logreg``, ``cnn``,
    ``lstm``, ``vae``, ``word2vec``, ``rnn_scan``)."""
    return WORKLOADS[name](**options)


# ---------------------------------------------------------------- the two training steps


class NumpyStep:
    """The hand-written numpy training step: forward, backward, SGD update in place."""

    def __init__(self, problem: Problem) -> None:
        self.params = {k: v.copy() for k, v in problem.params.items()}
        self._grad = problem.numpy_loss_and_grads
        self._lr = np.asarray(problem.lr, dtype=next(iter(self.params.values())).dtype)

    def __call__(self, *inputs: np.ndarray) -> float:
        loss, grads = self._grad(self.params, inputs)
        for value, g in zip(self.params.values(), grads, strict=True):
            g *= self._lr
            value -= g
        return loss


def graphcomp_graph(problem: Problem) -> tuple[list[gc.Tensor], gc.Tensor, list, list]:
    """(placeholders, loss, parameters, gradients) of ``problem`` in a fresh graph."""
    with gc.Graph(name=problem.name):
        params = {k: gc.parameter(v, name=k) for k, v in problem.params.items()}
        inputs = [
            gc.placeholder(a.shape, a.dtype, name=n)
            for n, a in zip(problem.input_names, problem.inputs, strict=True)
        ]
        loss = problem.build_loss(params, inputs)
        grads = gc.grad(loss, list(params.values()))
    return inputs, loss, list(params.values()), grads


def graphcomp_updates(problem: Problem, params: list, grads: list) -> list:
    """The update pairs of ``problem``'s graphcomp step (dense SGD unless it says otherwise)."""
    if problem.make_updates is not None:
        with params[0].graph:
            return problem.make_updates(params, grads)
    return [(p, p - problem.lr * g) for p, g in zip(params, grads, strict=True)]


def numpy_step(problem: Problem) -> Callable[..., float]:
    """``problem``'s hand-written numpy step."""
    return NumpyStep(problem) if problem.numpy_step is None else problem.numpy_step(problem)


def graphcomp_step(problem: Problem, backend: str) -> gc.Function:
    """``problem``'s training step compiled by graphcomp: returns the loss, updates in place."""
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = graphcomp_updates(problem, params, grads)
    return gc.compile(inputs, loss, updates=updates, backend=backend)
