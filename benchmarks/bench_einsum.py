"""einsum's lowering against the hand-written matmul graph, both compiled for numba.

For each contraction, three calls on the same float32 operands:

* ``einsum``   -- ``gc.einsum(subscripts, a, b)`` compiled with the numba backend,
* ``matmul``   -- the same product written with ``@`` and ``gc.transpose``, compiled alike,
* ``np.einsum`` -- numpy's ``np.einsum(subscripts, a, b, optimize=True)``, as a baseline,

called in turn, each round in the next of the six orders of the three, so that all three see
the same machine state and none always runs just after another. The table gives the median
time of each and einsum's time over matmul's. Run in a fresh process:

    python benchmarks/bench_einsum.py [--repeat 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable


def _cases(gc) -> dict[str, tuple[tuple[tuple[int, ...], ...], Callable]]:
    """subscripts -> (operand shapes, the product written with matmul)."""
    return {
        "bij,bjk->bik": (((32, 64, 64), (32, 64, 64)), lambda a, b: a @ b),
        "ij,kj->ik": (((256, 256), (256, 256)), lambda a, b: a @ gc.transpose(b)),
        "bhqd,bhkd->bhqk": (((8, 4, 64, 32), (8, 4, 64, 32)),
                            lambda q, k: q @ gc.transpose(k, (0, 1, 3, 2))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    import numpy as np

    import graphcomp as gc

    rng = np.random.default_rng(0)
    print(f"float32, numba backend, {args.threads} thread(s), median of {args.repeat} calls (ms)")
    print(f"{'subscripts':>16} | {'einsum':>8} | {'matmul':>8} | {'np.einsum':>9} | "
          f"{'einsum/matmul':>13}")
    print(f"{'-' * 16}-+-{'-' * 8}-+-{'-' * 8}-+-{'-' * 9}-+-{'-' * 13}")
    for subscripts, (shapes, by_hand) in _cases(gc).items():
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        with gc.Graph():
            a, b = (gc.placeholder(s, "float32") for s in shapes)
            via_einsum = gc.compile([a, b], gc.einsum(subscripts, a, b), backend="numba")
            via_matmul = gc.compile([a, b], by_hand(a, b), backend="numba")
        calls = {
            "einsum": lambda f=via_einsum: f(*arrays),
            "matmul": lambda f=via_matmul: f(*arrays),
            "np.einsum": lambda s=subscripts: np.einsum(s, *arrays, optimize=True),
        }
        results = [np.asarray(call()) for call in calls.values()]  # compile and warm up
        for result in results[1:]:
            np.testing.assert_allclose(results[0], result, rtol=1e-4, atol=1e-4)
        times = _alternating_medians(calls, args.repeat)
        e, m, n = (times[k] * 1e3 for k in calls)
        print(f"{subscripts:>16} | {e:8.3f} | {m:8.3f} | {n:9.3f} | {e / m:13.2f}")


def _alternating_medians(calls: dict[str, Callable], repeat: int) -> dict[str, float]:
    import numpy as np

    samples: dict[str, list[float]] = {name: [] for name in calls}
    orders = list(itertools.permutations(calls))
    for i in range(repeat):
        for name in orders[i % len(orders)]:
            call = calls[name]
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in samples.items()}


if __name__ == "__main__":
    main()
