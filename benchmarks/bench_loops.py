"""The loop-level facts the numba backend's code generator relies on, measured.

Each row times small ``@njit`` loops of the shape graphcomp generates (median of repeated
calls, one process):

* ``division``   -- ``e / (1 + e)`` after an ``exp``: numba's default (Python) error model
  checks every division for zero, numpy's does not (the generated code uses numpy's);
* ``in place``   -- a loop that reads ``w[i]`` and writes ``w[i]``: through one argument, and
  with ``w`` passed twice as two arguments (LLVM then cannot prove they do not overlap);
* ``parallel``   -- a ``prange`` over contiguous blocks against a serial loop, at several
  sizes: the start cost of a parallel loop decides ``kernels.LOOP_PARALLEL_MIN_ELEMENTS``.

Run:  python benchmarks/bench_loops.py [--n 4194304] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import time


def _median_us(function, *args, repeat: int) -> float:
    import numpy as np

    function(*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1 << 22)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)

    import numpy as np
    from numba import njit, prange

    import graphcomp.backends.numba  # noqa: F401  (sets OMP_WAIT_POLICY as graphcomp runs)
    from graphcomp.backends.numba.fastmath import exp_f32, tanh_f32
    from graphcomp.backends.numba.kernels import LOOP_BLOCK_MIN_ELEMENTS

    def ratio_loop(x, out):
        for i in range(x.shape[0]):
            e = exp_f32(-abs(x[i]))
            out[i] = e / (np.float32(1.0) + e)

    python_model = njit(ratio_loop)
    numpy_model = njit(error_model="numpy")(ratio_loop)

    @njit(error_model="numpy")
    def update_one_argument(x, w):
        for i in range(x.shape[0]):
            w[i] = w[i] - np.float32(0.01) * tanh_f32(x[i] * w[i])

    @njit(error_model="numpy")
    def update_two_arguments(x, w, out):
        for i in range(x.shape[0]):
            out[i] = w[i] - np.float32(0.01) * tanh_f32(x[i] * w[i])

    @njit(error_model="numpy")
    def serial(x, out):
        for i in range(x.shape[0]):
            out[i] = tanh_f32(x[i])

    @njit(error_model="numpy", parallel=True)
    def blocks(x, out, nb):
        n = x.shape[0]
        per = -(-n // nb)
        for blk in prange(nb):
            lo = blk * per
            hi = min(n, lo + per)
            xs = x[lo:hi]
            os_ = out[lo:hi]
            for i in range(hi - lo):
                os_[i] = tanh_f32(xs[i])

    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.n).astype(np.float32)
    w = rng.standard_normal(args.n).astype(np.float32)
    out = np.empty_like(x)
    r = args.repeat
    print(f"float32, n = {args.n}, {args.threads} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, median of {r} calls (µs)")
    print("| loop | variant | µs |")
    print("|---|---|---|")
    print(f"| division | Python error model | {_median_us(python_model, x, out, repeat=r):.1f} |")
    print(f"| division | numpy error model | {_median_us(numpy_model, x, out, repeat=r):.1f} |")
    print(f"| in place | one argument | {_median_us(update_one_argument, x, w, repeat=r):.1f} |")
    print(f"| in place | same array as two arguments | "
          f"{_median_us(update_two_arguments, x, w, w, repeat=r):.1f} |")
    for size in (64, 4096, 1 << 16, 1 << 19, args.n):
        xs, outs = x[:size], out[:size]
        nb = max(1, min(16, size // LOOP_BLOCK_MIN_ELEMENTS))
        print(f"| tanh, {size} elements | serial | {_median_us(serial, xs, outs, repeat=r):.1f} |")
        print(f"| tanh, {size} elements | prange, {nb} block(s) | "
              f"{_median_us(blocks, xs, outs, nb, repeat=r):.1f} |")
        if size == args.n:
            print(f"| tanh, {size} elements | prange, 2 blocks | "
                  f"{_median_us(blocks, xs, outs, 2, repeat=r):.1f} |")


if __name__ == "__main__":
    main()
