"""Where a compiled training step's time goes, kernel call by kernel call.

Compiles a workload's step on the numba backend (``benchmarks/workloads.py``) with a Python
driver (an njit driver is one native call: nothing to split), times ``--steps`` steps, then
runs ``--profiled`` more with every kernel the driver calls wrapped in a timer, and prints the
calls with the most CPU time per step (the calling thread's, ``time.thread_time``, so time the
process spent waiting for a core is left out; the wall time is printed beside it). A kernel
called more than once a step is listed per call (``k4#0``, ``k4#1``, in the driver's order).
The timers add about a microsecond per call. Run in a fresh process, with the graphcomp to
measure on ``PYTHONPATH``:

    PYTHONPATH=$PWD python benchmarks/profile_step.py word2vec_100k [--steps 200] [--top 8]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Callable

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "2")


def _timed(name: str, kernel: Callable, calls: collections.Counter, per_step: dict,
           samples: dict) -> Callable:
    """``kernel`` recording (CPU, wall) seconds under ``name#i`` for its i-th call of a step."""
    def run(*args: object) -> object:
        index = calls[name] % per_step[name]
        calls[name] += 1
        start, start_cpu = time.perf_counter(), time.thread_time()
        result = kernel(*args)
        samples[f"{name}#{index}" if per_step[name] > 1 else name].append(
            (time.thread_time() - start_cpu, time.perf_counter() - start))
        return result
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--profiled", type=int, default=200)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    import workloads
    from threadpoolctl import threadpool_limits

    import graphcomp.backends.numba.placement as placement

    threadpool_limits(2)
    placement.JIT_DRIVER_MAX_WORK = 0  # a Python driver: its kernel calls can be wrapped
    problem = workloads.make(args.workload)
    step = workloads.graphcomp_step(problem, "numba")
    for _ in range(10):
        step(*problem.inputs)
    times = []
    for _ in range(args.steps):
        start = time.thread_time()
        step(*problem.inputs)
        times.append(time.thread_time() - start)
    names = step._executable._driver.__globals__  # the module the step's calls resolve in
    kernels = {k: v for k, v in names.items()
               if (k[:1] == "k" and k[1:].isdigit()) or k == "copy_flat"}
    per_step: collections.Counter = collections.Counter()
    counting = {k: (lambda k, f: lambda *a: (per_step.update([k]), f(*a))[1])(k, f)
                for k, f in kernels.items()}
    names.update(counting)
    step(*problem.inputs)  # count each kernel's calls in one step
    calls: collections.Counter = collections.Counter()
    samples: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    names.update({k: _timed(k, f, calls, per_step, samples) for k, f in kernels.items()})
    for _ in range(args.profiled):
        step(*problem.inputs)
    names.update(kernels)
    print(f"{args.workload}: step CPU {1e3 * np.median(times):.3f} ms (median of {args.steps}, "
          f"Python driver), load average {os.getloadavg()[0]:.1f}")
    rows = sorted(((np.median([c for c, _ in v]), np.median([w for _, w in v]), k)
                   for k, v in samples.items()), reverse=True)
    for cpu, wall, name in rows[:args.top]:
        print(f"  {name:9s} {1e3 * cpu:7.3f} ms CPU a call (wall {1e3 * wall:.3f})")
    print(f"  all kernels {1e3 * sum(r[0] for r in rows):.3f} ms CPU a step (sum of medians)")


if __name__ == "__main__":
    main()
