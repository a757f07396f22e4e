"""Matrix products split between two lanes (graphcomp/backends/numba/lanes/), measured alone.

    python benchmarks/bench_lanes.py [--repeats 400]

For each float32 shape (m, k, n) it times, in this process and interleaved in blocks:

- ``np.dot``: numpy's OpenBLAS as it is (two threads allowed), then a 0.15 s pause: OpenBLAS's
  idle threads spin for ~0.1 s after a threaded call and would compete with the helper;
- ``whole``: the generated ``gemm_split`` (float32) with the lanes disabled (one BLAS call), with
  OpenBLAS limited to one thread as it is during a step that holds the lanes;
- ``split``: the same function holding the lanes, the helper thread awake.

Prints a table of medians (microseconds), the speed-up of ``split`` over ``np.dot``, and the
share of ``split`` calls in which the helper computed its half (the rest ran whole: the caller
took both halves, or splitting was paused after a late helper).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphcomp as gc
from graphcomp.backends.numba.lanes import HELPED, LaneWorker, lanes_array

SHAPES = [(32, 128, 128), (64, 128, 128), (128, 256, 128), (1024, 64, 128), (128, 992, 128),
          (128, 784, 512)]


def split_function():
    """``gemm_split`` from a generated module (compiled once, cached like any other)."""
    with gc.Graph():
        x = gc.placeholder((64, 128), "float32", name="x")
        w = gc.parameter(np.ones((128, 128), np.float32), name="w")
        f = gc.compile([x], x @ w, backend="numba")
    driver = f._executable._driver
    namespace = getattr(driver, "py_func", driver).__globals__
    return namespace["gemm_split"]


def median_us(call, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args()
    gemm = split_function()
    worker = LaneWorker.shared()
    if worker is None:
        raise SystemExit("no lane helper here (numpy's OpenBLAS not found, or GRAPHCOMP_LANES=0)")
    off = lanes_array(enabled=False)
    one, zero = np.float32(1.0), np.float32(0.0)
    rng = np.random.default_rng(0)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · float32 · median of "
          f"{args.repeats} calls per block, 5 interleaved blocks")
    print()
    print("| m×k×n | np.dot (µs) | whole, 1 BLAS thread (µs) | split in 2 lanes (µs) "
          "| split vs np.dot | helper took a half |")
    print("|---|---|---|---|---|---|")
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        times: dict[str, list[float]] = {"dot": [], "whole": [], "split": []}
        per_block = max(1, args.repeats // 5)
        helped = int(worker.lanes[0, HELPED])
        for _ in range(5):
            times["dot"].append(median_us(lambda: np.dot(a, b, out), per_block))
            # OpenBLAS's idle threads spin for ~0.1 s after a threaded call and would take the
            # helper's core; let them sleep first (a late helper pauses splitting, lanes/code.py).
            time.sleep(0.15)
            lanes = worker.begin()
            assert lanes is not None
            try:
                times["whole"].append(median_us(lambda: gemm(a, 0, b, 0, out, one, zero, off),
                                                per_block))
                time.sleep(0.002)  # let the helper wake if it was parked
                times["split"].append(median_us(lambda: gemm(a, 0, b, 0, out, one, zero, lanes),
                                                per_block))
            finally:
                worker.end()
        share = (int(worker.lanes[0, HELPED]) - helped) / (5 * per_block)
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)
        dot, whole, split = (float(np.median(times[key])) for key in ("dot", "whole", "split"))
        print(f"| {m}×{k}×{n} | {dot:.1f} | {whole:.1f} | {split:.1f} | {dot / split:.2f}× "
              f"| {share:.0%} |")


if __name__ == "__main__":
    main()
