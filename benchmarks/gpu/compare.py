"""One table: a training step (loss and gradients, SGD update) per benchmark workload on
backend='cuda' and on backend='numba' (CPU), on the same machine.

Run by benchmarks/gpu/check.sh on a GPU. Prepared 2026-12-07 without a GPU: not yet run.
The PyTorch CUDA eager column the CUDA issue asks for needs a torch model per workload
(benchmarks/workloads.py has graphcomp and numpy versions only): not written yet.
"""

from __future__ import annotations

import time

import graphcomp as gc
from benchmarks import workloads


def _time(step, repeats: int = 50) -> float:
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e6


def _graphcomp_step(problem: workloads.Problem, backend: str):
    with gc.Graph():
        params = {k: gc.parameter(v, name=k) for k, v in problem.params.items()}
        inputs = [gc.placeholder(a.shape, a.dtype) for a in problem.inputs]
        loss = problem.build_loss(params, inputs)
        grads = gc.grad(loss, list(params.values()))
        updates = [(p, p - problem.lr * g) for p, g in zip(params.values(), grads, strict=True)]
        fn = gc.compile(inputs, loss, updates=updates, backend=backend)
    return lambda: fn(*problem.inputs)


def main() -> None:
    print(f"{'workload':<12} {'cuda step (us)':>16} {'numba CPU step (us)':>20}")
    for name in ("tiny_mlp", "mlp", "ewise", "logreg"):
        problem = getattr(workloads, name)()
        cuda = _time(_graphcomp_step(problem, "cuda"))
        cpu = _time(_graphcomp_step(problem, "numba"))
        print(f"{name:<12} {cuda:16.1f} {cpu:20.1f}")


if __name__ == "__main__":
    main()
