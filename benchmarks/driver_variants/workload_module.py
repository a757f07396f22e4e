"""Shared by the driver-variant scripts: a workload's training step as a planned program.

    problem, prepared = prepared_step("rnn")
    module = generate_module(prepared, driver_jit=False)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for workloads

from workloads import Problem, graphcomp_graph, make

from graphcomp.backends.numba.backend import prepare
from graphcomp.backends.numba.codegen import GeneratedModule, generate
from graphcomp.backends.numba.lanes import lanes_array
from graphcomp.runtime.program import build_program


def prepared_step(name: str) -> tuple[Problem, tuple[Any, Any, Any, Any]]:
    """(problem, (program, lowered, fusion plan, memory plan)) of a workload's training step."""
    problem = make(name)
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = [(p, p - problem.lr * g) for p, g in zip(params, grads, strict=True)]
    program = build_program(inputs, [loss], updates)
    return problem, (program, *prepare(program))


def generate_module(prepared: tuple[Any, Any, Any, Any], driver_jit: bool) -> GeneratedModule:
    """The generated module with the driver kind forced."""
    _, lp, plan, memory = prepared
    return generate(lp, plan, memory, driver_jit=driver_jit)


def median_step_us(step, blocks: int = 5, per_block: int = 20) -> float:
    """Median microseconds per call of ``step()`` after 5 warm-up calls, 0.2 s pause per block."""
    import time

    import numpy as np

    for _ in range(5):
        step()
    samples = []
    for _ in range(blocks):
        time.sleep(0.2)
        for _ in range(per_block):
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
    return round(float(np.median(samples)) * 1e6, 1)


def driver_arguments(exe: Any, inputs: list) -> tuple[Any, list]:
    """(the bound step, its arguments for ``inputs``) of an executable with a Python driver
    (no symbolic dims in these workloads).

    The step takes inputs and parameters, then a lanes array when the module splits products
    (a disabled one here: every product runs whole on the calling thread).
    """
    state = exe._states.get(()) or exe._bind(())
    args = [*inputs, *[exe._storage[i] for i in exe._param_ids]]
    if exe.module.uses_lanes:
        args.append(lanes_array(enabled=False))
    return state.step, args
