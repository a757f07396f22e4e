"""A scan body's carry-free work (``x_t @ Wx + b``, ``tanh(x_t) * u``) runs once, before the loop.

The batched scan is checked against the same loop unrolled in Python (float64, rtol 1e-10), on
the numpy and numba backends, forward and gradient, forward and reverse, for 4, 1 and 0 steps
in one compiled function; the structure through the graph that ``gc.scan`` builds.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ir import Graph
from graphcomp.loops import SCAN, ScanBody

RTOL = 1e-10
B, D, H = 2, 3, 4


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"Wx": rng.normal(size=(D, H)) * 0.5, "Wh": rng.normal(size=(H, H)) * 0.5,
            "b": rng.normal(size=H), "u": rng.normal(size=H)}


def _inputs(steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(steps)
    return [rng.normal(size=(steps, B, D)), rng.normal(size=(steps, B, H)),
            rng.normal(size=(B, H))]


def _step(p: dict[str, gc.Tensor]):
    def step(h: gc.Tensor, x: dict[str, gc.Tensor]) -> tuple:
        z = x["a"] @ p["Wx"] + p["b"]  # carry-free: one product before the loop
        g = gc.tanh(x["m"]) * p["u"]  # carry-free elementwise
        h = gc.tanh(z + h @ p["Wh"]) * g + x["m"] * h  # x["m"] is read in the loop too
        return h, (h, z)

    return step


def _build(steps: int | str, reverse: bool, unrolled: bool) -> tuple[Graph, list, list]:
    with gc.Graph() as graph:
        a = gc.placeholder((steps, "B", D), "float64", name="a")
        m = gc.placeholder((steps, "B", H), "float64", name="m")
        h0 = gc.placeholder(("B", H), "float64", name="h0")
        p = {k: gc.parameter(v, name=k) for k, v in _params().items()}
        step = _step(p)
        if unrolled:
            h, terms = h0, []
            order = range(int(steps))[::-1] if reverse else range(int(steps))
            for t in order:
                h, (y, z) = step(h, {"a": a[t], "m": m[t]})
                terms.append(gc.sum(y * y) + gc.sum(gc.sin(z)))
            loss = gc.sum(h) + sum(terms[1:], terms[0])
        else:
            h, (ys, zs) = gc.scan(step, h0, {"a": a, "m": m}, reverse=reverse)
            loss = gc.sum(h) + gc.sum(ys * ys) + gc.sum(gc.sin(zs))
        grads = gc.grad(loss, [p["Wx"], p["Wh"], p["b"], p["u"], a, m, h0])
    return graph, [a, m, h0], [loss, *grads]


def _unrolled(steps: int, reverse: bool) -> list[np.ndarray]:
    _, inputs, outputs = _build(steps, reverse, unrolled=True)
    return gc.compile(inputs, outputs, backend="numpy")(*_inputs(steps))


@pytest.fixture(scope="module", params=[False, True], ids=["forward", "reverse"])
def scanned(request: pytest.FixtureRequest) -> tuple:
    graph, inputs, outputs = _build("T", request.param, unrolled=False)
    functions = {b: gc.compile(inputs, outputs, backend=b) for b in ("numpy", "numba")}
    return request.param, graph, functions, outputs


def test_the_loop_keeps_only_the_carry_dependent_work(scanned: tuple):
    graph = scanned[1]
    (forward,) = [n for n in graph.nodes() if n.op == SCAN and n.inputs[0].name == "h0"]
    body: ScanBody = forward.attrs["body"]
    ops = [n.op for n in body.schedule]
    assert ops.count("matmul") == 1  # h @ Wh; x @ Wx runs before the loop
    assert [n.name for n in body.x_in] == ["x0", "x1", "x2"]  # m; z and g, batched
    invariants = {forward.inputs[i].name for i in range(4, len(forward.inputs))}
    assert invariants == {"Wh"}  # Wx, b and u are read before the loop only
    x_products = [n for n in graph.nodes() if n.op == "matmul" and n.inputs[1].name == "Wx"]
    assert [n.shape for n in x_products] == [("B*T", H)]  # one [T*B, D] @ [D, H] product
    listing = gc.format(scanned[3][0])
    assert f"reshape[shape=(B*T,{D})] %0" in listing  # shown before the scan in gc.format


def test_the_weight_gradient_is_one_contraction_after_the_loop(scanned: tuple):
    graph = scanned[1]
    backward = [n for n in graph.nodes() if n.op == SCAN and n.attrs["reverse"] != scanned[0]]
    for scan in backward:
        body: ScanBody = scan.attrs["body"]
        assert [n.op for n in body.schedule].count("matmul") == 1  # dz @ Whᵀ only
    dWx = [n for n in graph.nodes() if n.op == "matmul" and n.role == "adjoint"
           and n.inputs[0].op == "transpose" and n.inputs[0].inputs[0].op == "reshape"
           and n.shape == (D, H)]
    assert len(dWx) == 1  # aᵀ @ dz over all T*B rows


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("steps", [4, 1, 0])
def test_values_and_gradients_equal_the_unrolled_loop(scanned: tuple, backend: str, steps: int):
    reverse, _, functions, _ = scanned
    got = functions[backend](*_inputs(steps))
    if steps == 0:
        h0 = _inputs(0)[2]
        expected = [np.sum(h0), *(np.zeros_like(v) for v in _params().values()),
                    np.zeros((0, B, D)), np.zeros((0, B, H)), np.ones_like(h0)]
    else:
        expected = _unrolled(steps, reverse)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert np.shape(g) == np.shape(e)
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=1e-12)


def test_a_body_without_carry_free_work_is_traced_as_written():
    with gc.Graph() as graph:
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        h0 = gc.placeholder((B, H), "float64", name="h0")
        W = gc.parameter(_params()["Wh"], name="W")
        gc.scan(lambda h, x: (gc.tanh(h @ W + x),) * 2, h0, xs)
    (scan,) = [n for n in graph.nodes() if n.op == SCAN]
    assert scan.inputs[1] is xs.node
    assert [n.op for n in graph.nodes()].count("matmul") == 0


@pytest.mark.parametrize("steps", [3, 0])
def test_a_1d_step_and_a_carry_free_carry_leaf_equal_the_unrolled_loop(steps: int):
    """``x_t`` of shape (D,): the batched product is (T, D) @ (D, H) without reshapes; the
    carry leaf ``last`` (the step's ``tanh(x_t)``) is carry-free and computed before the loop."""
    p = _params()
    rng = np.random.default_rng(5)
    feed = [rng.normal(size=(steps, D)), rng.normal(size=H), rng.normal(size=D)]
    results = []
    for use_scan in (True, False):
        with gc.Graph() as graph:
            xs = gc.placeholder((steps, D), "float64", name="xs")
            h0 = gc.placeholder((H,), "float64", name="h0")
            l0 = gc.placeholder((D,), "float64", name="l0")
            Wx, Wh = gc.parameter(p["Wx"], name="Wx"), gc.parameter(p["Wh"], name="Wh")

            def step(c: tuple, x: gc.Tensor) -> tuple:
                h = gc.tanh(x @ Wx + c[0] @ Wh)
                return (h, gc.tanh(x)), None

            if use_scan:
                (h, last), _ = gc.scan(step, (h0, l0), xs)
            else:
                h, last = h0, l0
                for t in range(steps):
                    (h, last), _ = step((h, last), xs[t])
            loss = gc.sum(h * h) + gc.sum(last * last)
            outputs = [loss, *gc.grad(loss, [Wx, Wh, xs, h0, l0])]
            results.append(gc.compile([xs, h0, l0], outputs, backend="numpy")(*feed))
            if use_scan and steps:
                (scan,) = [n for n in graph.nodes() if n.op == SCAN and not n.attrs["reverse"]]
                body: ScanBody = scan.attrs["body"]
                assert [n.op for n in body.schedule].count("matmul") == 1
                assert body.carry_out[1] in body.x_in  # tanh(x_t), batched, read as x
    for got, expected in zip(*results, strict=True):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-12)
