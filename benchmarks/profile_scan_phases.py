"""Where a training step's time goes, phase by phase: the unrolled rnn against rnn_scan.

Compiles each workload's step on the numba backend (``benchmarks/workloads.py``, Python
drivers), times ``--steps`` steps, then ``--profiled`` more with every stage of a staged
program (the segments between scans, each scan's loop) and every kernel and ``gemm_split``
call wrapped in a timer, and prints per step: each stage's calling-thread CPU and wall time,
and the CPU of each kind of call summed over the step (products, elementwise kernels, and
what is left: the drivers' and loops' Python). Workloads alternate in blocks so drift hits
all alike. ``time.thread_time`` is the calling thread's: a product's half run by the lanes'
helper thread is not in it (compare the wall time). Run in a fresh process:

    PYTHONPATH=$PWD python benchmarks/profile_scan_phases.py rnn rnn_scan [--profiled 200]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Callable
from typing import Any

Samples = dict[str, list[float]]


def _timer(name: str, call: Callable, cpu: collections.Counter) -> Callable:
    """``call`` adding its calling-thread CPU seconds to ``cpu[name]``."""
    def run(*args: Any) -> Any:
        start = time.thread_time()
        try:
            return call(*args)
        finally:
            cpu[name] += time.thread_time() - start
    return run


def _wrap_module(names: dict, prefix: str, cpu: collections.Counter, done: set) -> None:
    """Wrap the kernels (``k<i>``) and products (``gemm_split``) a driver calls by name."""
    if id(names) in done:
        return
    done.add(id(names))
    for key, value in list(names.items()):
        if (key[:1] == "k" and key[1:].isdigit()) or key in ("gemm_split", "copy_flat"):
            kind = "products" if key == "gemm_split" else "elementwise kernels"
            names[key] = _timer(f"{prefix} {kind}", value, cpu)


def _stage_timers(executable: Any, cpu: collections.Counter, wall: collections.Counter
                  ) -> list[str]:
    """Wrap each stage of a staged executable (or the one module of a plain one)."""
    from graphcomp.backends.numba.stages import ScanLoop, StagedExecutable

    done: set = set()
    if not isinstance(executable, StagedExecutable):
        _wrap_module(executable._driver.__globals__, "step", cpu, done)
        return ["step"]
    labels = []
    for i, stage in enumerate(executable.stages):
        if isinstance(stage, ScanLoop):
            label = f"{i} {'backward' if stage.op.attrs['reverse'] else 'forward'} loop"
        else:
            label = f"{i} segment"
        labels.append(label)
        _wrap_module(stage.executable._driver.__globals__, label, cpu, done)
        # the last segment is run through its executable (StagedExecutable.run)
        owner = stage.executable if i == len(executable.stages) - 1 else stage
        original = owner.run

        def run(*args: Any, original: Callable = original, label: str = label) -> Any:
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args)
            finally:
                cpu[f"{label} (all)"] += time.thread_time() - start_cpu
                wall[f"{label} (all)"] += time.perf_counter() - start
        owner.run = run
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="+")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--profiled", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    import workloads
    from threadpoolctl import threadpool_limits

    import graphcomp.backends.numba.placement as placement

    threadpool_limits(2)
    placement.JIT_DRIVER_MAX_WORK = 0  # Python drivers: their calls can be wrapped
    steps = {}
    for name in args.workloads:
        problem = workloads.make(name)
        step = workloads.graphcomp_step(problem, "numba")
        for _ in range(10):
            step(*problem.inputs)
        steps[name] = (step, problem)
    plain: Samples = collections.defaultdict(list)
    for _ in range(args.steps // 20):
        for name, (step, problem) in steps.items():
            for _ in range(20):
                start = time.thread_time()
                step(*problem.inputs)
                plain[name].append(time.thread_time() - start)
    for name, (step, problem) in steps.items():
        cpu: collections.Counter = collections.Counter()
        wall: collections.Counter = collections.Counter()
        labels = _stage_timers(step._executable, cpu, wall)
        start, start_cpu = time.perf_counter(), time.thread_time()
        for _ in range(args.profiled):
            step(*problem.inputs)
        whole_wall, whole_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
        per = 1e3 / args.profiled
        print(f"{name}: step CPU {1e3 * np.median(plain[name]):.3f} ms unprofiled (median of "
              f"{len(plain[name])}); profiled: CPU {per * whole_cpu:.3f}, wall "
              f"{per * whole_wall:.3f} ms a step; load {os.getloadavg()[0]:.1f}")
        for label in labels:
            total = cpu.get(f"{label} (all)", whole_cpu)
            calls = {k: v for k, v in cpu.items() if k.startswith(f"{label} ")
                     and not k.endswith("(all)")}
            if f"{label} (all)" in wall:
                print(f"  {label:20s} CPU {per * total:.3f} ms, wall "
                      f"{per * wall[f'{label} (all)']:.3f} ms")
            else:
                print(f"  {label:20s} CPU {per * total:.3f} ms")
            for key, value in sorted(calls.items()):
                print(f"    {key[len(label) + 1:]:22s} {per * value:.3f} ms CPU")
            print(f"    {'the rest (Python)':22s} {per * (total - sum(calls.values())):.3f} ms CPU")


if __name__ == "__main__":
    main()
