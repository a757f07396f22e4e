"""``gc.scan(..., checkpoint=k)``: stacked residuals recomputed one segment at a time.

A checkpointed scan keeps the carry every ``k`` steps (``ceil(T/k)`` checkpoints, every carry
leaf) instead of stacking the values its gradient reads. Those stacked outputs (``scan_output``
residuals: stacked carries and body values) keep their declared shape ``(T, ...)`` in the
graph, but a backend hands them over as ``RecomputedStack`` objects: reading step ``t``
recomputes the segment of ``k`` steps holding it from its checkpoint (one more forward run of
those steps), storing that segment's residuals in buffers of ``min(k, T)`` steps shared by all
of the scan's stacks. The backward scan reads its streams from its last step to its first,
so each segment is recomputed once. Only a scan reads them step by step; anything else
(a gradient of a gradient on the numpy backend) gets every step at once (``np.asarray``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# one forward step: (carry leaves, x leaves of the step, invariants) -> (new carry, values of
# the stacked body nodes)
Step = Callable[[list[np.ndarray], list[np.ndarray], list[np.ndarray]],
                tuple[list[np.ndarray], list[np.ndarray]]]


def segment_count(trip: int, k: int) -> int:
    """How many checkpoints a scan of ``trip`` steps keeps: ``ceil(trip / k)``."""
    return -(-trip // k)


class Checkpoints:
    """The checkpoints of one run of a scan, and the segment of residuals last recomputed.

    ``carries``: one array ``(ceil(T/k), ...)`` per carry leaf, checkpoint ``s`` the carry at
    step index ``s*k`` (in the scan's running order). ``stacked``: which values the segment
    holds, ``("carry", i)`` for carry leaf ``i`` or ``("value", j)`` for the step's ``j``-th
    body value, with their per-step shapes and dtypes. ``pairs``: ``(carry, value)`` positions
    in ``stacked`` of a carry leaf and the body value it is made from (``shared_stacks``):
    their segments are two views of one buffer of ``min(k, T) + 1`` rows, shifted by a row.
    """

    def __init__(self, step: Step, carries: list[np.ndarray], xs: Sequence[Any],
                 invariants: Sequence[Any], trip: int, k: int, reverse: bool,
                 stacked: Sequence[tuple[str, int, tuple[int, ...], np.dtype]],
                 pairs: Sequence[tuple[int, int]] = ()) -> None:
        self.step, self.carries, self.xs, self.invariants = step, carries, xs, invariants
        self.trip, self.k, self.reverse = trip, k, reverse
        self.stacked = [(kind, index) for kind, index, _, _ in stacked]
        length = min(k, trip)
        paired = {which for pair in pairs for which in pair}
        self.segment = [np.empty((0 if which in paired else length, *shape), dtype)
                        for which, (_, _, shape, dtype) in enumerate(stacked)]
        for carry, value in pairs:  # segment j: carry[j + 1] is value[j] (the running order)
            _, _, shape, dtype = stacked[carry]
            buffer = np.empty((length + 1, *shape), dtype)
            self.segment[carry], self.segment[value] = buffer[:-1], buffer[1:]
        self.current = -1

    @property
    def nbytes(self) -> int:
        """Bytes held: the checkpoints and one segment of every stacked value (a pair's
        buffer once)."""
        held = {id(a): a.nbytes for a in self.carries}
        for a in self.segment:
            base = a if a.base is None else a.base
            held[id(base)] = base.nbytes
        return sum(held.values())

    def read(self, which: int, t: int) -> np.ndarray:
        """Step ``t`` of stacked value ``which`` (recomputing its segment if needed)."""
        if not 0 <= t < self.trip:
            raise IndexError(f"step {t} of a scan of {self.trip} steps")
        i = self.trip - 1 - t if self.reverse else t
        s = i // self.k
        if s != self.current:
            self._recompute(s)
        return self.segment[which][i - s * self.k]

    def _recompute(self, s: int) -> None:
        carry = [np.array(c[s]) for c in self.carries]
        spare = [np.empty_like(c) for c in carry]  # the step may reuse its output buffers
        invariants = list(self.invariants)
        start = s * self.k
        for j in range(min(self.k, self.trip - start)):
            i = start + j
            t = self.trip - 1 - i if self.reverse else i
            new, values = self.step(carry, [x[t] for x in self.xs], invariants)
            for buffer, (kind, index) in zip(self.segment, self.stacked, strict=True):
                buffer[j] = carry[index] if kind == "carry" else values[index]
            for buffer, value in zip(spare, new, strict=True):
                np.copyto(buffer, value)
            carry, spare = spare, carry
        self.current = s


class RecomputedStack:
    """A scan's stacked output of shape ``(T, ...)``, recomputed from ``Checkpoints``."""

    def __init__(self, checkpoints: Checkpoints, which: int) -> None:
        self.checkpoints, self.which = checkpoints, which
        segment = checkpoints.segment[which]
        self.shape = (checkpoints.trip, *segment.shape[1:])
        self.dtype = segment.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        t = key[0] if isinstance(key, tuple) else key
        rest = key[1:] if isinstance(key, tuple) else ()
        value = self.checkpoints.read(self.which, int(t))
        return value[rest] if rest and rest != (Ellipsis,) else value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        order = range(self.shape[0]) if self.checkpoints.reverse else range(self.shape[0])[::-1]
        for t in order:  # the running order backwards: one recompute per segment
            out[t] = self[t]
        return out if dtype is None else out.astype(dtype)


def materialize(value: Any) -> Any:
    """``value``, or the full array of a ``RecomputedStack``."""
    return np.asarray(value) if isinstance(value, RecomputedStack) else value
