"""Drawing normals in a compiled graphcomp function against numpy's Generator.

Times, alternating in one process, median (min-max) of ``--repeat`` calls each:

* ``graphcomp``   -- a compiled function (numba backend) returning ``gc.random.normal((n,),
  "float32")``, with ``copy_outputs=False`` (the draw alone, into the function's buffer);
* ``graphcomp+copy`` -- the same function with its default output copy;
* ``numpy f64`` / ``numpy f32`` -- ``numpy.random.Generator.standard_normal(n)`` with its
  default float64 and with ``dtype=np.float32`` (numpy's ziggurat, PCG64).

The ratio column is numpy float64's median over each row's median. Run:

    python benchmarks/bench_random.py [--log2n 22] [--repeat 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable


def _timings(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():  # alternating: the machine's noise hits every row alike
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log2n", type=int, default=22)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import numpy as np

    import graphcomp as gc

    n = 1 << args.log2n
    with gc.Graph(seed=1):
        z = gc.random.normal((n,), "float32")
        draw = gc.compile([], z, backend="numba", copy_outputs=False)
        draw_copy = gc.compile([], z, backend="numba")
    generator = np.random.default_rng(1)
    runs: dict[str, Callable[[], object]] = {
        "graphcomp": draw,
        "graphcomp+copy": draw_copy,
        "numpy f64": lambda: generator.standard_normal(n),
        "numpy f32": lambda: generator.standard_normal(n, dtype=np.float32),
    }
    for run in runs.values():
        run()  # compile and warm up
    times = _timings(runs, args.repeat)
    baseline = float(np.median(times["numpy f64"]))
    print(f"2^{args.log2n} float32 standard normals, median (min-max) of {args.repeat} calls")
    print(f"{'':16} {'ms':>28} {'numpy f64 / this':>18}")
    for name, samples in times.items():
        ms = np.array(samples) * 1e3
        spread = f"{np.median(ms):8.2f} ({ms.min():6.2f}-{ms.max():6.2f})"
        print(f"{name:16} {spread:>28} {baseline / np.median(samples):18.2f}")


if __name__ == "__main__":
    main()
