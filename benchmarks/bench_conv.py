"""conv2d and its two gradients on the numba backend: direct loops against im2col + GEMM.

For each layer shape, float32, stride 1, each of the three convolution primitives is compiled
twice with the numba backend, ``conv="direct"`` (the loop nests of conv_kernels.py) and
``conv="im2col"`` (passes/convolution.py: columns, one BLAS product over the batch, col2im):

* ``forward``     -- ``conv2d(x, w)``,
* ``input grad``  -- the gradient of ``sum(conv2d(x, w) * g)`` for ``x`` (conv2d_input_grad),
* ``filter grad`` -- the same for ``w`` (conv2d_filter_grad),

and numpy's im2col + GEMM forward (a strided window view copied into columns, one
``np.matmul``) runs beside them as a yardstick. All calls of one shape run in turn, each round
in the next order of the permutations, so that all see the same machine state. The table gives
the median time of each (ms) with its range over five blocks of the calls, and per primitive
direct over im2col: above 1, im2col + GEMM is faster. The last table is the threshold table:
per reduction length ``C_in * kh * kw``, which kernel won each primitive. Run in a fresh
process:

    PYTHONPATH=$PWD python benchmarks/bench_conv.py [--repeat 30] [--threads 1]

One thread and no lane helper by default (``GRAPHCOMP_LANES=0``, ``--lanes`` keeps it): on a
shared 2-core machine, numpy's two-thread OpenBLAS spinning between the calls took the lane
helper's core, and split products then waited for a descheduled helper (a 0.5 ms product
measured at 20-60 ms), which says nothing about the kernels themselves.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable

# (N, C_in, H, W, C_out, k, padding)
SIZES = [
    (32, 1, 8, 8, 16, 3, 1),  # cnn-digits' first layer
    (64, 1, 28, 28, 6, 5, 0),  # the cnn workload's first layer (LeNet-5)
    (32, 1, 28, 28, 8, 3, 1),
    (32, 3, 32, 32, 16, 3, 1),
    (32, 8, 16, 16, 16, 3, 1),
    (32, 16, 4, 4, 32, 3, 1),  # cnn-digits' second layer
    (64, 6, 12, 12, 16, 5, 0),  # the cnn workload's second layer
    (32, 32, 16, 16, 32, 3, 1),
    (32, 64, 8, 8, 64, 3, 1),
    (32, 128, 8, 8, 128, 3, 1),
]
PRIMITIVES = ("forward", "input grad", "filter grad")


def im2col_conv(x, w, pad):
    """Stride-1 convolution by im2col + GEMM in numpy."""
    import numpy as np

    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    n, _, h, wd = windows.shape[:4]
    cols = np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(n * h * wd, -1)
    out = cols @ w.reshape(w.shape[0], -1).T  # [N*H*W, O]
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def compile_primitives(shape: tuple, conv: str) -> dict[str, Callable]:
    """The three primitives of one layer shape, compiled with ``conv``."""
    import graphcomp as gc

    _, c, h, wd, o, k, pad = shape
    oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    with gc.Graph():
        xs = gc.placeholder((None, c, h, wd), "float32", name="x")
        ws = gc.placeholder((o, c, k, k), "float32", name="w")
        gs = gc.placeholder((None, o, oh, ow), "float32", name="g")
        y = gc.nn.conv2d(xs, ws, padding=pad)
        loss = gc.sum(y * gs)
        return {
            "forward": gc.compile([xs, ws], y, backend="numba", conv=conv),
            "input grad": gc.compile([xs, ws, gs], gc.grad(loss, [xs]), backend="numba",
                                     conv=conv),
            "filter grad": gc.compile([xs, ws, gs], gc.grad(loss, [ws]), backend="numba",
                                      conv=conv),
        }


def measure(shape: tuple, repeat: int) -> dict[str, list[float]]:
    import numpy as np

    n, c, h, wd, o, k, pad = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = (rng.standard_normal((o, c, k, k)) * 0.1).astype(np.float32)
    g = rng.standard_normal((n, o, h + 2 * pad - k + 1, wd + 2 * pad - k + 1)).astype(np.float32)
    compiled = {conv: compile_primitives(shape, conv) for conv in ("direct", "im2col")}
    for name in PRIMITIVES:
        args = (x, w) if name == "forward" else (x, w, g)
        want = compiled["direct"][name](*args)
        np.testing.assert_allclose(compiled["im2col"][name](*args), want, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(compiled["direct"]["forward"](x, w), im2col_conv(x, w, pad),
                               rtol=1e-3, atol=1e-3)
    calls: dict[str, Callable] = {"numpy im2col forward": lambda: im2col_conv(x, w, pad)}
    for conv, functions in compiled.items():
        for name, f in functions.items():
            args = (x, w) if name == "forward" else (x, w, g)
            calls[f"{name} {conv}"] = lambda f=f, args=args: f(*args)
    return _alternating(calls, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lanes", action="store_true", help="keep the lane helper thread")
    args = parser.parse_args()
    if not args.lanes:
        os.environ["GRAPHCOMP_LANES"] = "0"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    import numpy as np

    lanes = "on" if args.lanes else "off"
    print(f"float32, stride 1, {args.threads} thread(s), lanes {lanes}, median of {args.repeat} "
          "calls in ms "
          "[range of 5 block medians]; ratio: direct / im2col (> 1: im2col + GEMM faster)\n")
    print("| N,C,H,W → O,k,pad | C·k·k | primitive | direct (numba) | im2col + GEMM (numba) "
          "| direct / im2col | numpy im2col forward |")
    print("|---|---|---|---|---|---|---|")
    winners: dict[int, list[str]] = {}
    for shape in SIZES:
        n, c, h, wd, o, k, pad = shape
        times = measure(shape, args.repeat)
        reduction = c * k * k
        for name in PRIMITIVES:
            direct, im2col = times[f"{name} direct"], times[f"{name} im2col"]
            ratio = np.median(direct) / np.median(im2col)
            numpy = _cell(times["numpy im2col forward"]) if name == "forward" else ""
            print(f"| {n},{c},{h},{wd} → {o},{k},{pad} | {reduction} | {name} | "
                  f"{_cell(direct)} | {_cell(im2col)} | {ratio:.2f} | {numpy} |", flush=True)
            winners.setdefault(reduction, []).append(
                f"{name}: {'im2col' if ratio > 1 else 'direct'} ({ratio:.2f})")
    print("\nThreshold table (per reduction length, the faster kernel of each primitive):\n")
    print("| C·k·k | " + " | ".join(PRIMITIVES) + " |")
    print("|---|---|---|---|")
    for reduction in sorted(winners):
        print(f"| {reduction} | " + " | ".join(winners[reduction][-3:]) + " |")


def _cell(samples: list[float]) -> str:
    import numpy as np

    blocks = [np.median(b) * 1e3 for b in np.array_split(np.array(samples), 5)]
    return f"{np.median(samples) * 1e3:.3f} [{min(blocks):.2f}–{max(blocks):.2f}]"


def _alternating(calls: dict[str, Callable], repeat: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    orders = [list(calls), list(reversed(list(calls)))]
    orders += [list(p) for p in itertools.islice(itertools.permutations(calls), 0, 1000, 97)]
    for i in range(repeat):
        for name in orders[i % len(orders)]:
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


if __name__ == "__main__":
    main()
