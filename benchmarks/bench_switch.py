"""Where background mode's time goes against eager compile, per fresh process.

    python benchmarks/bench_switch.py [--workloads tiny_mlp mlp logreg vae] [--processes 3]
                                      [--steps 10000] [--budget 60]
                                      [--trees A=/path/to/main B=/path/to/branch]

Each process (empty kernel cache, launched fresh, modes and trees alternating from round to
round) builds the workload's training step, compiles it with ``compile_mode="eager"`` or
``"background"`` and runs ``--steps`` steps, stamping each one. It reports:

- ``compile``: eager: seconds in ``gc.compile``; background: from the start of the
  background compile to the end of the compiling process (``process_seconds``);
- ``ready``: background: to the loaded native code (``ready_seconds``), and ``switch``: to the
  first call on it (``Function.switch_seconds``), with the number of interpreted steps;
- median step time (ms) before the switch (interpreted) and after it (native, the steps from
  the 50th after the switch on), and over the last 1,000 steps;
- the process's own CPU seconds and the compiling processes' (``RUSAGE_CHILDREN``, read after
  the last step, so only children that had ended by then count);
- the steps run (fewer than ``--steps`` when ``--budget`` seconds of steps ended first) and
  the total wall time of the steps and of the whole process (from launch).

So a background run that ends later than eager is attributed to a later switch, slower
interpreted steps, a slower native step, or CPU taken by the compiling processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_first_steps import parse_trees

HERE = Path(__file__).resolve().parent
MODES = ("eager", "background")
SETTLE_STEPS = 50  # native steps after the switch left out of its median (warm-up)


def child(workload: str, mode: str, steps: int, budget: float, launched: float) -> None:
    """Train ``workload`` in ``mode``; print one JSON line of measurements."""
    sys.path.insert(0, str(HERE))
    from workloads import graphcomp_graph, graphcomp_updates, make

    import graphcomp as gc
    from graphcomp.backends.numba.blas import blas_thread_count

    problem = make(workload)
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = graphcomp_updates(problem, params, grads)
    called = time.perf_counter()
    function = gc.compile(inputs, loss, updates=updates, backend="numba", compile_mode=mode)
    compiled = time.perf_counter() - called
    pending = function._pending
    stamps = np.zeros(steps + 1)
    stamps[0] = time.perf_counter()
    done = 0
    for i in range(1, steps + 1):
        function(*problem.inputs)
        stamps[i] = time.perf_counter()
        done = i
        if stamps[i] - stamps[0] > budget:
            break
    stamps = stamps[:done + 1]
    step_ms = np.diff(stamps) * 1e3
    interpreted = function.interpreted_calls
    before = step_ms[:interpreted]
    after = step_ms[interpreted + SETTLE_STEPS:]
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts = blas_thread_count()
    result = {
        "steps": done,
        # (a checkout before these were recorded: None)
        "compile": compiled if pending is None else getattr(pending, "process_seconds", None),
        "ready": getattr(pending, "ready_seconds", None),
        "switch": function.switch_seconds,
        "interpreted": interpreted,
        "before_ms": float(np.median(before)) if len(before) else None,
        "after_ms": float(np.median(after)) if len(after) else None,
        "last_ms": float(np.median(step_ms[-1000:])),
        "steps_s": float(stamps[-1] - stamps[0]),
        "total_s": time.time() - launched,
        "cpu_self": own.ru_utime + own.ru_stime,
        "cpu_children": children.ru_utime + children.ru_stime,
        "blas_threads": None if counts is None else int(counts[0]()),
    }
    print(json.dumps(result))
    if pending is not None:
        function.wait(timeout=600)  # the next process starts on a quiet machine


def run_child(workload: str, mode: str, args: argparse.Namespace, tree: str | None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": cache}
        if tree is not None:
            env["PYTHONPATH"] = tree
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(args.threads)
        command = [sys.executable, __file__, "--child", workload, mode, "--steps",
                   str(args.steps), "--budget", str(args.budget), "--launched",
                   repr(time.time())]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[0])


FIELDS = ("steps", "compile", "ready", "switch", "interpreted", "before_ms", "after_ms", "last_ms",
          "cpu_self", "cpu_children", "steps_s", "total_s", "blas_threads")


def cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    median = statistics.median(values)
    digits = 0 if all(float(v).is_integer() for v in values) else 2
    if len(values) == 1 or min(values) == max(values):
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "MODE"))
    parser.add_argument("--launched", type=float, default=0.0)
    parser.add_argument("--workloads", nargs="+", default=["tiny_mlp", "mlp", "logreg", "vae"])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trees", nargs="+", metavar="NAME=PATH", default=[])
    args = parser.parse_args()
    if args.child:
        child(*args.child, steps=args.steps, budget=args.budget, launched=args.launched)
        return
    trees = parse_trees(args.trees)
    header = ["workload", "mode", "steps run", "compile (s)", "ready (s)", "switch (s)",
              "interpreted", "step before (ms)", "step after (ms)", "last 1000 (ms)",
              "CPU self (s)", "CPU compile (s)", "steps (s)", "total (s)", "BLAS threads"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for workload in args.workloads:
        results = {(name, mode): [] for name, _ in trees for mode in MODES}
        for round_ in range(args.processes):
            order = [(n, p, m) for n, p in trees for m in MODES]
            for name, path, mode in order if round_ % 2 == 0 else order[::-1]:
                results[name, mode].append(run_child(workload, mode, args, path))
        for (name, mode), runs in results.items():
            ok = [r for r in runs if "error" not in r]
            label = f"{workload} {name}".strip()
            print("| " + " | ".join([label, mode, *(cell([r[f] for r in ok])
                                                  for f in FIELDS)]) + " |", flush=True)
            for r in runs:
                if "error" in r:
                    print(f"  {label} {mode}: failed: {r['error']}", flush=True)


if __name__ == "__main__":
    main()
