"""Learning-rate schedules: the rate as a function of the optimizer's step count, in the graph.

A schedule is evaluated inside the compiled step (so it costs no Python per step and a
checkpoint's step count restores it), and in plain Python by ``value(t)`` for plots and tests.
``t`` is the number of updates already applied: the first update uses ``value(0)``.

>>> import graphcomp as gc
>>> sched = gc.optim.StepDecay(0.1, step_size=100, gamma=0.5)
>>> sched.value(0), sched.value(250)
(0.1, 0.025)
"""

from __future__ import annotations

import math
from typing import Protocol

from graphcomp.ops import Tensor
from graphcomp.ops import functions as F


class Schedule(Protocol):
    """What an optimizer needs from a schedule."""

    def __call__(self, step: Tensor) -> Tensor:
        """The learning rate (float64 scalar tensor) at integer step-count tensor ``step``."""
        ...

    def value(self, step: int) -> float:
        """The same rate computed in Python."""
        ...


class StepDecay:
    """``lr * gamma ** floor(t / step_size)``: multiply the rate by ``gamma`` every ``step_size``.

    >>> StepDecay(1.0, step_size=10, gamma=0.1).value(25)
    0.010000000000000002
    """

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"StepDecay: step_size must be >= 1, got {step_size}")
        self.lr = float(lr)
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def __call__(self, step: Tensor) -> Tensor:
        # float -> int casts truncate, which is floor for the non-negative step count
        periods = F.cast(F.divide(step, self.step_size), "int64")
        return self.lr * F.power(self.gamma, F.cast(periods, "float64"))

    def value(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def __repr__(self) -> str:
        return f"StepDecay(lr={self.lr}, step_size={self.step_size}, gamma={self.gamma})"


class CosineDecay:
    """Half a cosine from ``lr`` at t = 0 down to ``lr_min`` at ``total_steps``, then flat.

    >>> CosineDecay(1.0, total_steps=100).value(50)
    0.5
    """

    def __init__(self, lr: float, total_steps: int, lr_min: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"CosineDecay: total_steps must be >= 1, got {total_steps}")
        self.lr = float(lr)
        self.total_steps = int(total_steps)
        self.lr_min = float(lr_min)

    def __call__(self, step: Tensor) -> Tensor:
        progress = F.minimum(F.cast(step, "float64"), float(self.total_steps)) / self.total_steps
        return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1.0 + F.cos(math.pi * progress))

    def value(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __repr__(self) -> str:
        return f"CosineDecay(lr={self.lr}, total_steps={self.total_steps}, lr_min={self.lr_min})"
