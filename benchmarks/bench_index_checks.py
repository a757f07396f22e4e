"""Cost of the label check in the mlp-digits training step: the step as built now against the
same step built without the check (one_hot's ``check_index`` node left out), alternated in one
process, median of many steps each.

    PYTHONPATH=$PWD python benchmarks/bench_index_checks.py [rounds] [steps per round]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import graphcomp as gc
from graphcomp.ops import functions
from graphcomp.train.examples.classifiers import CLASSIFIERS


def build_step(checked: bool) -> Callable[..., Any]:
    """The mlp-digits training step (as ``run_example`` compiles it), with or without the check."""
    original = functions._checked_labels
    if not checked:
        functions._checked_labels = lambda labels, num_classes: labels  # type: ignore[assignment]
    try:
        example = CLASSIFIERS["mlp-digits"]
        with gc.Graph(name="mlp-digits"):
            model = example.build(0)
            optimizer = example.make_optimizer(10_000)
            updates = optimizer.updates(model.loss, model.params)
            step = gc.compile([model.x, model.y], [model.loss, model.accuracy], updates=updates)
    finally:
        functions._checked_labels = original
    has_check = "check_index" in (step.source or "")
    assert has_check == checked, "the step was not built as asked"
    return step


def main(rounds: int = 40, steps: int = 200, batch: int = 32) -> None:
    """Print the median step time of each variant and the difference."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 64)).astype("float32")
    y = rng.integers(0, 10, batch).astype("int64")
    variants = {"without check": build_step(False), "with check": build_step(True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step in variants.values():  # warm up
        for _ in range(steps):
            step(x, y)
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            step = variants[name]
            for _ in range(steps):
                start = time.perf_counter()
                step(x, y)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    for name, us in medians.items():
        print(f"{name:>14}: median {us:.2f} us/step over {len(times[name])} steps")
    jit = variants["with check"]._executable.module.driver_jit
    print(f"numba driver: {'njit' if jit else 'Python'}")
    base = medians["without check"]
    print(f"check cost: {medians['with check'] - base:+.2f} us/step "
          f"({(medians['with check'] - base) / base * 100:+.2f} %)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
