"""gc.scan on the numba backend against the numpy backend (the oracle), float64, rtol 1e-10.

The numpy backend's scan equals the same loop unrolled (tests/loops/test_scan.py), so these
tests also tie the numba gradients to the unrolled ones. Compiled functions are shared within
the module: Numba's compile time dominates.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scan_bodies import apply_body, bodies, lstm_step

import graphcomp as gc

RTOL = 1e-10
B, H = 2, 3


def _assert_close(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13)


def _both(inputs: list, outputs: list, updates: list | None = None) -> tuple:
    return (gc.compile(inputs, outputs, updates=updates, backend="numpy"),
            gc.compile(inputs, outputs, updates=updates, backend="numba"))


def _rnn(reverse: bool) -> tuple[gc.Function, gc.Function]:
    rng = np.random.default_rng(1)
    with gc.Graph():
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        h0 = gc.placeholder((B, H), "float64", name="h0")
        W, U = (gc.parameter(rng.normal(size=(H, H)) * 0.5, name=k) for k in "WU")
        b = gc.parameter(rng.normal(size=H), name="b")
        h, hs = gc.scan(lambda h, x: (gc.tanh(h @ W + x @ U + b),) * 2, h0, xs,
                        reverse=reverse)
        loss = gc.sum(hs * hs) + gc.sum(gc.sin(h))
        return _both([xs, h0], [loss, h, hs, *gc.grad(loss, [W, U, b, xs, h0])])


@pytest.fixture(scope="module", params=[False, True], ids=["forward", "reverse"])
def rnn(request: pytest.FixtureRequest) -> tuple[gc.Function, gc.Function]:
    return _rnn(request.param)


@pytest.mark.parametrize("steps", [4, 0, 1, 7])
def test_tanh_rnn_values_and_gradients_match_numpy_for_any_length(rnn: tuple, steps: int):
    """One compiled function, the symbolic T bound to several lengths, 0 included."""
    rng = np.random.default_rng(steps)
    feed = [rng.normal(size=(steps, B, H)), rng.normal(size=(B, H))]
    reference, compiled = rnn
    _assert_close(compiled(*feed), reference(*feed))
    assert compiled.backend == "numba"


def test_a_carry_that_is_also_a_stacked_y_is_stored_once(rnn: tuple):
    """h_t is the new carry and a y: its stack and the carries' stack share one buffer."""
    from graphcomp.backends.numba.stages import ScanLoop

    rng = np.random.default_rng(5)
    feed = [rng.normal(size=(5, B, H)), rng.normal(size=(B, H))]
    reference, compiled = rnn
    _assert_close(compiled(*feed), reference(*feed))
    loops = [s for s in compiled._executable.stages if isinstance(s, ScanLoop)]
    bound = next(iter(loops[0]._bound[k] for k in loops[0]._bound if k[0] == 5))
    (carry, y), = bound.shared.items()
    assert np.shares_memory(bound.stacks[carry], bound.ys[y])
    assert bound.stacks[carry].shape == bound.ys[y].shape == (5, B, H)


def test_rnn_gradients_equal_the_unrolled_loop_on_numba():
    """The issue's check on the compiled backend itself: scan against the loop unrolled."""
    rng = np.random.default_rng(7)
    values = {k: rng.normal(size=(H, H)) * 0.5 for k in "WU"}
    feed = [rng.normal(size=(4, B, H)), rng.normal(size=(B, H))]
    results = []
    for use_scan in (True, False):
        with gc.Graph():
            xs = gc.placeholder((4, B, H), "float64", name="xs")
            h0 = gc.placeholder((B, H), "float64", name="h0")
            W, U = (gc.parameter(values[k], name=k) for k in "WU")

            def step(h: gc.Tensor, x: gc.Tensor) -> tuple:
                return (gc.tanh(h @ W + x @ U),) * 2

            if use_scan:
                h, hs = gc.scan(step, h0, xs)
            else:
                h, outs = h0, []
                for t in range(4):
                    h, y = step(h, xs[t])
                    outs.append(y)
                hs = gc.stack(outs)
            loss = gc.sum(hs * hs) + gc.sum(gc.sin(h))
            outputs = [loss, hs, *gc.grad(loss, [W, U, xs, h0])]
            results.append(gc.compile([xs, h0], outputs, backend="numba")(*feed))
    _assert_close(results[0], results[1])


