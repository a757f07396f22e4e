"""The memory plan: placed concatenations (parts written straight into their stack)."""

from __future__ import annotations

import numpy as np

import graphcomp as gc
from graphcomp.backends.numba.backend import prepare
from graphcomp.runtime.program import build_program


def _stacked_graph(with_input_part: bool = False):
    rng = np.random.default_rng(2)
    with gc.Graph():
        x = gc.placeholder((4, 6), "float64", name="x")
        ws = [gc.parameter(rng.standard_normal((6, 6)), name=f"w{i}") for i in range(3)]
        parts = [gc.tanh(x @ w) for w in ws]
        # A placeholder has no buffer of the program's: a stack holding one must copy.
        stack = gc.concatenate([*parts, x] if with_input_part else parts, axis=0)
        v = gc.parameter(rng.standard_normal((6, 5)), name="v")
        # The stack feeds a product; the parts are read again after it.
        loss = gc.sum(gc.square(stack @ v)) + gc.sum(parts[0] * parts[2])
        grads = gc.grad(loss, [*ws, v])
    return x, loss, grads, rng.standard_normal((4, 6))


def test_a_concatenation_of_computed_parts_copies_nothing_and_matches_numpy():
    x, loss, grads, value = _stacked_graph()
    f = gc.compile([x], [loss, *grads], backend="numba")
    reference = gc.compile([x], [loss, *grads], backend="numpy")
    assert "its parts were written in place" in f.source
    for _ in range(2):  # the second call reuses the buffers
        for got, want in zip(f(value), reference(value), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_placed_parts_are_blocks_of_their_stack_slot():
    x, loss, grads, _ = _stacked_graph()
    program = build_program([x], [loss, *grads], [])
    lp, _, memory = prepare(program)
    assert memory.placed
    for stack in memory.placed:
        parent = memory.slot_of[stack]
        parts = lp.ops[stack].inputs
        offsets = [memory.slots[memory.slot_of[p]].offset for p in parts]
        assert all(memory.slots[memory.slot_of[p]].parent == parent for p in parts)
        assert offsets == [0, 24, 48]  # 4x6 parts one under another


def test_a_stack_with_an_input_part_is_copied():
    x, loss, grads, value = _stacked_graph(with_input_part=True)
    f = gc.compile([x], [loss, *grads], backend="numba")
    reference = gc.compile([x], [loss, *grads], backend="numpy")
    assert "its parts were written in place" not in f.source
    for got, want in zip(f(value), reference(value), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
