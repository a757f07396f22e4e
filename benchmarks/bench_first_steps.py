"""Wall time to the 1st, 100th and 10,000th training step from a cold start, per workload.

    python benchmarks/bench_first_steps.py [--workloads tiny_mlp logreg] [--processes 3]
                                           [--steps 1 100 10000] [--budget 150]
                                           [--trees A=/path/to/main B=/path/to/branch]

Three ways to train, each in a fresh process with an empty kernel cache: ``numpy`` (the step
written by hand), ``eager`` (``gc.compile(..., compile_mode="eager")``: the numba step after
a cold compile) and ``background`` (``compile_mode="background"``: numpy's interpreter runs
the graph while another process compiles, then the numba step). Each time is measured from
the moment the process is launched, so it includes starting Python and importing numpy (and
graphcomp), building the graph and compiling. The rounds alternate the three modes. A process
stops after ``--budget`` seconds; points it did not reach print as ``-``. After its last
step, a background process waits for its compile to end (not timed), so the next measurement
starts on a quiet machine.

The third column is the time from the ``gc.compile`` call to the first step's result (eager
and background; numpy by hand compiles nothing). ``--trees`` runs every process of each round
once per checkout of graphcomp (``PYTHONPATH``), alternating their order from round to round.

The last column checks the time-to-first-step issue's rule: background mode no slower than the
better of the other two by more than 10% at any point.

Python's bytecode cache is on, as in an installed package: every process reads compiled
bytecode from one folder of this run (``PYTHONPYCACHEPREFIX``), whatever
``PYTHONDONTWRITEBYTECODE`` says, filled by an untimed numpy and background process per
workload and tree before the first round. Without it each process compiled graphcomp's sources
again (~0.1 s for ``import graphcomp`` and as much for the numba backend's modules,
2026-12-07). The numpy-by-hand process imports no graphcomp.
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
MODES = ("numpy", "eager", "background")
DEFAULT_WORKLOADS = ["tiny_mlp", "mlp", "ewise", "rnn", "logreg"]


def child(workload: str, mode: str, steps: list[int], budget: float, launched: float) -> None:
    """Train ``workload`` in ``mode`` and print the wall-clock stamps of the given steps."""
    sys.path.insert(0, str(HERE))
    from workloads import graphcomp_graph, graphcomp_updates, make, numpy_step

    problem = make(workload)
    if mode == "numpy":
        step = numpy_step(problem)
        function = None
    else:
        import graphcomp as gc

        inputs, loss, params, grads = graphcomp_graph(problem)
        updates = graphcomp_updates(problem, params, grads)
        compile_called = time.time()
        function = gc.compile(inputs, loss, updates=updates, backend="numba", compile_mode=mode)
        step = function
    stamps: dict[int, float] = {}
    first_result = None
    for i in range(1, max(steps) + 1):
        step(*problem.inputs)
        if i == 1 and function is not None:
            first_result = time.time() - compile_called
        if i in steps:
            stamps[i] = time.time() - launched
        if time.time() - launched > budget:
            break
    switched = None
    if function is not None and mode == "background":
        switched = function.interpreted_calls
        function.wait(timeout=600)
    print(json.dumps({"stamps": stamps, "interpreted_steps": switched,
                      "first_result": first_result}))


def run_child(workload: str, mode: str, args: argparse.Namespace, tree: str | None = None
              ) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**args.env, "GRAPHCOMP_CACHE_DIR": cache}
        if tree is not None:  # --trees: import graphcomp from that checkout
            env["PYTHONPATH"] = tree
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(args.threads)
        launched = time.time()
        command = [sys.executable, __file__, "--child", workload, mode, "--budget",
                   str(args.budget), "--launched", repr(launched), "--steps",
                   *map(str, args.steps)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.2f}"
    return f"{median:.2f} [{min(values):.2f}-{max(values):.2f}]"


def report(workload: str, results: dict[str, list[dict]], steps: list[int]) -> list[str]:
    rows, medians = [], {}
    for mode in MODES:
        per_step = {s: [r["stamps"][str(s)] for r in results[mode]
                        if "stamps" in r and str(s) in r["stamps"]] for s in steps}
        medians[mode] = {s: statistics.median(v) if v else None for s, v in per_step.items()}
        first = [r["first_result"] for r in results[mode] if r.get("first_result") is not None]
        rows.append([workload, mode, cell(first), *(cell(per_step[s]) for s in steps)])
    verdicts = []
    for s in steps:
        ours = medians["background"][s]
        others = [m[s] for name, m in medians.items() if name != "background" and m[s]]
        if ours is not None and others:
            verdicts.append("ok" if ours <= 1.1 * min(others) else f"slower at {s}")
    rows[-1].append(", ".join(verdicts) or "-")
    return ["| " + " | ".join(row) + " |" for row in rows]


def parse_trees(specs: list[str]) -> list[tuple[str, str | None]]:
    """``--trees NAME=PATH ...`` as (name, path) pairs; one unnamed tree (the graphcomp on
    the current PYTHONPATH) when none is given."""
    return [(t.split("=", 1)[0], t.split("=", 1)[1]) for t in specs] or [("", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "MODE"))
    parser.add_argument("--launched", type=float, default=0.0)
    parser.add_argument("--workloads", nargs="+", default=DEFAULT_WORKLOADS)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds after which a process stops stepping")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trees", nargs="+", metavar="NAME=PATH", default=[],
                        help="compare checkouts of graphcomp (each process imports it from "
                        "PATH); the rounds alternate them")
    args = parser.parse_args()
    if args.child:
        child(*args.child, steps=args.steps, budget=args.budget, launched=args.launched)
        return
    trees = parse_trees(args.trees)
    bytecode = tempfile.TemporaryDirectory(prefix="bench-first-steps-pyc-")
    args.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    args.env["PYTHONPYCACHEPREFIX"] = bytecode.name
    header = ["workload", "mode", "gc.compile to 1st result (s)",
              *(f"step {s} (s)" for s in args.steps), "background within 10%"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for workload in args.workloads:
        results = {name: {mode: [] for mode in MODES} for name, _ in trees}
        for _, path in trees:  # untimed: fills the bytecode cache for every mode
            for mode in ("numpy", "background"):
                run_child(workload, mode, args, path)
        for round_ in range(args.processes):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            for name, path in trees if round_ % 2 == 0 else trees[::-1]:
                for mode in order:
                    results[name][mode].append(run_child(workload, mode, args, path))
        for name, _ in trees:
            label = f"{workload} {name}".strip()
            for line in report(label, results[name], args.steps):
                print(line, flush=True)
            errors = [r["error"] for rs in results[name].values() for r in rs if "error" in r]
            if errors:
                print(f"  {label}: {len(errors)} process(es) failed: {errors[0]}", flush=True)


if __name__ == "__main__":
    main()
