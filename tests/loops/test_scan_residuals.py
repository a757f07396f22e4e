"""The scan gradient reads stacked residuals and contracts invariants' gradients after the loop.

Values are checked against a backpropagation through time written with numpy and against the
loop unrolled (float64, rtol 1e-10); the structure through the graph the gradient builds.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numpy_backend import evaluate
from graphcomp.inspect.bytes import format_bytes, scan_residual_bytes
from graphcomp.ir import Node
from graphcomp.loops import SCAN, ScanBody, output_count
from graphcomp.runtime.binding import check_inputs

RTOL = 1e-10
B, H = 2, 3


def _values(steps: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(H, H)) * 0.5, "w": rng.normal(size=H),
            "V": rng.normal(size=(B, H)), "xs": rng.normal(size=(steps, B, H)),
            "h0": rng.normal(size=(B, H))}


def _backward_scans(graph_nodes: list[Node]) -> list[Node]:
    return [n for n in graph_nodes if n.op == SCAN and n.attrs["reverse"]]


def _numpy_bptt(v: dict) -> np.ndarray:
    """dW of sum(hs) for h_t = tanh(h_{t-1} @ W + x_t): the sum over t of h_{t-1}ᵀ dz_t."""
    hs, h = [], v["h0"]
    for x in v["xs"]:
        hs.append(h)
        h = np.tanh(h @ v["W"] + x)
    g, dW = np.zeros_like(h), np.zeros_like(v["W"])
    for t in range(len(v["xs"]) - 1, -1, -1):
        h_next = np.tanh(hs[t] @ v["W"] + v["xs"][t])
        dz = (g + 1.0) * (1.0 - h_next * h_next)
        dW += hs[t].T @ dz
        g = dz @ v["W"].T
    return dW


def test_the_hoisted_weight_gradient_equals_the_per_step_sum():
    with gc.Graph() as graph:
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        h0 = gc.placeholder((B, H), "float64", name="h0")
        W = gc.parameter(_values(1)["W"], name="W")
        _, hs = gc.scan(lambda h, x: (gc.tanh(h @ W + x),) * 2, h0, xs)
        gW = gc.grad(gc.sum(hs), W)
        f = gc.compile([xs, h0], gW, backend="numpy")
    (backward,) = _backward_scans(list(graph.nodes()))
    body: ScanBody = backward.attrs["body"]
    ops = [n.op for n in body.schedule]
    # no replay of the forward (tanh, h @ W), one product per step (dz @ Wᵀ, Wᵀ made outside)
    assert "tanh" not in ops and ops.count("matmul") == 1 and "transpose" not in ops
    assert gW.node.op == "matmul" and gW.node.inputs[0].op == "transpose"
    for steps in (5, 1, 0):
        v = _values(steps)
        W.assign(v["W"])
        np.testing.assert_allclose(f(v["xs"], v["h0"]), _numpy_bptt(v), rtol=RTOL, atol=1e-14)


def _fan_out_case(use_scan: bool, v: dict, reverse: bool, backend: str) -> list[np.ndarray]:
    """A body using W twice (two hoisted products), w broadcast (a hoisted sum) and V
    elementwise (accumulated in the loop)."""
    steps = v["xs"].shape[0]
    with gc.Graph():
        xs = gc.placeholder(("T" if use_scan else steps, B, H), "float64", name="xs")
        h0 = gc.placeholder((B, H), "float64", name="h0")
        W, w, V = (gc.parameter(v[k], name=k) for k in ("W", "w", "V"))

        def step(h: gc.Tensor, x: gc.Tensor) -> tuple:
            z = h @ W + gc.sin(h) @ W + h * w + x * V
            return gc.tanh(z), gc.sum(z * z, axis=1)

        if use_scan:
            h, ys = gc.scan(step, h0, xs, reverse=reverse)
        else:
            h, outs = h0, [None] * steps
            for t in range(steps - 1, -1, -1) if reverse else range(steps):
                h, outs[t] = step(h, xs[t])
            ys = gc.stack(outs)
        loss = gc.sum(ys) + gc.sum(h * h)
        grads = gc.grad(loss, [W, w, V, xs, h0])
        return gc.compile([xs, h0], [loss, *grads], backend=backend)(v["xs"], v["h0"])


@pytest.mark.parametrize("reverse", [False, True])
def test_fan_out_broadcast_and_elementwise_invariants_equal_the_unrolled_loop(reverse: bool):
    v = _values(4)
    for a, b in zip(_fan_out_case(True, v, reverse, "numpy"),
                    _fan_out_case(False, v, reverse, "numpy"), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)


def test_fan_out_on_numba_matches_numpy_for_lengths_3_and_0():
    for steps in (3, 0):
        v = _values(steps, seed=steps)
        for a, b in zip(_fan_out_case(True, v, False, "numba"),
                        _fan_out_case(True, v, False, "numpy"), strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)


def _bytes_at(formula: int | str, binding: dict[str, int]) -> int:
    if isinstance(formula, int):
        return formula
    total = 0
    for term in formula.split(" + "):
        factors = term.split("*")
        value = int(factors[0])
        for symbol in factors[1:]:
            value *= binding[symbol]
        total += value
    return total


def test_reported_residual_bytes_equal_the_bytes_the_scan_stores():
    with gc.Graph():
        xs = gc.placeholder(("T", "B", H), "float64", name="xs")
        h0 = gc.placeholder(("B", H), "float64", name="h0")
        W, w = gc.parameter(_values(1)["W"], name="W"), gc.parameter(np.ones(H), name="w")

        def step(c: tuple, x: gc.Tensor) -> tuple:
            h, s = c
            z = gc.sigmoid(h @ W + x) * gc.tanh(s * w)
            return (z, s + z), None

        (h, s), _ = gc.scan(step, (h0, h0), xs)
        scan = h.node.inputs[0]
        A = gc.adjoint_graph(gc.sum(h * s), [W, w])
        f = gc.compile([xs, h0], [gc.Tensor(h.graph.node(i)) for i in A.graph["gradients"]],
                       backend="numpy")
    stacks = [n for n in A if A.nodes[n].get("bytes_per_step")]
    assert len(stacks) >= 3  # a carry and body values (sigmoid, tanh, ...)
    binding = {"T": 5, "B": B}
    arrays, _ = check_inputs(f.program.inputs, [np.ones((5, B, H)), np.ones((B, H))],
                             f.program.dims)
    values = evaluate(f.program, arrays, binding)
    n_carry, n_ys = output_count(scan)
    stored = values[scan.id][n_carry + n_ys:]  # what the forward scan stacked
    reported = {h.graph.node(n).attrs["index"] - n_carry - n_ys: A.nodes[n] for n in stacks}
    for index, array in enumerate(stored):
        if index not in reported:
            assert array.nbytes == 0  # nothing reads it: not stored
            continue
        assert array.nbytes == _bytes_at(reported[index]["bytes"], binding)
        assert array.nbytes == 5 * _bytes_at(reported[index]["bytes_per_step"], binding)
    per_step, total = (_bytes_at(format_bytes(b), binding) for b in scan_residual_bytes(scan))
    assert total == 5 * per_step == sum(a.nbytes for a in stored)


@gc.custom_vjp
def _scaled_tanh(x: gc.Tensor) -> gc.Tensor:
    return gc.tanh(x)


@_scaled_tanh.defvjp
def _scaled_tanh_vjp(x: gc.Tensor, out: gc.Tensor, g: gc.Tensor) -> gc.Tensor:
    return 3.0 * g * (1.0 - out * out)  # three times the true gradient: the rule must be kept


def test_a_custom_vjp_rule_inside_the_body_is_what_the_gradient_uses():
    v = _values(3)
    results = []
    for use_scan in (True, False):
        with gc.Graph():
            xs = gc.placeholder((3, B, H), "float64", name="xs")
            W = gc.parameter(v["W"], name="W")
            step = lambda h, x: (_scaled_tanh(h @ W + x),) * 2  # noqa: E731
            if use_scan:
                _, hs = gc.scan(step, gc.constant(v["h0"]), xs)
            else:
                h, outs = gc.constant(v["h0"]), []
                for t in range(3):
                    h, y = step(h, xs[t])
                    outs.append(y)
                hs = gc.stack(outs)
            results.append(gc.compile([xs], gc.grad(gc.sum(hs), [W, xs]),
                                      backend="numpy")(v["xs"]))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("driver_jit", [False, True], ids=["python-loop", "scan_loop"])
def test_numba_stacks_only_the_carries_the_gradient_reads(driver_jit: bool):
    from graphcomp.backends.numba.stages import ScanLoop

    v = _values(4)
    with gc.Graph():
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        W = gc.parameter(v["W"], name="W")

        def step(c: tuple, x: gc.Tensor) -> tuple:
            h = gc.tanh(c[0] @ W + x)
            return (h, c[1] + h), None

        (h, s), _ = gc.scan(step, (gc.constant(v["h0"]), gc.constant(v["h0"])), xs)
        outputs = [h, s, gc.grad(gc.sum(s * s), W)]
        expected = gc.compile([xs], outputs, backend="numpy")(v["xs"])
        f = gc.compile([xs], outputs, backend="numba", driver_jit=driver_jit)
    got = f(v["xs"])
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)
    (forward,) = [stage for stage in f._executable.stages
                  if isinstance(stage, ScanLoop) and not stage.op.attrs["reverse"]]
    assert forward.stacked == (0,)  # h_{t-1} for W's gradient; s is never read
    (bound,) = forward._bound.values()
    assert [len(stack) for stack in bound.stacks] == [4, 0]


def _rnn_case(kind: str, backend: str, **options: bool) -> tuple[gc.Function, Node, dict]:
    """rnn_scan-like bodies: h_t = tanh(h_{t-1} W + x_t), whose new carry h_t is a body
    value the gradient reads ("last": only the final h is used), a y the loss reads
    ("ys"), or both in a reverse scan ("reverse"). Returns the function of the gradients
    and values, the forward scan node and the adjoint graph."""
    v = _values(1)
    with gc.Graph():
        xs = gc.placeholder(("T", "B", H), "float64", name="xs")
        h0 = gc.placeholder(("B", H), "float64", name="h0")
        W = gc.parameter(v["W"], name="W")
        h, hs = gc.scan(lambda c, x: (gc.tanh(c @ W + x),) * 2, h0, xs,
                        reverse=kind == "reverse")
        loss = gc.sum(h * h) if kind == "last" else gc.sum(hs * hs) + gc.sum(gc.sin(h))
        A = gc.adjoint_graph(loss, [W, h0])
        gradients = [gc.Tensor(h.graph.node(i)) for i in A.graph["gradients"]]
        f = gc.compile([xs, h0], [loss, *gradients], backend=backend, **options)
    return f, h.node.inputs[0], A


def _held_beyond_outputs(read_ys: list[np.ndarray], stacks: list[np.ndarray]) -> int:
    """Bytes of the distinct buffers under the stacks and the ys read, less the ys' own."""
    buffers = {}
    for array in [*read_ys, *stacks]:
        while array.base is not None:
            array = array.base
        buffers[id(array)] = array.nbytes
    return sum(buffers.values()) - sum(y.nbytes for y in read_ys)


