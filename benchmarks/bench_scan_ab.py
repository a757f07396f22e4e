"""Training steps of several workloads alternating in blocks in one process (numba backend).

Prints, per workload, the median [range] over 12 blocks of each block's median step and the
fastest single step (the least disturbed by other jobs on a loaded machine), then the ratio
rnn_scan / rnn per block. Run it once per tree, alternating, with that tree on PYTHONPATH:

    PYTHONPATH=$PWD python benchmarks/bench_scan_ab.py rnn rnn_scan lstm
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

BLOCKS, STEPS = 12, 20


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    threadpool_limits(2)
    names = sys.argv[1:] or ["rnn", "rnn_scan"]
    steps = {}
    for name in names:
        problem = workloads.make(name)
        step = workloads.graphcomp_step(problem, "numba")
        for _ in range(5):
            step(*problem.inputs)
        steps[name] = (step, problem)
    medians: dict[str, list[float]] = {n: [] for n in names}
    fastest: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(BLOCKS):
        for name in names:
            step, problem = steps[name]
            times = []
            for _ in range(STEPS):
                start = time.perf_counter()
                step(*problem.inputs)
                times.append(1e3 * (time.perf_counter() - start))
            medians[name].append(float(np.median(times)))
            fastest[name].append(min(times))
    for name in names:
        v = medians[name]
        print(f"{name}: {np.median(v):.2f} [{min(v):.2f}-{max(v):.2f}] ms; "
              f"fastest step {min(fastest[name]):.2f} ms")
    if "rnn" in medians and "rnn_scan" in medians:
        r = np.array(medians["rnn_scan"]) / np.array(medians["rnn"])
        print(f"rnn_scan/rnn per block: {np.median(r):.2f} [{r.min():.2f}-{r.max():.2f}], "
              f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
