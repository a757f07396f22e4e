"""Where a compiled training step's time goes, kernel by kernel (cProfile of the Python driver).

Compiles a workload's step on the numba backend (``benchmarks/workloads.py``), times
``--steps`` steps (median), then profiles ``--profiled`` more and prints the kernels with the
largest own time per call. Only steps with a Python driver list their kernels (an njit driver
is one call). cProfile adds a few microseconds per call, so read the per-call times as
relative. Run in a fresh process, with the graphcomp to measure on ``PYTHONPATH``:

    PYTHONPATH=$PWD python benchmarks/profile_step.py word2vec_100k [--steps 200] [--top 8]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--profiled", type=int, default=50)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    import workloads
    from threadpoolctl import threadpool_limits

    threadpool_limits(2)
    problem = workloads.make(args.workload)
    step = workloads.graphcomp_step(problem, "numba")
    for _ in range(10):
        step(*problem.inputs)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step(*problem.inputs)
        times.append(time.perf_counter() - start)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.profiled):
        step(*problem.inputs)
    profile.disable()
    print(f"{args.workload}: step {1e3 * np.median(times):.3f} ms (median of {args.steps}), "
          f"load average {os.getloadavg()[0]:.1f}")
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = [(tottime / calls, calls, name) for (_, _, name), (calls, _, tottime, _, _)
            in stats.items() if name.startswith("k") and name[1:].isdigit()]
    for per_call, calls, name in sorted(rows, reverse=True)[:args.top]:
        print(f"  {name:6s} {1e3 * per_call:7.3f} ms a call, {calls // args.profiled} a step")


if __name__ == "__main__":
    main()
