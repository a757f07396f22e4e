"""Resident memory over many distinct compiles in one process.

    python benchmarks/bench_compile_memory.py [--compiles 300] [--max-seconds 600] [--every 10]
                                              [--compile-mode eager|background]

Each compile is a different small MLP training step (16 inputs, a hidden layer of 8, 9, 10...
units, 4 classes; forward, adjoint and SGD update) compiled with the numba backend, called once
and dropped. Prints, every ``--every`` compiles, the compiles done, the process's resident
memory (RSS, from /proc/self/statm) and the growth per compile since the first compile. Stops
early after ``--max-seconds``. Use a fresh GRAPHCOMP_CACHE_DIR for cold compiles.
``--compile-mode background`` compiles each step in another process and waits for it, so this
process only loads the compiled code from the cache.
"""

from __future__ import annotations

import argparse
import gc as python_gc
import os
import time

import numpy as np

import graphcomp as gc


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def compile_step(width: int, compile_mode: str = "eager") -> gc.Function:
    """A distinct MLP training step: its hidden layer has ``width`` units."""
    rng = np.random.default_rng(width)
    with gc.Graph():
        x = gc.placeholder((None, 16), "float64", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        W1 = gc.parameter(rng.standard_normal((16, width)) * 0.1, name="W1")
        W2 = gc.parameter(rng.standard_normal((width, 4)) * 0.1, name="W2")
        loss = gc.mean(gc.softmax_cross_entropy(gc.relu(x @ W1) @ W2, y))
        g1, g2 = gc.grad(loss, [W1, W2])
        step = gc.compile([x, y], loss, updates=[(W1, W1 - 0.01 * g1), (W2, W2 - 0.01 * g2)],
                          backend="numba", compile_mode=compile_mode)
    if not step.wait():
        raise RuntimeError("the background compile failed")
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compiles", type=int, default=300)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--compile-mode", choices=("eager", "background"), default="eager")
    args = parser.parse_args()
    x, y = np.ones((8, 16)), np.zeros(8, dtype=np.int64)
    start = time.perf_counter()
    print(f"{'compiles':>8} {'RSS MB':>8} {'MB/compile':>10} {'seconds':>8}", flush=True)
    first = 0.0
    for done in range(1, args.compiles + 1):
        step = compile_step(7 + done, args.compile_mode)
        step(x, y)
        del step
        python_gc.collect()
        rss = rss_mb()
        if done == 1:
            first = rss
        elapsed = time.perf_counter() - start
        last = done == args.compiles or elapsed > args.max_seconds
        if done == 1 or done % args.every == 0 or last:
            growth = (rss - first) / (done - 1) if done > 1 else 0.0
            print(f"{done:>8} {rss:>8.0f} {growth:>10.2f} {elapsed:>8.0f}", flush=True)
        if last:
            break


if __name__ == "__main__":
    main()
