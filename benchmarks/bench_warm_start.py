"""Where a warm start goes: importing the backend, ``gc.compile`` on a warm cache, first call.

    python benchmarks/bench_warm_start.py [--workload tiny_mlp] [--processes 5]

The first process fills a fresh cache folder (not timed); each of the next ``--processes``
fresh processes builds the workload's training step and times, separately, the import of the
numba backend, ``gc.compile`` (a cache hit) and the first call. Prints median [range] per phase.
To compare two commits, run the script from each checkout alternately (``PYTHONPATH=ROOT``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(workload: str) -> None:
    sys.path.insert(0, str(HERE))
    from workloads import graphcomp_graph, make

    import graphcomp as gc

    problem = make(workload)
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = [(p, p - problem.lr * g) for p, g in zip(params, grads, strict=True)]
    t0 = time.perf_counter()
    import graphcomp.backends.numba.backend
    t1 = time.perf_counter()
    step = gc.compile(inputs, [loss], updates=updates)
    t2 = time.perf_counter()
    step(*problem.inputs)
    t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "compile": t2 - t1, "first call": t3 - t2,
                      "total": t3 - t0}))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="tiny_mlp")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workload)
        return
    with tempfile.TemporaryDirectory(prefix="graphcomp-warm-") as cache:
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": cache}
        command = [sys.executable, __file__, "--child", "--workload", args.workload]
        subprocess.run(command, env=env, check=True, capture_output=True)  # fills the cache
        runs = [json.loads(subprocess.run(command, env=env, check=True, capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1])
                for _ in range(args.processes)]
    print(f"{args.workload}, warm cache, {args.processes} fresh processes (s, median [range])\n")
    print("| phase | seconds |\n|---|---|")
    for phase in runs[0]:
        print(f"| {phase} | {spread([r[phase] for r in runs])} |")


if __name__ == "__main__":
    main()
