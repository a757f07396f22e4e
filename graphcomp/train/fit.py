"""``gc.fit``: run a compiled training step over data for some epochs, and keep the history.

>>> # step = gc.compile([x, y], [loss, acc], updates=opt.updates(loss, params))
>>> # hist = gc.fit(step, data=(X, Y), epochs=20, batch_size=64, seed=0,
>>> #               validation=(evaluate, (X_val, Y_val)))
>>> # hist.history["loss"], hist.history["val_acc"], hist.history["time"]
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from graphcomp.errors import InputError, NonFiniteError
from graphcomp.train.data import batches, check_same_length, num_batches
from graphcomp.train.progress import make_progress

__all__ = ["History", "fit"]

Arrays = Sequence[np.ndarray]


# Why ``fit`` ended early: Ctrl-C, or a NaN/inf loss with ``on_nonfinite="stop"``.
StopReason = Literal["interrupted", "nonfinite"]
# What ``fit`` does on a NaN/inf loss: raise ``NonFiniteError``, or end training.
OnNonfinite = Literal["raise", "stop"]


@dataclass
class History:
    """What ``fit`` did.

    ``history`` maps each metric to one value per completed epoch: the step's outputs
    (``"loss"``, ``"acc"``… averaged over the epoch's examples), the validation outputs
    (``"val_loss"``…), ``"time"`` (the epoch's wall seconds, validation included) and
    ``"step_time"`` (the median seconds of one training step in that epoch).
    ``stopped`` is ``None`` after all epochs, ``"interrupted"`` after Ctrl-C, ``"nonfinite"``
    when ``on_nonfinite="stop"`` ended training. For a step compiled with
    ``compile_mode="background"``, ``interpreted_steps`` counts the steps the numpy backend ran
    before the switch and ``backend_at_end`` says what the last step ran on.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    steps: int = 0
    first_step_seconds: float = 0.0
    stopped: StopReason | None = None
    interpreted_steps: int = 0
    backend_at_end: str = ""

    def record(self, epoch: int, metrics: dict[str, float]) -> None:
        """Append one completed epoch's metrics."""
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        self.epochs = epoch

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return (f"History(epochs={self.epochs}, steps={self.steps}, stopped={self.stopped}, "
                f"last={last})")


def fit(
    step: Callable[..., Any],
    data: Arrays,
    epochs: int = 1,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | np.random.Generator | None = 0,
    validation: tuple[Callable[..., Any], Arrays] | None = None,
    progress: bool = True,
    on_nonfinite: OnNonfinite = "raise",
    drop_last: bool = False,
    names: Sequence[str] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Train: call ``step`` on minibatches of ``data`` for ``epochs`` epochs.

    ``step`` is a compiled function (usually with optimizer updates) whose outputs are scalars,
    the first being the loss; ``data`` holds one array per input, aligned on the first axis.
    The last batch of an epoch is smaller when the batch size does not divide the data (unless
    ``drop_last``). ``shuffle`` draws a new order each epoch from ``seed``, reproducibly.
    ``validation=(evaluate, (X_val, Y_val))`` calls ``evaluate`` on the whole set after each
    epoch. A NaN or inf loss raises ``NonFiniteError`` naming the step, or with
    ``on_nonfinite="stop"`` ends training. Ctrl-C ends training after the step in progress, so
    the parameters are those of the last finished step. ``names`` label the outputs in the
    history (default: the output nodes' names, else ``loss``, ``output1``, …); validation
    metrics get the same names with a ``val_`` prefix. ``on_epoch_end(epoch, metrics)`` is
    called after each completed epoch, once its metrics are recorded (to print a sample, save
    a checkpoint…).

    >>> # hist = gc.fit(step, data=(X, Y), epochs=5, batch_size=64, seed=0)
    """
    if on_nonfinite not in ("raise", "stop"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    arrays = [np.asarray(a) for a in data]
    n = check_same_length(arrays, "fit data")
    _check_arity(step, arrays, "fit data")
    n_batches = num_batches(n, batch_size, drop_last)
    if n_batches == 0:
        raise InputError(f"fit: {n} examples make no batch of {batch_size} with drop_last=True")
    if validation is not None:
        evaluate, val_arrays = validation[0], [np.asarray(a) for a in validation[1]]
        check_same_length(val_arrays, "validation data")
        _check_arity(evaluate, val_arrays, "validation data")

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    loop = _Loop(step, n_batches, on_nonfinite, list(names) if names is not None else None)
    display = make_progress(progress, epochs)
    try:
        with _deferred_interrupt() as interrupt:
            for epoch in range(1, epochs + 1):
                epoch_start = time.perf_counter()
                display.start_epoch(epoch, n_batches)
                batch_iter = batches(*arrays, batch_size=batch_size, shuffle=shuffle, seed=rng,
                                     drop_last=drop_last)
                metrics = loop.run_epoch(epoch, batch_iter, display, interrupt)
                if metrics is None:
                    break
                if validation is not None:
                    metrics.update(_validate(evaluate, val_arrays, loop.given_names))
                metrics["time"] = time.perf_counter() - epoch_start
                metrics["step_time"] = float(np.median(loop.step_times))
                loop.history.record(epoch, metrics)
                display.end_epoch({k: v for k, v in metrics.items() if k != "step_time"})
                if on_epoch_end is not None:
                    on_epoch_end(epoch, dict(metrics))
                if interrupt.requested:
                    loop.history.stopped = "interrupted"
                    break
    finally:
        display.close()
    loop.history.interpreted_steps = getattr(step, "interpreted_calls", 0)
    loop.history.backend_at_end = getattr(step, "backend_in_use", "")
    return loop.history


class _Loop:
    """The per-step work of ``fit``: call, check, accumulate; state shared across epochs."""

    def __init__(self, step: Callable[..., Any], n_batches: int, on_nonfinite: OnNonfinite,
                 given_names: list[str] | None) -> None:
        self.step = step
        self.n_batches = n_batches
        self.on_nonfinite = on_nonfinite
        self.given_names = given_names
        self.labels: list[str] = []
        self.history = History()
        self.step_times = np.empty(n_batches)

    def run_epoch(self, epoch: int, batch_iter: Iterator[tuple[np.ndarray, ...]], display: Any,
                  interrupt: _InterruptRequest) -> dict[str, float] | None:
        """The epoch's example-weighted mean of each output; None when training must stop."""
        history = self.history
        sums: list[float] = []
        seen = 0
        for b, batch in enumerate(batch_iter):
            t0 = time.perf_counter()
            values = _scalars(self.step(*batch), self.step)
            self.step_times[b] = time.perf_counter() - t0
            self.labels = self.labels or _names_for(self.step, len(values), self.given_names)
            history.steps += 1
            if history.steps == 1:
                history.first_step_seconds = float(self.step_times[b])
            if not math.isfinite(values[0]):
                if self.on_nonfinite == "raise":
                    raise NonFiniteError(
                        f"the loss ({self.labels[0]!r}) is {values[0]} at step {history.steps} "
                        f"(epoch {epoch}, batch {b + 1} of {self.n_batches}); the parameters "
                        "hold that step's update. Lower the learning rate or check the data; "
                        "fit(..., on_nonfinite='stop') stops instead of raising"
                    )
                history.stopped = "nonfinite"
                return None
            size = len(batch[0])
            sums = sums or [0.0] * len(values)
            sums = [total + v * size for total, v in zip(sums, values, strict=True)]
            seen += size
            display.update(values[0])
            if interrupt.requested:
                history.stopped = "interrupted"
                return None
        return {name: total / seen for name, total in zip(self.labels, sums, strict=True)}


def output_names(function: Callable[..., Any], count: int) -> list[str]:
    """Metric names of a function's ``count`` outputs: the output nodes' names where a compiled
    function's outputs have them, else ``loss`` for the first and ``output1``, … for the rest."""
    program = getattr(function, "program", None)
    nodes = list(program.outputs) if program is not None else []
    names = [nodes[i].name if i < len(nodes) else None for i in range(count)]
    return [name or ("loss" if i == 0 else f"output{i}") for i, name in enumerate(names)]


def _scalars(result: Any, function: Callable[..., Any]) -> list[float]:
    values = result if isinstance(result, (list, tuple)) else [result]
    out = []
    for i, value in enumerate(values):
        # np.ndim costs microseconds per call; most values are arrays or Python floats
        ndim = value.ndim if isinstance(value, (np.ndarray, np.generic)) else np.ndim(value)
        if ndim != 0:
            name = output_names(function, len(values))[i]
            raise InputError(
                f"fit averages the outputs of {function!r}, so each must be a scalar; "
                f"output {i} ({name!r}) has shape {np.shape(value)}"
            )
        out.append(float(value))
    return out


def _names_for(function: Callable[..., Any], count: int, given: list[str] | None) -> list[str]:
    if given is None:
        return output_names(function, count)
    if len(given) != count:
        raise InputError(f"fit got {len(given)} names {given} for {count} outputs of {function!r}")
    return given


def _validate(evaluate: Callable[..., Any], arrays: list[np.ndarray],
              given_names: list[str] | None) -> dict[str, float]:
    values = _scalars(evaluate(*arrays), evaluate)
    names = _names_for(evaluate, len(values), given_names)
    return {f"val_{name}": float(v) for name, v in zip(names, values, strict=True)}


def _check_arity(function: Callable[..., Any], arrays: list[np.ndarray], what: str) -> None:
    program = getattr(function, "program", None)
    if program is not None and len(program.inputs) != len(arrays):
        wanted = [n.name or n.label() for n in program.inputs]
        raise InputError(
            f"{what}: the compiled function takes {len(program.inputs)} input(s) {wanted}, "
            f"but {len(arrays)} array(s) were given"
        )


class _InterruptRequest:
    requested = False


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[_InterruptRequest]:
    """Turn the first Ctrl-C into a request honoured between steps; a second one interrupts.

    A KeyboardInterrupt raised inside a step could land between two parameter writes; deferring
    it keeps the parameters of the last finished step.
    """
    request = _InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
