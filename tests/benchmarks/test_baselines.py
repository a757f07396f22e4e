"""The hand-written numpy baselines in benchmarks/ compute the same step as graphcomp."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import workloads

# Full-size workloads except where the full size is slow on the numpy interpreter.
SMALL = {
    "tiny_mlp": {},
    "mlp": {},
    "ewise": {"size": 4096},
    "rnn": {"steps": 5},
    "logreg": {},
    "lstm": {"steps": 5, "hidden": 16, "features": 8, "batch": 4},
    "vae": {"batch": 16, "noise_input": 1},  # the noise as an input: the same on both sides
    "cnn": {"batch": 4},
    "rnn_scan": {"steps": 5},
}


def tolerance(dtype: np.dtype) -> float:
    return 1e-10 if dtype == np.float64 else 2e-5


def assert_close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


@pytest.mark.parametrize("name", list(SMALL))
def test_numpy_baseline_gradients_match_graphcomp(name: str) -> None:
    problem = workloads.make(name, **SMALL[name])
    inputs, loss, _, grads = workloads.graphcomp_graph(problem)
    f = gc.compile(inputs, [loss, *grads], backend="numpy")
    got_loss, *got_grads = f(*problem.inputs)
    copies = {k: v.copy() for k, v in problem.params.items()}
    want_loss, want_grads = problem.numpy_loss_and_grads(copies, problem.inputs)
    tol = tolerance(next(iter(problem.params.values())).dtype)
    assert float(got_loss) == pytest.approx(want_loss, rel=tol)
    assert len(want_grads) == len(got_grads) == len(problem.params)
    for key, got, want in zip(problem.params, got_grads, want_grads, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, key
        assert_close(got, want, tol, f"{name}: gradient of {key}")
        assert np.any(want != 0), f"{name}: gradient of {key} is all zeros"


@pytest.mark.parametrize("name", ["tiny_mlp", "logreg"])
def test_numpy_step_and_graphcomp_step_update_alike(name: str) -> None:
    problem = workloads.make(name, **SMALL[name])
    step = workloads.graphcomp_step(problem, backend="numpy")
    by_hand = workloads.NumpyStep(problem)
    for _ in range(3):
        assert float(step(*problem.inputs)) == pytest.approx(by_hand(*problem.inputs), rel=1e-10)
    storage = step.program.graph.parameter_values
    for key, (target, _) in zip(problem.params, step.program.updates, strict=True):
        assert_close(storage[target.id], by_hand.params[key], 1e-10, f"{name}: {key}")
        assert not np.array_equal(by_hand.params[key], problem.params[key]), key


def test_gemm_reference_lists_the_eight_mlp_matmuls() -> None:
    shapes = workloads.make("mlp").gemm_shapes
    assert len(shapes) == 8
    assert all(a[1] == b[0] for a, b in shapes)
    flops = sum(2 * a[0] * a[1] * b[1] for a, b in shapes)
    # every layer: forward and weight gradient; all but the first: input gradient too
    assert flops == 2 * 128 * (2 * 784 * 512 + 3 * 512 * 512 + 3 * 512 * 10)


def test_the_vae_workload_draws_its_own_noise_on_each_side() -> None:
    problem = workloads.make("vae", batch=16)
    assert problem.input_names == ["x"]  # graphcomp: gc.random.normal; numpy: its Generator
    step = workloads.graphcomp_step(problem, backend="numpy")
    by_hand = workloads.NumpyStep(problem)
    for _ in range(2):  # different draws, the same distribution: close at the initial weights
        assert float(step(*problem.inputs)) == pytest.approx(by_hand(*problem.inputs), rel=0.05)


def test_the_numpy_steps_run_without_importing_graphcomp():
    # bench_first_steps.py times numpy by hand from the process's launch: it must not pay for
    # import graphcomp, which workloads.py does only when a graphcomp graph is built.
    import subprocess

    probe = ("import sys; import workloads; p = workloads.make('logreg'); "
             "workloads.numpy_step(p)(*p.inputs); print('graphcomp' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=Path(workloads.__file__).parent, timeout=300, check=True)
    assert done.stdout.strip() == "False"
