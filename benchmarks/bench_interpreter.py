"""The numpy backend's training step (the interpreter that serves while Numba compiles)
against the same step written by hand in numpy, per workload.

    python benchmarks/bench_interpreter.py [--workloads tiny_mlp mlp] [--blocks 9]
                                           [--seconds 0.3] [--threads 1] [--rounds 1]
                                           [--trees A=/path/to/main B=/path/to/branch]

Each workload runs in a fresh process per tree (graphcomp imported from that checkout with
``PYTHONPATH``; the workloads are this checkout's ``benchmarks/workloads.py``): both steps are
warmed up, then ``--blocks`` blocks alternate the two (hand first in even blocks, the
interpreter first in odd ones), each side stepping for about ``--seconds``. A block gives each
side's median step time and their ratio, interpreter / hand, so the ratio compares steps taken
moments apart. The table prints the median [min-max] over the blocks (and rounds) of each.
BLAS runs ``--threads`` threads on both sides (threadpoolctl). ``--rounds`` repeats the
processes, alternating the order of the trees from round to round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_WORKLOADS = ["tiny_mlp", "mlp", "logreg", "vae", "rnn", "cnn", "word2vec"]


def _block(step, inputs: list, seconds: float) -> float:
    """Median seconds per step of ``step`` stepping for about ``seconds``."""
    times = []
    end = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        step(*inputs)
        now = time.perf_counter()
        times.append(now - start)
        if now > end and len(times) >= 3:
            return statistics.median(times)


def child(workload: str, blocks: int, seconds: float, threads: int) -> None:
    """Time ``workload``'s two steps in alternating blocks; print the results as JSON."""
    sys.path.insert(0, str(HERE))
    from threadpoolctl import threadpool_limits
    from workloads import graphcomp_step, make, numpy_step

    threadpool_limits(threads)
    problem = make(workload)
    hand, interpreted = numpy_step(problem), graphcomp_step(problem, "numpy")
    for _ in range(3):
        hand(*problem.inputs)
        interpreted(*problem.inputs)
    result: dict[str, list[float]] = {"hand": [], "interpreter": []}
    for block in range(blocks):
        order = [("hand", hand), ("interpreter", interpreted)]
        for name, step in order if block % 2 == 0 else order[::-1]:
            result[name].append(_block(step, problem.inputs, seconds))
    print(json.dumps(result))


def _run(workload: str, tree: str | None, args: argparse.Namespace) -> dict[str, list[float]]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    command = [sys.executable, str(Path(__file__).resolve()), "--child", workload,
               "--blocks", str(args.blocks), "--seconds", str(args.seconds),
               "--threads", str(args.threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _span(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    scaled = [v * scale for v in values]
    return (f"{statistics.median(scaled):.{digits}f} "
            f"[{min(scaled):.{digits}f}-{max(scaled):.{digits}f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=DEFAULT_WORKLOADS)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trees", nargs="+", metavar="NAME=PATH", default=[])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.blocks, args.seconds, args.threads)
        return
    trees: list[tuple[str, str | None]] = [
        (t.split("=", 1)[0], t.split("=", 1)[1]) for t in args.trees] or [("", None)]
    print(f"{'workload':<10} {'tree':<5} {'by hand, ms':>24} {'interpreter, ms':>24} "
          f"{'interpreter / hand':>22}")
    for workload in args.workloads:
        results: dict[str, dict[str, list[float]]] = {
            name: {"hand": [], "interpreter": []} for name, _ in trees}
        for round_ in range(args.rounds):
            for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
                got = _run(workload, tree, args)
                for side in ("hand", "interpreter"):
                    results[name][side] += got[side]
        for name, _ in trees:
            r = results[name]
            ratios = [i / h for i, h in zip(r["interpreter"], r["hand"], strict=True)]
            print(f"{workload:<10} {name:<5} {_span(r['hand'], 1e3):>24} "
                  f"{_span(r['interpreter'], 1e3):>24} {_span(ratios, digits=2):>22}",
                  flush=True)


if __name__ == "__main__":
    main()
