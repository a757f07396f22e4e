"""conv2d on the numba backend (direct loops) against numpy's im2col + GEMM, per size.

For each layer shape, float32, stride 1, "same" padding, three calls on the same operands:

* ``direct``  -- ``gc.nn.conv2d(x, w)`` compiled with the numba backend (conv_kernels.py),
* ``im2col``  -- numpy by hand: a strided window view copied into columns, one ``np.matmul``
  (OpenBLAS) per batch, the layout numpy's backend and PyTorch's CPU path use,
* ``backward``-- the numba step computing both gradients (input and filter) of ``sum(y * g)``,

called in turn, each round in the next order of the permutations, so that all see the same
machine state. The table gives the median time of each (ms), its range over five blocks of
the calls, the reduction length ``C_in * kh * kw`` and direct over im2col: where the ratio
climbs above 1 an im2col + BLAS kernel pays. Run in a fresh process:

    PYTHONPATH=$PWD python benchmarks/bench_conv.py [--repeat 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable

# (N, C_in, H, W, C_out, k)
SIZES = [
    (32, 1, 28, 28, 8, 3),
    (32, 3, 32, 32, 16, 3),
    (32, 8, 16, 16, 16, 3),
    (32, 16, 16, 16, 32, 3),
    (32, 32, 16, 16, 32, 3),
    (32, 64, 8, 8, 64, 3),
    (32, 128, 8, 8, 128, 3),
]


def im2col_conv(x, w):
    """Stride-1 "same" convolution by im2col + GEMM in numpy."""
    import numpy as np

    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    n, _, h, wd = windows.shape[:4]
    cols = np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(n, h * wd, -1)
    out = np.matmul(cols, w.reshape(w.shape[0], -1).T)  # [N, H*W, O]
    return out.transpose(0, 2, 1).reshape(n, w.shape[0], h, wd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    import numpy as np

    import graphcomp as gc

    rng = np.random.default_rng(0)
    print(f"float32, stride 1, 'same' padding, {args.threads} thread(s), median of "
          f"{args.repeat} calls in ms [range of 5 block medians]")
    print(f"{'N,C,H,W -> O,k':>22} | {'C*k*k':>5} | {'direct':>20} | {'im2col (numpy)':>20} | "
          f"{'backward':>20} | {'direct/im2col':>13}")
    print("-" * 117)
    for n, c, h, wd, o, k in SIZES:
        x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
        w = (rng.standard_normal((o, c, k, k)) * 0.1).astype(np.float32)
        g = rng.standard_normal((n, o, h, wd)).astype(np.float32)
        with gc.Graph():
            xs = gc.placeholder((None, c, h, wd), "float32", name="x")
            ws = gc.placeholder((o, c, k, k), "float32", name="w")
            gs = gc.placeholder((None, o, h, wd), "float32", name="g")
            y = gc.nn.conv2d(xs, ws, padding="same")
            forward = gc.compile([xs, ws], y, backend="numba")
            backward = gc.compile([xs, ws, gs], gc.grad(gc.sum(y * gs), [xs, ws]),
                                  backend="numba")
        np.testing.assert_allclose(forward(x, w), im2col_conv(x, w), rtol=1e-3, atol=1e-3)
        backward(x, w, g)
        calls = {"direct": lambda: forward(x, w), "im2col": lambda: im2col_conv(x, w),
                 "backward": lambda: backward(x, w, g)}
        times = _alternating(calls, args.repeat)
        cells = [_cell(times[name]) for name in calls]
        ratio = np.median(times["direct"]) / np.median(times["im2col"])
        shape = f"{n},{c},{h},{wd} -> {o},{k}"
        print(f"{shape:>22} | {c * k * k:5d} | {cells[0]:>20} | {cells[1]:>20} | {cells[2]:>20} "
              f"| {ratio:13.2f}")


def _cell(samples: list[float]) -> str:
    import numpy as np

    blocks = [np.median(b) * 1e3 for b in np.array_split(np.array(samples), 5)]
    return f"{np.median(samples) * 1e3:.3f} [{min(blocks):.2f}-{max(blocks):.2f}]"


def _alternating(calls: dict[str, Callable], repeat: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    orders = list(itertools.permutations(calls))
    for i in range(repeat):
        for name in orders[i % len(orders)]:
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


if __name__ == "__main__":
    main()
