"""gc.random: cross-backend identity, streams and state, checkpoints, statistics, gradients,
errors. One graph and one pair of compiled functions serve most tests (numba compiles once).

Statistical thresholds. Each test draws n values at a fixed seed, so it is deterministic; the
thresholds say how unlikely a failure would be for a correct generator at a random seed, and
how large a defect they still catch. Moments: the sample mean (and variance) lies within 5
standard errors of the true value with probability > 1 - 6e-7 (normal approximation, n >= 2e5).
Kolmogorov-Smirnov: p > 1e-3, which a correct generator misses for 1 seed in 1000; with
n = 2e5 it rejects any distribution whose CDF is off by more than ~0.0044 (1.95 / sqrt(n)).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import graphcomp as gc

N_STAT = 200_000


def _ulps(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a.astype(np.float64) - b) / np.spacing(np.abs(b))).max(initial=0.0))


@pytest.fixture(scope="module")
def model():
    with gc.Graph(seed=5) as g:
        x = gc.placeholder((None, 3), "float32", name="x")
        n = x.shape[0]
        outs = [
            gc.random.uniform((n, 3), "float32"), gc.random.uniform((n, 5), "float64"),
            gc.random.normal((n, 3), "float32"), gc.random.normal((n, 7), "float64"),
            gc.random.randint(-3, 1000, (n, 6), "int32"), gc.random.bernoulli(0.3, (n, 4)),
            x + gc.random.normal((n, 3), "float32", std=0.5),
        ]
    return {"graph": g, "x": x, "outs": outs,
            "numpy": gc.compile([x], outs, backend="numpy"),
            "numba": gc.compile([x], outs, backend="numba")}


def _calls(model, backend: str, batch: int, calls: int = 2, seed: int = 5) -> list:
    gc.seed(model["graph"], seed)
    x = np.zeros((batch, 3), np.float32)
    return [model[backend](x) for _ in range(calls)]


@pytest.mark.parametrize("batch", [1, 6])
def test_numpy_and_numba_draw_the_same_numbers(model, batch):
    expected, got = _calls(model, "numpy", batch), _calls(model, "numba", batch)
    for call_np, call_nb in zip(expected, got, strict=True):
        for a, b in zip(call_np, call_nb, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype == np.float64:
                assert _ulps(b, a) <= 2  # normals: numpy's log against fastmath.py's
            else:
                np.testing.assert_array_equal(a, b)


def test_streams_continue_when_a_function_switches_backend(model):
    numpy_first = _calls(model, "numpy", 4, calls=1)[0]
    numba_second = model["numba"](np.zeros((4, 3), np.float32))
    gc.seed(model["graph"], 5)
    both = [model["numba"](np.zeros((4, 3), np.float32)) for _ in range(2)]
    np.testing.assert_array_equal(numpy_first[0], both[0][0])
    np.testing.assert_array_equal(numba_second[0], both[1][0])


def test_successive_calls_and_two_nodes_differ(model):
    first, second = _calls(model, "numba", 8)
    assert not np.array_equal(first[0], second[0])
    assert not np.array_equal(first[2], first[6])  # two normal nodes: two streams


def test_same_seed_same_sequence_in_two_fresh_graphs():
    def run(seed: int) -> list:
        with gc.Graph(seed=seed):
            z = gc.random.normal((4,), "float64")
            f = gc.compile([], z, backend="numpy")
        return [f() for _ in range(3)]
    a, b, c = run(9), run(9), run(10)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_checkpoint_restores_the_stream(tmp_path):
    with gc.Graph(seed=2):
        w = gc.parameter(np.ones(3), name="w")
        y = w * gc.random.normal((3,), "float64")
        f = gc.compile([], y, backend="numpy")
    f()
    gc.save(tmp_path / "ck.npz", [w])
    after_save = [f() for _ in range(2)]
    gc.load(tmp_path / "ck.npz", [w])
    np.testing.assert_array_equal(after_save, [f() for _ in range(2)])


def test_old_checkpoint_without_state_loads(tmp_path):
    with gc.Graph():
        w = gc.parameter(np.ones(2), name="w")
        gc.save(tmp_path / "plain.npz", [w])
    with gc.Graph(seed=1):
        w2 = gc.parameter(np.zeros(2), name="w")
        z = gc.random.uniform((2,), "float64")
        f = gc.compile([], z, backend="numpy")
    first = f()
    gc.load(tmp_path / "plain.npz", [w2])  # no random.state in the file: left as it is
    assert w2.graph.parameter_values[w2.node.id].tolist() == [1.0, 1.0]
    assert not np.array_equal(first, f())


def _draw(make, n: int = N_STAT, seed: int = 123) -> np.ndarray:
    with gc.Graph(seed=seed):
        f = gc.compile([], make(n), backend="numpy")
    return f()


def test_uniform_moments_and_ks():
    for dtype in ("float32", "float64"):
        u = _draw(lambda n, dt=dtype: gc.random.uniform((n,), dt)).astype(np.float64)
        assert u.min() >= 0.0 and u.max() < 1.0
        assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / N_STAT)
        assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_normal_moments_and_ks():
    for dtype in ("float32", "float64"):
        z = _draw(lambda n, dt=dtype: gc.random.normal((n,), dt, mean=1.5, std=2.0))
        z = z.astype(np.float64)
        assert abs(z.mean() - 1.5) < 5 * 2.0 / np.sqrt(N_STAT)
        assert abs(z.var() - 4.0) < 5 * 4.0 * np.sqrt(2 / N_STAT)
        assert stats.kstest(z, "norm", args=(1.5, 2.0)).pvalue > 1e-3
        # the even (cosine) and odd (sine) elements are each normal, and uncorrelated
        assert stats.kstest(z[1::2], "norm", args=(1.5, 2.0)).pvalue > 1e-3
        assert abs(np.corrcoef(z[::2], z[1::2])[0, 1]) < 5 / np.sqrt(N_STAT / 2)


def test_bernoulli_and_randint_frequencies():
    hits = _draw(lambda n: gc.random.bernoulli(0.3, (n,), "float64"))
    assert abs(hits.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / N_STAT)
    k = _draw(lambda n: gc.random.randint(-2, 5, (n,)))
    counts = np.bincount(k + 2, minlength=7)
    assert k.min() == -2 and k.max() == 4
    assert stats.chisquare(counts).pvalue > 1e-3  # 7 equally likely values


def test_reparameterisation_gradient_matches_finite_differences():
    with gc.Graph(seed=4) as g:
        mu = gc.parameter(np.array([0.3, -1.0]), name="mu")
        sigma = gc.parameter(np.array([0.5, 2.0]), name="sigma")
        loss = gc.mean(gc.square(mu + sigma * gc.random.normal((50, 2), "float64")))
        grads = gc.grad(loss, [mu, sigma])
        f = gc.compile([], [loss, *grads], backend="numpy")
    _, d_mu, d_sigma = f()  # call 0 of seed 4
    values = g.parameter_values
    for param, analytic in ((mu, d_mu), (sigma, d_sigma)):
        for i in range(2):
            losses = []
            for step in (1e-6, -1e-6):
                values[param.node.id][i] += step
                gc.seed(g, 4)  # the same eps on both sides (the first call's)
                losses.append(f()[0])
                values[param.node.id][i] -= step
            numeric = (losses[0] - losses[1]) / 2e-6
            np.testing.assert_allclose(analytic[i], numeric, rtol=1e-6)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: gc.random.bernoulli(1.5, (3,)), "p must lie in"),
    (lambda: gc.random.bernoulli(-0.1, (3,)), "p must lie in"),
    (lambda: gc.random.randint(5, 5, (3,)), "low < high"),
    (lambda: gc.random.randint(0, 2**33, (3,)), "exceeds 2"),
    (lambda: gc.random.randint(0, 2**31 + 1, (3,), "int32"), "does not fit int32"),
])
def test_range_errors(build, message):
    with gc.Graph(), pytest.raises(gc.RangeError, match=message) as info:
        build()
    assert "test_distributions.py" in str(info.value)


def test_other_errors():
    with gc.Graph():
        with pytest.raises(gc.DTypeError, match="float32 or float64"):
            gc.random.normal((3,), "int32")
        with pytest.raises(gc.ShapeError, match="dimension -1"):
            gc.random.uniform((-1, 3))
        with pytest.raises(gc.GraphError, match="seed"):
            gc.seed(gc.current_graph(), -1)
        z = gc.random.normal(("M", 2))
        with pytest.raises(gc.GraphError, match="no input of the compiled function has"):
            gc.compile([], z, backend="numpy")
