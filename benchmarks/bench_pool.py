"""2x2 max pooling (stride 2) and its gradient on the numba backend: the two kernel paths.

For each shape, float32, ``max_pool2d(x, 2)`` and its input gradient
(``max_pool2d_grad(x, g)``, the gradient of ``sum(max_pool2d(x) * g)`` for ``x``) are compiled
twice with the numba backend: with the non-overlapping path of ``conv_kernels.py`` (stride ==
kernel, no padding: one pass per window, each gradient element written once) and with
``conv_kernels.TILED_POOLING = False`` (the general path, which every pooling op took before:
a zeroed buffer, three passes over each window). numpy by hand (the ``cnn`` workload's
reshape-to-windows forward and backward) runs beside them. The calls of one shape alternate
in blocks; the table gives the median of each (ms) with the range of the block medians, and
general over tiled. The input holds small integers, so windows have tied maxima. Run in a
fresh process:

    PYTHONPATH=$PWD python benchmarks/bench_pool.py [--repeats 30] [--blocks 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

SHAPES = [(64, 6, 24, 24), (64, 16, 8, 8), (32, 32, 16, 16)]  # the cnn workload's two pools


def compiled(shape: tuple, tiled: bool):
    """(forward, gradient) functions of 2x2 pooling over ``shape``, on the numba backend."""
    import graphcomp as gc
    from graphcomp.backends.numba import conv_kernels

    conv_kernels.TILED_POOLING = tiled
    try:
        with gc.Graph():
            x = gc.placeholder(shape, "float32", name="x")
            y = gc.nn.max_pool2d(x, 2)
            g = gc.placeholder(tuple(y.shape), "float32", name="g")
            (dx,) = gc.grad(gc.sum(y * g), [x])
            forward = gc.compile([x], y, backend="numba", copy_outputs=False)
            gradient = gc.compile([x, g], dx, backend="numba", copy_outputs=False)
    finally:
        conv_kernels.TILED_POOLING = True
    return forward, gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    from workloads import _pool_backward, _pool_forward

    rng = np.random.default_rng(0)
    print(f"load average {os.getloadavg()[0]:.1f} at the start; ms, median [block range]")
    print("| N,C,H,W | op | numpy by hand | numba general | numba tiled | general / tiled |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        x = rng.integers(-3, 4, shape).astype(np.float32)
        g = rng.standard_normal((*shape[:2], shape[2] // 2, shape[3] // 2)).astype(np.float32)
        tiled, general = compiled(shape, True), compiled(shape, False)
        for k, op in enumerate(("forward", "gradient")):
            args_k = (x,) if k == 0 else (x, g)
            np.testing.assert_array_equal(tiled[k](*args_k), general[k](*args_k))

            def by_hand(k=k):
                out, windows = _pool_forward(x)
                return out if k == 0 else _pool_backward(g, out, windows)

            calls = {"numpy": by_hand, "general": lambda k=k, a=args_k: general[k](*a),
                     "tiled": lambda k=k, a=args_k: tiled[k](*a)}
            medians = _alternate(calls, args.repeats, args.blocks)
            cells = [f"{np.median(v):.3f} [{min(v):.3f}-{max(v):.3f}]" for v in medians.values()]
            ratio = np.median(np.array(medians["general"]) / np.array(medians["tiled"]))
            print(f"| {','.join(map(str, shape))} | {op} | {' | '.join(cells)} | {ratio:.2f} |")


def _alternate(calls: dict, repeats: int, blocks: int) -> dict[str, list[float]]:
    """Per call, the median time (ms) of each block of ``repeats`` calls, blocks alternating."""
    import numpy as np

    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(blocks):
        for name, call in calls.items():
            call()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            out[name].append(1e3 * float(np.median(times)))
    return out


if __name__ == "__main__":
    main()
