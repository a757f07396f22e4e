"""A training step against the floor of its own matrix products, in one process.

Compiles a workload's step on the numba backend (``benchmarks/workloads.py``), records the
products one step makes (every ``gemm_split`` call of every generated module the step runs,
scan bodies included: shapes, transposes, alpha and beta), then times in alternating blocks:
numpy by hand, the graphcomp step, and the recorded products alone, run by numpy's matmul
(the same OpenBLAS) with 2 threads and with 1. Prints medians [ranges] over the blocks, in
ms a step, and the products' share of the step. Run with the graphcomp to measure on
``PYTHONPATH``:

    PYTHONPATH=$PWD python benchmarks/bench_gemm_floor.py vae lstm [--blocks 10]

On a machine that other jobs keep busy, ``--threads 1 --cpu`` compares the work of each side
(one thread each, CPU time of the calling thread) rather than what two contended cores give.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "2")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


def _record(step: Callable, inputs: list[np.ndarray]) -> list[tuple]:
    """The products of one call of ``step``: ``(m, k, n, ta, tb, dtype)`` each."""
    calls: list[tuple] = []
    patched = []
    for module in list(sys.modules.values()):
        split = getattr(module, "gemm_split", None)
        if not getattr(module, "__name__", "").startswith("gc_") or split is None:
            continue

        def wrapper(a, ta, b, tb, out, alpha, beta, lanes, _split=split):  # type: ignore[no-untyped-def]
            m, k = (a.shape[1], a.shape[0]) if ta else a.shape
            calls.append((m, k, b.shape[0] if tb else b.shape[1], ta, tb, a.dtype))
            return _split(a, ta, b, tb, out, alpha, beta, lanes)

        patched.append((module, split))
        module.gemm_split = wrapper  # type: ignore[attr-defined]
    try:
        step(*inputs)
    finally:
        for module, split in patched:
            module.gemm_split = split  # type: ignore[attr-defined]
    return calls


def _replay(calls: list[tuple]) -> Callable[[], None]:
    """The recorded products as numpy matmuls into preallocated outputs (an accumulating
    product, beta 1, is timed as a plain one: BLAS adds into C at no visible cost)."""
    rng = np.random.default_rng(0)
    work = []
    for m, k, n, ta, tb, dtype in calls:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        work.append((a.T if ta else a, b.T if tb else b, np.zeros((m, n), dtype)))

    def run() -> None:
        for a, b, out in work:
            np.matmul(a, b, out=out)
    return run


def _block(fn: Callable[[], object], steps: int, clock: Callable[[], float]) -> float:
    times = []
    for _ in range(steps):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * float(np.median(times))


def measure(name: str, blocks: int, steps: int, threads: int, cpu: bool) -> None:
    import workloads

    problem = workloads.make(name)
    step = workloads.graphcomp_step(problem, "numba")
    by_hand = workloads.numpy_step(problem)
    for _ in range(5):
        step(*problem.inputs)
        by_hand(*problem.inputs)
    calls = _record(step, problem.inputs)
    products = _replay(calls)
    macs = sum(m * k * n for m, k, n, *_ in calls)

    sides = {"numpy by hand": (lambda: by_hand(*problem.inputs), threads),
             "graphcomp": (lambda: step(*problem.inputs), threads),
             "products, 2 threads": (products, 2), "products, 1 thread": (products, 1)}
    if threads == 1:
        del sides["products, 2 threads"]
    clock = time.thread_time if cpu else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(blocks):
        for label, (fn, limit) in sides.items():
            with threadpool_limits(limit):  # set once a block: the call costs ~0.1 ms
                fn()
                times[label].append(_block(fn, steps, clock))
    print(f"{name}: {len(calls)} products a step, {macs / 1e6:.1f} M multiply-adds, "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, values in times.items():
        print(f"  {label:20s} {np.median(values):7.3f} ms [{min(values):.3f}-{max(values):.3f}]")
    ratio = np.array(times["numpy by hand"]) / np.array(times["graphcomp"])
    print(f"  speed-up per block   {np.median(ratio):.2f}x [{ratio.min():.2f}-{ratio.max():.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="+")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, choices=(1, 2), default=2,
                        help="1: numpy's BLAS on one thread and graphcomp without its lanes")
    parser.add_argument("--cpu", action="store_true",
                        help="the calling thread's CPU time (time.thread_time) instead of wall "
                             "time: with --threads 1, a measure of work that waiting for a "
                             "busy core leaves out")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.threads == 1:
        os.environ["GRAPHCOMP_LANES"] = "0"
    threadpool_limits(args.threads)
    for name in args.workloads:
        measure(name, args.blocks, args.steps, args.threads, args.cpu)


if __name__ == "__main__":
    main()
