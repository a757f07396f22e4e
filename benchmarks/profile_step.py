"""Where a compiled training step's time goes, kernel call by kernel call.

Compiles a workload's step on the numba backend (``benchmarks/workloads.py``) with a Python
driver (an njit driver is one native call: nothing to split), times ``--steps`` steps, then
runs ``--profiled`` more with every kernel the driver calls wrapped in a timer, and prints the
calls with the most CPU time per step (the calling thread's, ``time.thread_time``, so time the
process spent waiting for a core is left out; the wall time is printed beside it). A kernel
called 2 to 8 times a step is listed per call (``k4#0``, ``k4#1``, in the driver's order); one
called more often (a scan body's) has one line for all its calls; the products (``gemm_split``)
are listed too. A program with scans has one driver per stage: ``s1.k0`` is stage 1's ``k0``.
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
        samples[f"{name}#{index}" if 1 < per_step[name] <= 8 else name].append(
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
    modules = _driver_modules(step._executable)
    kernels = {(label, k): v for label, names in modules for k, v in names.items()
               if (k[:1] == "k" and k[1:].isdigit()) or k in ("copy_flat", "gemm_split")}
    per_step: collections.Counter = collections.Counter()
    _patch(modules, {key: (lambda n, f: lambda *a: (per_step.update([n]), f(*a))[1])(_label(key), f)
                     for key, f in kernels.items()})
    step(*problem.inputs)  # count each kernel's calls in one step
    calls: collections.Counter = collections.Counter()
    samples: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    _patch(modules, {key: _timed(_label(key), f, calls, per_step, samples)
                     for key, f in kernels.items()})
    for _ in range(args.profiled):
        step(*problem.inputs)
    _patch(modules, kernels)
    print(f"{args.workload}: step CPU {1e3 * np.median(times):.3f} ms (median of {args.steps}, "
          f"Python driver), load average {os.getloadavg()[0]:.1f}")
    rows = sorted(((np.sum([c for c, _ in v]) / args.profiled,
                    np.sum([w for _, w in v]) / args.profiled, len(v) // args.profiled, k)
                   for k, v in samples.items()), reverse=True)
    for cpu, wall, count, name in rows[:args.top]:
        print(f"  {name:16s} {1e3 * cpu:7.3f} ms CPU a step (wall {1e3 * wall:.3f}), "
              f"{count} call{'s' if count > 1 else ''}")
    print(f"  all kernels {1e3 * sum(r[0] for r in rows):.3f} ms CPU a step "
          f"(wall {1e3 * sum(r[1] for r in rows):.3f})")


def _label(key: tuple[str, str]) -> str:
    return f"{key[0]}{key[1]}"


def _driver_modules(executable: object) -> list[tuple[str, dict]]:
    """(label, globals) of each generated module whose driver ``executable`` runs: one, or
    one per stage of a program with scans (``s1.`` names stage 1's calls)."""
    stages = getattr(executable, "stages", None)
    if stages is None:
        return [("", executable._driver.__globals__)]  # type: ignore[attr-defined]
    return [(f"s{i}.", stage.executable._driver.__globals__) for i, stage in enumerate(stages)]


def _patch(modules: list[tuple[str, dict]], functions: dict) -> None:
    for label, names in modules:
        names.update({k: f for (lab, k), f in functions.items() if lab == label})

if __name__ == "__main__":
    main()
