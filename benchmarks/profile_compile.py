"""Where a workload's cold compile goes: numba's compile events, per function and per module.

Compiles a workload's training step (``benchmarks/workloads.py``, numba backend) in a fresh
process with an empty kernel cache, listening to numba's ``numba:compile`` events, and prints
the wall time and the process's CPU time of ``gc.compile`` plus the first step, then the CPU
seconds numba spent compiling each module and each function (its own time: the functions it
compiled on the way are counted under their own names). Modules are named by the end of their
generated name (kernels live in modules named by a hash of their text). Run in a fresh
process, with the graphcomp to measure on ``PYTHONPATH``:

    PYTHONPATH=$PWD python benchmarks/profile_compile.py rnn_scan [--steps 32] [--top 12]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

os.environ["GRAPHCOMP_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphcomp-profile-compile-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--steps", type=int, default=None, help="sequence length (T)")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads
    from numba.core import event

    stack: list[list] = []  # [name, CPU at start, CPU of the compiles it started]
    own: dict[str, float] = collections.defaultdict(float)

    class Listener(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            function = ev.data["dispatcher"].py_func
            name = f"{function.__qualname__} in ...{function.__module__[-20:]}"
            stack.append([name, time.process_time(), 0.0])

        def on_end(self, ev: event.Event) -> None:
            name, start, inner = stack.pop()
            spent = time.process_time() - start
            own[name] += spent - inner
            if stack:
                stack[-1][2] += spent

    event.register("numba:compile", Listener())
    options = {} if args.steps is None else {"steps": args.steps}
    problem = workloads.make(args.workload, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    step = workloads.graphcomp_step(problem, "numba")
    step(*problem.inputs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    modules: dict[str, float] = collections.defaultdict(float)
    for name, seconds in own.items():
        modules[name.split(" in ")[1]] += seconds
    print(f"{args.workload} (T={args.steps or 'default'}): compile and first step wall "
          f"{wall:.2f} s, process CPU {cpu:.2f} s, of which numba compiling "
          f"{sum(own.values()):.2f} s; load average {os.getloadavg()[0]:.1f}")
    print("  by module (CPU s):")
    for name, seconds in sorted(modules.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"    {name:28s} {seconds:6.2f}")
    print("  by function (CPU s, own):")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"    {name:52s} {seconds:6.3f}")


if __name__ == "__main__":
    main()