def test_the_source_lists_each_stage_and_each_body_loop_once(rnn: tuple):
    compiled = rnn[1]
    heads = [line for line in compiled.source.splitlines() if line.startswith("# ---- stage")]
    # x @ U + b for every step (loops/batching.py), the forward scan, the ops between, the
    # backward scan, the last ops
    assert len(heads) == 5 and "the ops between scans" in heads[0]
    first_reversed = "reverse=True" in heads[1]
    assert f"scan, reverse={not first_reversed}" in heads[3]
    assert "a Python loop over the body's step" in heads[1]
    assert "def scan_loop(" not in compiled.source
    listing = gc.kernel_listing(compiled)
    assert listing.count("# loop: %") == 2 and "    k0(" in listing and "tanh" in listing


def test_njit_drivers_run_the_loop_natively():
    """driver_jit=True: the bodies' modules get scan_loop, one native call per loop."""
    rng = np.random.default_rng(6)
    with gc.Graph():
        xs = gc.placeholder((None, B, H), "float64", name="xs")
        W = gc.parameter(rng.normal(size=(H, H)) * 0.5, name="W")
        h, hs = gc.scan(lambda h, x: (gc.tanh(h @ W + x),) * 2,
                        gc.constant(np.zeros((B, H))), xs, reverse=True)
        outputs = [h, hs, *gc.grad(gc.sum(hs * hs), [W, xs])]
        reference = gc.compile([xs], outputs, backend="numpy")
        compiled = gc.compile([xs], outputs, backend="numba", driver_jit=True)
    assert compiled.source.count("def scan_loop(") == 2
    for steps in (3, 0):
        feed = rng.normal(size=(steps, B, H))
        _assert_close(compiled(feed), reference(feed))


def test_lstm_with_a_dict_carry_values_and_gradients_match_numpy():
    rng = np.random.default_rng(2)
    with gc.Graph():
        xs = gc.placeholder((None, B, H), "float64", name="xs")
        p = {k: gc.parameter(rng.normal(size=s) * 0.4, name=k)
             for k, s in (("Wx", (H, 4 * H)), ("Wh", (H, 4 * H)), ("b", (4 * H,)))}
        init = {"h": gc.constant(np.zeros((B, H))), "c": gc.constant(np.ones((B, H)))}
        carry, ys = gc.scan(lstm_step(p), init, xs)
        loss = gc.sum(ys["h"] * ys["h"]) + gc.sum(ys["norm"]) + gc.sum(carry["c"])
        grads = gc.grad(loss, [*p.values(), xs])
        reference, compiled = _both([xs], [loss, carry["h"], ys["norm"], *grads])
    for steps in (5, 0):
        feed = rng.normal(size=(steps, B, H))
        _assert_close(compiled(feed), reference(feed))


def _training(backend: str) -> tuple[gc.Function, list]:
    rng = np.random.default_rng(3)
    with gc.Graph():
        xs = gc.placeholder(("T", B, H), "float64", name="xs")
        target = gc.placeholder((B, H), "float64", name="target")
        W = gc.parameter(rng.normal(size=(H, H)) * 0.5, name="W")
        U = gc.parameter(rng.normal(size=(H, H)) * 0.5, name="U")
        h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x @ U),) * 2,
                       gc.constant(np.zeros((B, H))), xs)
        loss = gc.mean(gc.square(h - target))
        params = [W, U]
        updates = [(p, p - 0.5 * g) for p, g in zip(params, gc.grad(loss, params), strict=True)]
        return gc.compile([xs, target], loss, updates=updates, backend=backend), params


def test_a_training_loop_with_updates_matches_numpy():
    runs = []
    for backend in ("numpy", "numba"):
        step, params = _training(backend)
        rng = np.random.default_rng(4)
        losses = [step(rng.normal(size=(t, B, H)), rng.normal(size=(B, H))) for t in (3, 5, 3)]
        runs.append([np.asarray(losses), *[p.value for p in params]])
    _assert_close(runs[1], runs[0])
    assert runs[0][0][0] != runs[0][0][2]  # the parameters moved between steps


