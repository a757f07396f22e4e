"""Scan bodies shared by the loop tests: an LSTM step with a dict carry, and small random
bodies for hypothesis (a list of ops applied to the carry)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

import graphcomp as gc


def lstm_step(p: dict) -> Callable:
    """An LSTM step (gates i, f, o, g) over the parameters ``p`` (Wx, Wh, b); carry {h, c}."""
    hidden = p["Wh"].shape[0]

    def step(carry: dict, x: gc.Tensor) -> tuple:
        z = x @ p["Wx"] + carry["h"] @ p["Wh"] + p["b"]
        i, f, o, g = (gc.sigmoid(z[:, k * hidden:(k + 1) * hidden]) for k in range(4))
        c = f * carry["c"] + i * gc.tanh(g)
        h = o * gc.tanh(c)
        return {"h": h, "c": c}, {"h": h, "norm": gc.sum(c * c, axis=1)}
    return step


def bodies(max_size: int) -> st.SearchStrategy[list[tuple[str, int]]]:
    """Up to ``max_size`` (op, operand) pairs for ``apply_body``."""
    ops = st.sampled_from(["tanh", "mul_w", "add_x", "sin", "square_x"])
    return st.lists(st.tuples(ops, st.integers(0, 1)), min_size=1, max_size=max_size)


def apply_body(steps: list, c: gc.Tensor, x: gc.Tensor, w: gc.Tensor) -> gc.Tensor:
    """The new carry: each op of ``steps`` applied to ``c`` (operand 1: ``x``, 0: ``c``)."""
    for op, k in steps:
        other = x if k else c
        c = {"tanh": lambda: gc.tanh(c + other), "mul_w": lambda: c * w,
             "add_x": lambda: c + x, "sin": lambda: gc.sin(other) * c,
             "square_x": lambda: c + 0.1 * x * x}[op]()
    return c
