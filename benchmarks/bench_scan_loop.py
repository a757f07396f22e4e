"""The loop a scan runs on numba: a Python loop over a Python body driver (the default) against
``scan_loop``, one njit call over an njit body driver (``driver_jit=True``).

One process (empty kernel cache in a temporary folder): builds the rnn_scan training step
(``benchmarks/workloads.py``), compiles it both ways (each compile time is printed; the second
one benefits from numba being warm), then times steps in alternating blocks, so drift hits
both alike, and prints the median and range of the blocks' medians.

Run:  python benchmarks/bench_scan_loop.py [--steps 32] [--blocks 6] [--per-block 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRAPHCOMP_CACHE_DIR", tempfile.mkdtemp(prefix="graphcomp-scan-loop-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--per-block", type=int, default=20)
    args = parser.parse_args()

    from workloads import make

    import graphcomp as gc

    problem = make("rnn_scan", steps=args.steps)
    variants = {"python loop (default)": None, "scan_loop (driver_jit=True)": True}
    steps = {}
    for label, jit in variants.items():
        with gc.Graph():
            params = {k: gc.parameter(v, name=k) for k, v in problem.params.items()}
            inputs = [gc.placeholder(a.shape, a.dtype, name=n)
                      for n, a in zip(problem.input_names, problem.inputs, strict=True)]
            loss = problem.build_loss(params, inputs)
            grads = gc.grad(loss, list(params.values()))
            updates = [(p, p - problem.lr * g) for p, g in zip(params.values(), grads,
                                                                strict=True)]
            start = time.perf_counter()
            steps[label] = gc.compile(inputs, loss, updates=updates, backend="numba",
                                      driver_jit=jit)
            print(f"{label}: compile {time.perf_counter() - start:.2f} s")
        for _ in range(5):
            steps[label](*problem.inputs)
    medians: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(args.blocks):
        for label, step in steps.items():
            times = []
            for _ in range(args.per_block):
                start = time.perf_counter()
                step(*problem.inputs)
                times.append(time.perf_counter() - start)
            medians[label].append(statistics.median(times) * 1e3)
    print(f"\nrnn_scan T={args.steps}, step time (ms), median [range] of {args.blocks} blocks "
          f"of {args.per_block} steps; load average {os.getloadavg()[0]:.1f}")
    for label, values in medians.items():
        print(f"  {label:<30} {statistics.median(values):.3f} "
              f"[{min(values):.3f}–{max(values):.3f}]")


if __name__ == "__main__":
    main()
