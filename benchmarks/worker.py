"""Measure one workload in this (fresh) process and print the result as one JSON line.

Run by ``benchmarks/run.py``; by hand::

    python benchmarks/worker.py --workload mlp --backend numba --repeats 50

It times, in this order: building the graph and its gradient; ``gc.compile`` and the first
call (cold or warm depending on ``GRAPHCOMP_CACHE_DIR``); then, unless ``--compile-only``,
alternating blocks of the hand-written numpy step and the graphcomp step (after warm-up),
and for workloads with matmuls the same GEMMs run alone with ``np.dot``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

_START = time.perf_counter()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=INT",
                        help="workload option, e.g. hidden_layers=4 or steps=128")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds of sleep before each timed block")
    parser.add_argument("--compile-only", action="store_true")
    return parser.parse_args()


ARGS = _parse()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before numpy, scipy or numba load their pools

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from workloads import Problem, graphcomp_graph, graphcomp_updates, make, numpy_step  # noqa: E402

import graphcomp as gc  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _START


def _threadpools() -> list[dict[str, object]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "num_threads", "version", "filepath")
    return [{k: pool.get(k) for k in keep} for pool in threadpool_info()]


def _limit_threads(threads: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def _time_blocks(sides: dict[str, object], args: list[np.ndarray], repeats: int,
                 pause: float, blocks: int = 5) -> dict[str, list[tuple[float, float]]]:
    """Per-step (wall, CPU) seconds of each side, alternating blocks so drift hits both alike.

    The CPU time is the calling thread's (``time.thread_time``): a step that waited for a core
    (another process ran) shows a wall time above it. Each block starts after ``pause`` seconds
    of sleep: numpy and numba (through scipy) use two OpenBLAS copies whose idle threads spin
    for a while after a call, so without the pause one side's spinning threads steal the cores
    from the other's first steps.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    per_block = -(-repeats // blocks)
    clock, cpu = time.perf_counter, time.thread_time
    for _ in range(blocks):
        for name, step in sides.items():
            time.sleep(pause)
            step(*args)  # one untimed step after the pause
            samples = times[name]
            for _ in range(per_block):
                start, start_cpu = clock(), cpu()
                step(*args)
                samples.append((clock() - start, cpu() - start_cpu))
    return times


def _summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Median wall and CPU milliseconds of a side's steps, and the share of steps whose wall
    time exceeds their CPU time by more than 0.2 ms (they waited for a core)."""
    wall, cpu = (np.array(column) * 1e3 for column in zip(*samples, strict=True))
    return {"ms": float(np.median(wall)), "cpu_ms": float(np.median(cpu)),
            "waited": float(np.mean(wall - cpu > 0.2))}


def _gemm_seconds(problem: Problem, repeats: int, pause: float) -> float | None:
    """Median time of the workload's GEMMs run alone with np.dot into preallocated outputs."""
    if not problem.gemm_shapes:
        return None
    dtype = next(iter(problem.params.values())).dtype
    rng = np.random.default_rng(1)
    operands = [
        (rng.random(a).astype(dtype), rng.random(b).astype(dtype), np.empty((a[0], b[1]), dtype))
        for a, b in problem.gemm_shapes
    ]
    samples = []
    time.sleep(pause)
    for i in range(repeats + 5):
        start = time.perf_counter()
        for a, b, out in operands:
            np.dot(a, b, out=out)
        if i >= 5:
            samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def main() -> None:
    options = dict(item.split("=") for item in ARGS.option)
    problem = make(ARGS.workload, **{k: int(v) for k, v in options.items()})
    result: dict[str, object] = {
        "workload": problem.name, "shape": problem.shape, "backend": ARGS.backend,
        "import_s": IMPORT_SECONDS, "pid": os.getpid(),
        "cache_dir": os.environ.get("GRAPHCOMP_CACHE_DIR"),
    }
    with _limit_threads(ARGS.threads):
        start = time.perf_counter()
        inputs, loss, params, grads = graphcomp_graph(problem)
        updates = graphcomp_updates(problem, params, grads)
        result["build_s"] = time.perf_counter() - start
        result["nodes"] = len(loss.node.graph.nx)
        start = time.perf_counter()
        step = gc.compile(inputs, loss, updates=updates, backend=ARGS.backend)
        first_loss = float(step(*problem.inputs))
        result["first_result_s"] = time.perf_counter() - start
        result["compile_s"] = step.compile_seconds
        result["cache_hit"] = step.cache_hit
        result["source_lines"] = len(step.source.splitlines()) if step.source else 0
        result["schedule"] = len(step.program.schedule)
        result["first_loss"] = first_loss
        if not ARGS.compile_only:
            by_hand = numpy_step(problem)
            for _ in range(ARGS.warmup):
                by_hand(*problem.inputs)
                step(*problem.inputs)
            times = _time_blocks({"numpy": by_hand, "graphcomp": step}, problem.inputs,
                                 ARGS.repeats, ARGS.pause)
            for side in ("numpy", "graphcomp"):
                for key, value in _summary(times[side]).items():
                    result[f"{side}_{key}"] = value
            result["steps"] = len(times["graphcomp"])
            gemm = _gemm_seconds(problem, ARGS.repeats, ARGS.pause)
            result["gemm_ms"] = None if gemm is None else gemm * 1e3
            result["gemms"] = len(problem.gemm_shapes)
        result["threadpools"] = _threadpools()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