@pytest.fixture(scope="module", params=["last", "ys", "reverse"])
def rnn_cases(request: pytest.FixtureRequest) -> dict:
    return {"numpy": _rnn_case(request.param, "numpy"),
            "numba": _rnn_case(request.param, "numba"),
            "scan_loop": _rnn_case(request.param, "numba", driver_jit=True)}


@pytest.mark.parametrize("steps", [5, 1, 0])
def test_the_memory_stacks_hold_is_what_the_report_prints(rnn_cases: dict, steps: int):
    """h_{t-1} and h_t in one buffer of T + 1 rows on both backends, and counted so."""
    from graphcomp.backends.numba.stages import ScanLoop

    rng = np.random.default_rng(steps)
    feed = [rng.normal(size=(steps, B, H)), rng.normal(size=(B, H))]
    binding = {"T": steps, "B": B}
    f, scan, A = rnn_cases["numpy"]
    n_carry, n_ys = output_count(scan)
    read = {n.attrs["index"] for n in f.program.schedule
            if n.op == "scan_output" and n.inputs[0] is scan}
    arrays, _ = check_inputs(f.program.inputs, feed, f.program.dims)
    outputs = evaluate(f.program, arrays, binding)[scan.id]
    read_ys = [outputs[i] for i in sorted(read) if n_carry <= i < n_carry + n_ys]
    stacks = [outputs[i] for i in sorted(read) if i >= n_carry + n_ys]
    _, total = scan_residual_bytes(scan)
    reported = _bytes_at(format_bytes(total), binding)
    assert _held_beyond_outputs(read_ys, stacks) == reported
    assert reported == 8 * B * H * (steps + 1 if len(read_ys) == 0 else 1)  # h_0 ... h_T
    residuals = [A.nodes[n] for n in A if A.nodes[n]["role"] == "residual"]
    assert _bytes_at(A.graph["residual_bytes"], binding) == sum(
        _bytes_at(r["bytes"], binding) for r in residuals)

    for driver in ("numba", "scan_loop"):  # a Python loop, then an njit one
        compiled = rnn_cases[driver][0]
        for a, b in zip(compiled(*feed), f(*feed), strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)
        forward = next(s for s in compiled._executable.stages  # the first loop: the forward's
                       if isinstance(s, ScanLoop))
        assert forward.op.attrs["reverse"] == scan.attrs["reverse"]
        bound = next(b for key, b in forward._bound.items() if key[0] == steps)
        assert (bound.native is not None) == (driver == "scan_loop")
        kept, stacked = bound.ys[:forward.real_ys], [*bound.ys[forward.real_ys:], *bound.stacks]
        assert _held_beyond_outputs(kept, stacked) == reported
