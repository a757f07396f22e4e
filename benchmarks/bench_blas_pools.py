"""Two BLAS thread pools in one process: why compiled graphcomp code calls numpy's BLAS.

numpy's wheels and scipy's wheels each bundle an OpenBLAS with its own thread pool, and
Numba's ``np.dot`` calls scipy's. This script times numpy's ``np.dot`` on one GEMM, each call
followed by one of:

* ``numpy``      -- numpy's ``np.dot`` again (one library, one pool),
* ``numba``      -- an ``@njit`` function calling ``np.dot`` (scipy's OpenBLAS: a second pool),
* ``graphcomp``  -- a graphcomp function computing the same product (numpy's OpenBLAS, called
  by symbol from compiled code: ``graphcomp/backends/numba/blas.py``),

and prints the median time of each call in a table. Run in a fresh process:

    python benchmarks/bench_blas_pools.py [--shape 128 784 512] [--repeat 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 784, 512],
                        metavar=("M", "K", "N"))
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    import numpy as np
    from numba import njit

    import graphcomp as gc

    m, k, n = args.shape
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)

    @njit
    def numba_dot(x, y, z):
        np.dot(x, y, z)

    with gc.Graph():
        x = gc.placeholder((m, k), "float32")
        w = gc.placeholder((k, n), "float32")
        product = gc.compile([x, w], x @ w, backend="numba", driver_jit=True)
    partners = {
        "numpy": lambda: np.dot(a, b, out),
        "numba": lambda: numba_dot(a, b, out),
        "graphcomp": lambda: product(a, b),
    }
    for run in partners.values():
        run()  # compile and warm up
    print(f"GEMM {m}x{k}x{n} float32, {args.threads} threads, median of {args.repeat} calls (ms)")
    print(f"{'partner':>10} | {'numpy np.dot':>12} | {'partner call':>12}")
    print(f"{'-' * 10}-+-{'-' * 12}-+-{'-' * 12}")
    for label, partner in partners.items():
        first, second = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            np.dot(a, b, out)
            middle = time.perf_counter()
            partner()
            end = time.perf_counter()
            first.append(middle - start)
            second.append(end - middle)
        print(f"{label:>10} | {np.median(first) * 1e3:12.3f} | {np.median(second) * 1e3:12.3f}")


if __name__ == "__main__":
    main()
