"""``gc.scan(..., checkpoint=k)``: residual bytes and training step time against no checkpoint.

For the rnn_scan and lstm workloads (T = 32, batch 32, hidden 128, f32, numba backend), one
compiled training step per k; prints the residual bytes the forward scan keeps for the
gradient (``scan_residual_bytes``, which tests/loops/test_scan_checkpoint.py checks against
the arrays held) and the step time: median [range] over BLOCKS blocks of each block's median
of STEPS steps, the variants alternating block by block, the ratio to k = None per block,
and the fastest single step of each variant (the least disturbed on a loaded machine).

    PYTHONPATH=$PWD python benchmarks/bench_scan_checkpoint.py rnn_scan lstm rnn_scan:128

(``name:T`` sets the number of steps.)
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

import graphcomp as gc
from graphcomp.inspect.bytes import format_bytes, scan_residual_bytes

BLOCKS, STEPS = 10, 10
KS = (None, 2, 4, 8, 16)


def _rnn_build(k: int | None):
    def build(p: dict, inputs: list) -> gc.Tensor:
        x, y = inputs

        def step(h: gc.Tensor, x_t: gc.Tensor) -> tuple:
            return gc.tanh(x_t @ p["Wx"] + h @ p["Wh"] + p["b"]), None

        h, _ = gc.scan(step, gc.tanh(x[0] @ p["Wx"] + p["b"]), x[1:], checkpoint=k)
        return gc.mean(gc.square(h @ p["Wo"] + p["bo"] - y))
    return build


def _lstm_build(k: int | None, hidden: int, batch: int):
    def build(p: dict, inputs: list) -> gc.Tensor:
        x, y = inputs
        cell = gc.nn.LSTMCell(hidden, p["Wx"], p["Wh"], p["b"])
        (h, _), _ = gc.scan(cell.recur, cell.zero_carry(batch), cell.project(x), checkpoint=k)
        return gc.mean(gc.square(h - y))
    return build


def _variant(workloads, name: str, k: int | None) -> tuple:
    """(compiled step, problem, residual bytes of the forward scan) of one variant."""
    base, _, steps = name.partition(":")
    problem = workloads.make(base, **({"steps": int(steps)} if steps else {}))
    if name.startswith("rnn_scan"):
        build = _rnn_build(k)
    else:
        build = _lstm_build(k, problem.params["Wh"].shape[0], problem.inputs[0].shape[1])
    problem = replace(problem, build_loss=build)
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    (scan,) = [n for n in loss.graph.nodes() if n.op == "scan" and n.role != "adjoint"]
    residual = format_bytes(scan_residual_bytes(scan)[1])
    updates = workloads.graphcomp_updates(problem, params, grads)
    step = gc.compile(inputs, loss, updates=updates, backend="numba")
    return step, problem, residual


def _bench(workloads, name: str) -> None:
    variants = {k: _variant(workloads, name, k) for k in KS}
    for step, problem, _ in variants.values():
        for _ in range(5):
            step(*problem.inputs)
    medians: dict = {k: [] for k in KS}
    fastest: dict = {k: [] for k in KS}
    for _ in range(BLOCKS):
        for k, (step, problem, _) in variants.items():
            times = []
            for _ in range(STEPS):
                start = time.perf_counter()
                step(*problem.inputs)
                times.append(1e3 * (time.perf_counter() - start))
            medians[k].append(float(np.median(times)))
            fastest[k].append(min(times))
    base_bytes = variants[None][2]
    base = np.array(medians[None])
    print(f"{name} (numba, {BLOCKS} blocks of {STEPS} steps, load "
          f"{os.getloadavg()[0]:.1f})")
    print("| checkpoint | residual bytes | cut | step ms, median [range] | ratio to None | "
          "fastest step ms (ratio) |")
    print("|---|---|---|---|---|---|")
    for k in KS:
        v, r = np.array(medians[k]), np.array(medians[k]) / base
        residual = variants[k][2]
        cut = base_bytes / residual if isinstance(residual, int) and residual else float("nan")
        print(f"| {k} | {residual:,} | {cut:.2f}x | {np.median(v):.2f} [{v.min():.2f}-"
              f"{v.max():.2f}] | {np.median(r):.2f} [{r.min():.2f}-{r.max():.2f}] | "
              f"{min(fastest[k]):.2f} ({min(fastest[k]) / min(fastest[None]):.2f}) |")


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    threadpool_limits(2)
    for name in sys.argv[1:] or ["rnn_scan"]:
        _bench(workloads, name)


if __name__ == "__main__":
    main()