def test_a_background_compile_of_a_scan_compiles_every_stage_in_another_process(
        tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHCOMP_CACHE_DIR", str(tmp_path / "cache"))
    with gc.Graph():
        xs = gc.placeholder((None, H), "float64", name="xs")
        c, ys = gc.scan(lambda c, x: (c * 0.5 + x, c), gc.constant(np.zeros(H)), xs)
        f = gc.compile([xs], [c * 2.0, ys], backend="numba", compile_mode="background")
    feed = np.arange(4 * H, dtype=np.float64).reshape(4, H)
    expected = gc.compile([xs], [c * 2.0, ys], backend="numpy")(feed)
    assert f.backend_in_use == "numpy"
    _assert_close(f(feed), expected)
    assert f.wait(timeout=300) and f.backend_in_use == "numba" and f.compiled_elsewhere
    # Every stage came from the cache the other process filled: nothing compiled here.
    assert f.cache_hit
    _assert_close(f(feed), expected)


def test_nested_scans_match_numpy():
    rng = np.random.default_rng(5)
    with gc.Graph():
        xs = gc.placeholder((None, 2, H), "float64", name="xs")
        W = gc.parameter(rng.normal(size=(H, H)) * 0.5, name="W")

        def outer(c: gc.Tensor, row: gc.Tensor) -> tuple:
            inner, _ = gc.scan(lambda d, x: (gc.tanh(d @ W + x), d), c, row)
            return inner, gc.sum(inner)

        c, ys = gc.scan(outer, gc.constant(np.zeros(H)), xs)
        loss = gc.sum(c * c) + gc.sum(ys)
        reference, compiled = _both([xs], [loss, c, ys, *gc.grad(loss, [W, xs])])
    feed = rng.normal(size=(3, 2, H))
    _assert_close(compiled(feed), reference(feed))


@settings(max_examples=4, deadline=None)  # each example compiles new kernels
@given(bodies(3), st.booleans())
def test_generated_bodies_agree_across_backends(steps: list, reverse: bool):
    rng = np.random.default_rng(len(steps))
    with gc.Graph():
        xs = gc.placeholder((None, 2), "float64", name="xs")
        w = gc.parameter(rng.normal(size=2), name="w")
        body = lambda c, x: (apply_body(steps, c, x, w), c * x)  # noqa: E731
        c, ys = gc.scan(body, gc.constant(np.ones(2)), xs, reverse=reverse)
        loss = gc.sum(c * c) + gc.sum(ys)
        reference, compiled = _both([xs], [c, ys, *gc.grad(loss, [w, xs])])
    for length in (3, 0):
        feed = rng.normal(size=(length, 2))
        _assert_close(compiled(feed), reference(feed))


def test_length_without_xs_a_carry_passed_through_and_a_computed_invariant():
    rng = np.random.default_rng(8)
    with gc.Graph():
        w = gc.placeholder((3,), "float64", name="w")
        doubled = w * 2.0  # built outside the body: computed once, by the stage before

        def body(c: tuple, _: None) -> tuple:
            return (c[0] * 0.5 + doubled, c[1]), c[1]  # c[1] and y: the carry as it came

        c, ys = gc.scan(body, (gc.constant(np.ones(3)), w), length=4)
        outputs = [c[0], c[1], ys, *gc.grad(gc.sum(c[0]) + gc.sum(ys), [w])]
        reference, compiled = _both([w], outputs)
    feed = rng.normal(size=3)
    _assert_close(compiled(feed), reference(feed))


def test_swapped_carries_a_y_that_is_x_and_a_0d_integer_carry():
    rng = np.random.default_rng(9)
    with gc.Graph():
        xs = gc.placeholder((None, 2), "float64", name="xs")
        a0 = gc.placeholder((2,), "float64", name="a0")
        (p, q), ys = gc.scan(lambda c, x: ((c[1], c[0] + x), x), (a0, a0 * 3.0), xs)
        n, _ = gc.scan(lambda c, x: (c + 1, None), gc.constant(np.array(0, np.int64)), xs)
        loss = gc.sum(p * q) + gc.sum(ys * ys)
        reference, compiled = _both([xs, a0], [p, q, ys, n, *gc.grad(loss, [xs, a0])])
    for steps in (5, 0):
        feed = [rng.normal(size=(steps, 2)), rng.normal(size=2)]
        _assert_close(compiled(*feed), reference(*feed))


def test_a_body_with_large_products_takes_the_lanes_its_loop_holds(monkeypatch):
    """Products of >= 2**19 multiply-adds in a body split in two lanes while the loop holds
    them (an idle core is assumed here: the load test is the machine's)."""
    from graphcomp.backends.numba import stages

    monkeypatch.setattr(stages, "_core_idle", lambda: True)
    rng = np.random.default_rng(3)
    batch, hidden = 32, 128
    with gc.Graph():
        xs = gc.placeholder(("T", batch, hidden), "float64", name="xs")
        h0 = gc.placeholder((batch, hidden), "float64", name="h0")
        W = gc.parameter(rng.normal(size=(hidden, hidden)) / hidden, name="W")
        h, _ = gc.scan(lambda h, x: (gc.tanh(h @ W + x), None), h0, xs)
        loss = gc.sum(h * h)
        reference, compiled = _both([xs, h0], [loss, h, *gc.grad(loss, [W, xs, h0])])
    loops = [s for s in compiled._executable.stages if isinstance(s, stages.ScanLoop)]
    assert loops and all(loop.executable.module.uses_lanes for loop in loops)
    for steps in (4, 1):
        feed = [rng.normal(size=(steps, batch, hidden)), rng.normal(size=(batch, hidden))]
        _assert_close(compiled(*feed), reference(*feed))
