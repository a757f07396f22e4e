"""What every built-in example shares: its entry in the registry, its options and its result.

An example is a description and a ``run`` function that trains the model and evaluates it;
each family of examples (``classifiers.py``, ...) writes its own ``run`` on ``gc.fit``.

>>> options = RunOptions(epochs=2, backend="numpy", progress=False)
>>> options.epochs_or(20)
2
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp.runtime.function import Function
from graphcomp.train import checkpoint
from graphcomp.train.fit import History


@dataclass(frozen=True)
class RunOptions:
    """How ``graphcomp train`` (or ``run_example``) asked for the example to run."""

    epochs: int | None = None  # None: the example's own number
    backend: str | None = None  # None: gc.compile's default
    progress: bool = True
    seed: int = 0
    save: str | None = None  # checkpoint of parameters and optimizer state
    plot: str | None = None  # loss/metric curves or the example's own picture (matplotlib)
    compile_mode: str = "eager"
    data: str | None = None  # a folder of the example's own data (cnn-digits: MNIST IDX files)
    noise: float | None = None  # examples that accept it: train on inputs with this much noise

    def epochs_or(self, default: int) -> int:
        """The epochs asked for, or the example's ``default``."""
        return default if self.epochs is None else self.epochs

    def compile_options(self) -> dict[str, Any]:
        """Keyword arguments for ``gc.compile``."""
        options: dict[str, Any] = {"compile_mode": self.compile_mode}
        if self.backend is not None:
            options["backend"] = self.backend
        return options

    def check_outputs(self) -> None:
        """Refuse unwritable ``save``/``plot`` paths before anything is trained."""
        for path, what in ((self.save, "checkpoint"), (self.plot, "plot")):
            if path is not None:
                checkpoint.check_writable(path, what)


@dataclass
class ExampleResult:
    """What a run measured. ``metrics`` holds the held-out numbers (``test_loss``, ...)."""

    name: str
    backend: str
    history: History
    metrics: dict[str, float]
    headline: str  # the summary's first line: the held-out result in words
    compile_seconds: float
    cache_hit: bool
    interpreted: bool  # the backend runs the graph without generating code (numpy)
    wall_seconds: float
    model: Any = field(repr=False, default=None)
    optimizer: Any = field(repr=False, default=None)
    # compile_mode="background": training steps run on numpy before the switch (all of them
    # when training ended first), and the backend the step ended on
    interpreted_steps: int = 0
    backend_at_end: str = ""
    compiled_elsewhere: bool = False  # another process compiled what the step switched to
    extra_lines: list[str] = field(default_factory=list)  # printed after the summary

    @property
    def test_loss(self) -> float:
        return self.metrics.get("test_loss", float("nan"))

    @property
    def test_accuracy(self) -> float:
        return self.metrics.get("test_accuracy", float("nan"))

    @property
    def step_seconds(self) -> float:
        """Median wall time of one training step over the run's epochs."""
        times = self.history.history.get("step_time", [])
        return float(np.median(times)) if times else float("nan")

    @property
    def steps_per_second(self) -> float:
        return 1.0 / self.step_seconds if self.step_seconds > 0 else float("nan")


@dataclass(frozen=True)
class Example:
    """A built-in example: a one-line description and the function that runs it."""

    description: str
    run: Callable[[str, RunOptions], ExampleResult]
    accepts_noise: bool = False  # ``graphcomp train NAME --noise STD``


def note(message: str) -> None:
    """A progress message on stderr (stdout keeps the results)."""
    print(message, file=sys.stderr, flush=True)


def readiness(step: Function, *others: Function) -> str:
    """One line saying whether the compiled functions are ready, and how long that took."""
    seconds = step.compile_seconds + sum(f.compile_seconds for f in others)
    if step.backend_in_use != step.backend:
        return (f"backend {step.backend}: compiling in the background; training starts on "
                f"numpy meanwhile ({seconds:.2f} s to start)")
    hit = step.cache_hit and all(f.cache_hit for f in others)
    how = "interpreted" if step.source is None else "kernel cache hit" if hit else "cache miss"
    return f"backend {step.backend}: ready in {seconds:.2f} s ({how})"


def result_of(name: str, step: Function, others: list[Function], history: History,
              metrics: dict[str, float], headline: str, started: float, **extra: Any
              ) -> ExampleResult:
    """The ``ExampleResult`` of a run whose training step is ``step``."""
    import time

    return ExampleResult(
        name=name, backend=step.backend, history=history, metrics=metrics, headline=headline,
        compile_seconds=step.compile_seconds + sum(f.compile_seconds for f in others),
        cache_hit=step.cache_hit and all(f.cache_hit for f in others),
        interpreted=step.backend == "numpy", wall_seconds=time.perf_counter() - started,
        interpreted_steps=step.interpreted_calls, backend_at_end=step.backend_in_use,
        compiled_elsewhere=step.compiled_elsewhere, **extra,
    )
