"""``batch_matmuls``: small products stacked into large ones, results unchanged.

Each graph runs on the numba backend (which applies the pass) and on the numpy oracle (which
does not); structural checks count the products the backend IR keeps.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.backend import prepare
from graphcomp.passes.batching import STACK_PARTS, batch_matmuls
from graphcomp.passes.lowering import lower
from graphcomp.passes.simplify import eliminate_common, eliminate_dead, fold_constants
from graphcomp.runtime.program import build_program

STEPS, BATCH, FEATURES, HIDDEN = 5, 4, 3, 6


def _rtol(dtype: str) -> float:
    return 1e-5 if dtype == "float32" else 1e-10


def _assert_same(numba_fn: gc.Function, numpy_fn: gc.Function, feeds: list[np.ndarray],
                 dtype: str) -> None:
    got, expected = numba_fn(*feeds), numpy_fn(*feeds)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=_rtol(dtype), atol=1e-6)


def _both(inputs: list[gc.Tensor], outputs: list[gc.Tensor]) -> tuple[gc.Function, gc.Function]:
    return (gc.compile(inputs, outputs, backend="numba"),
            gc.compile(inputs, outputs, backend="numpy"))


def _rnn(dtype: str, steps: int = STEPS, bias_from: int = 0,
         grads: tuple[str, ...] = ("Wx", "Wh", "b")):
    """h_t = tanh(x[t] @ Wx + h_{t-1} @ Wh + b); loss = mean(h_T ** 2), with the gradients
    ``grads``. b is added from step ``bias_from`` on."""
    rng = np.random.default_rng(7)
    x = gc.placeholder((steps, BATCH, FEATURES), dtype, name="x")
    params = {"Wx": gc.parameter(rng.standard_normal((FEATURES, HIDDEN)).astype(dtype) * 0.5,
                                 name="Wx"),
              "Wh": gc.parameter(rng.standard_normal((HIDDEN, HIDDEN)).astype(dtype) * 0.3,
                                 name="Wh"),
              "b": gc.parameter(rng.standard_normal(HIDDEN).astype(dtype) * 0.1, name="b")}

    def step(t: int, z: gc.Tensor) -> gc.Tensor:
        return gc.tanh(z + params["b"] if t >= bias_from else z)

    h = step(0, x[0] @ params["Wx"])
    states = [h]
    for t in range(1, steps):
        h = step(t, x[t] @ params["Wx"] + h @ params["Wh"])
        states.append(h)
    loss = gc.mean(h * h)
    grads = gc.grad(loss, [params[name] for name in grads])
    feeds = [rng.standard_normal((steps, BATCH, FEATURES)).astype(dtype)]
    return [x], [loss, states[1], *grads], feeds


def _matmuls(lp) -> list:
    return [op for op in lp.ops.values() if op.op == "matmul"]


def _unbatched(program):
    return eliminate_dead(eliminate_common(fold_constants(lower(program))))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rnn_forward_and_gradients_match_numpy(dtype: str):
    inputs, outputs, feeds = _rnn(dtype)
    _assert_same(*_both(inputs, outputs), feeds, dtype)


def test_rnn_products_become_one_gemm_per_weight():
    inputs, outputs, _ = _rnn("float32")
    program = build_program(inputs, outputs)
    before = len(_matmuls(_unbatched(program)))
    lp, _, _ = prepare(program)
    products = _matmuls(lp)
    # Forward: x[t] @ Wx for all t in one product, h @ Wh a chain of T - 1. Backward: the
    # chain dz_t @ Wh^T (T - 1), and one product each for the gradients of Wx and Wh.
    assert before == 2 * STEPS + 3 * (STEPS - 1)
    assert len(products) == 2 * (STEPS - 1) + 3
    shapes = sorted(op.shape for op in products if op.shape != (BATCH, HIDDEN))
    assert shapes == [(FEATURES, HIDDEN), (HIDDEN, HIDDEN), (STEPS * BATCH, HIDDEN)]
    assert any("×5 batched" in label for op in products for label in op.labels)
    # The x[t] are one slice of x (no copy); the states and the step gradients are stacked
    # once each: Wh's T - 1 gradients are a row block of Wx's T.
    assert sum(op.op == "concatenate" for op in lp.ops.values()) == 2
    position = {value: k for k, value in enumerate(lp.ops)}
    for op in lp.ops.values():
        assert all(position[i] < position[op.id] for i in op.inputs), "not topological"


def test_long_sums_become_chunks_that_share_their_stacks():
    # Stacks of at most STACK_PARTS parts: chunks of 2 + STACK_PARTS and 1 + STACK_PARTS steps.
    steps = STACK_PARTS + 2
    inputs, outputs, _ = _rnn("float32", steps=steps)
    lp, _, _ = prepare(build_program(inputs, outputs))
    # Forward 1 + the chain; backward: the chain, Wx 2 chunks, Wh 1 chunk and 1 lone product.
    assert len(_matmuls(lp)) == 1 + (steps - 1) + (steps - 1) + 2 + 2
    stacks = [op for op in lp.ops.values() if op.op == "concatenate"]
    assert max(len(op.inputs) for op in stacks) == STACK_PARTS
    # dz_0..1 and dz_2.. for Wx (dz_2.. shared with Wh), h_1.. for Wh.
    assert sorted(len(op.inputs) for op in stacks) == [2, STACK_PARTS, STACK_PARTS]


def test_independent_products_with_other_terms_in_the_sum():
    """Products of unrelated operands (a concatenate, not a slice) with one weight, and a weight
    gradient with a term that is not a product."""
    rng = np.random.default_rng(1)
    a, b, c = (gc.placeholder((3, 4), "float64", name=n) for n in "abc")
    w = gc.parameter(rng.standard_normal((4, 5)), name="w")
    v = gc.parameter(rng.standard_normal((4, 5)), name="v")
    outs = [gc.tanh(a @ w), gc.sin(gc.exp(b) @ w), (c * 2.0) @ w]
    loss = gc.sum(outs[0] * outs[1]) + gc.mean(outs[2] ** 2) + gc.sum(w * w) + gc.sum(c @ v)
    grads = gc.grad(loss, [w, v])
    outputs = [loss, outs[1], *grads]
    program = build_program([a, b, c], outputs)
    lp, _, _ = prepare(program)
    # Three forward products are one; the three products summed into dw are one (plus 2w).
    assert len(_matmuls(_unbatched(program))) == 8
    assert len(_matmuls(lp)) == 4
    assert sum(op.op == "concatenate" for op in lp.ops.values()) >= 2
    feeds = [rng.standard_normal((3, 4)) for _ in range(3)]
    _assert_same(*_both([a, b, c], outputs), feeds, "float64")


def test_dependent_products_other_weights_and_mixed_shapes_stay_unbatched():
    rng = np.random.default_rng(2)
    dtype = "float32"
    x = gc.placeholder((4, 3, 5), dtype, name="x")
    y = gc.placeholder((2, 5), dtype, name="y")
    w = gc.parameter(rng.standard_normal((5, 5)).astype(dtype) * 0.4, name="w")
    others = [gc.parameter(rng.standard_normal((5, 5)).astype(dtype), name=f"u{t}")
              for t in range(4)]
    h = x[0]
    for _ in range(3):
        h = gc.tanh(h @ w)  # each product needs the previous one
    free = x[3] @ w  # independent of the chain: batched with its first product only
    separate = [x[t] @ others[t] for t in range(4)]  # a different weight each
    mixed = gc.sum(y @ w)  # the chain's weight, but 2 rows instead of 3
    outputs = [h, free, *separate, mixed]
    program = build_program([x, y], outputs)
    lp, _, _ = prepare(program)
    assert len(_matmuls(_unbatched(program))) == 9
    assert len(_matmuls(lp)) == 8
    batched = [op for op in _matmuls(lp) if any("batched" in label for label in op.labels)]
    assert [op.shape for op in batched] == [(6, 5)]
    assert lp.ops[batched[0].inputs[0]].op == "concatenate"  # x[0] and x[3]: not consecutive
    feeds = [rng.standard_normal((4, 3, 5)).astype(dtype),
             rng.standard_normal((2, 5)).astype(dtype)]
    _assert_same(*_both([x, y], outputs), feeds, dtype)


def test_symbolic_rows_are_left_alone_and_symbolic_columns_batch():
    rng = np.random.default_rng(3)
    dtype = "float64"
    rows = gc.placeholder((3, None, 4), dtype, name="rows")  # batch N: row count unknown
    cols = gc.placeholder((3, 2, None), dtype, name="cols")  # M columns: rows known
    w = gc.parameter(rng.standard_normal((4, 3)), name="w")
    m = gc.placeholder((None, 3), dtype, name="m")
    loss = sum(gc.sum(gc.tanh(rows[t] @ w)) for t in range(3))
    stacked = [cols[t] @ m for t in range(3)]
    gw = gc.grad(loss, w)
    outputs = [loss, gw, *stacked]
    program = build_program([rows, cols, m], outputs)
    lp, _, _ = prepare(program)
    # rows: 3 forward + 3 gradient products stay; cols: 3 products become 1.
    assert len(_matmuls(lp)) == 3 + 3 + 1
    assert [op.shape for op in _matmuls(lp) if op.shape[0] == 6] == [(6, 3)]
    numba_fn, numpy_fn = _both([rows, cols, m], outputs)
    for n, k in ((5, 2), (2, 7), (5, 2)):  # the dims rebind between calls
        feeds = [rng.standard_normal((3, n, 4)), rng.standard_normal((3, 2, k)),
                 rng.standard_normal((k, 3))]
        _assert_same(numba_fn, numpy_fn, feeds, dtype)


def test_the_pass_keeps_its_input_and_a_topological_order():
    inputs, outputs, _ = _rnn("float64", steps=4)
    lp = _unbatched(build_program(inputs, outputs))
    count = len(lp.ops)
    order = list(lp.ops)
    batched = eliminate_dead(batch_matmuls(lp))
    assert list(lp.ops) == order and len(lp.ops) == count, "the input must not change"
    seen: set[int] = set()
    for op in batched.ops.values():
        assert set(op.inputs) <= seen
        seen.add(op.id)
    # Nothing here needs pulling forward: values the rewrite left alone keep their order.
    kept = [i for i in batched.ops if i in lp.ops and batched.ops[i].op == lp.ops[i].op]
    assert kept == [i for i in order if i in kept]


# ---------------------------------------------------------------- sums of column sums


def _column_sums(lp) -> list:
    return [op for op in lp.ops.values() if op.op == "reduce_sum"]


def test_rnn_bias_gradient_is_one_column_sum_of_the_weight_gradient_stack():
    inputs, outputs, _ = _rnn("float32")
    program = build_program(inputs, outputs)
    # The loss and one column sum per step for the gradient of b.
    assert len(_column_sums(_unbatched(program))) == 1 + STEPS
    lp, _, _ = prepare(program)
    sums = _column_sums(lp)
    assert len(sums) == 2
    (bias,) = [op for op in sums if op.shape == (HIDDEN,)]
    assert bias.id == lp.outputs[-1], "the sum is the gradient itself: no add is left"
    # It reads the stack of dz_t that the gradient of Wx multiplies: no new stack.
    stack = lp.ops[bias.inputs[0]]
    assert stack.op == "concatenate" and stack.shape == (STEPS * BATCH, HIDDEN)
    assert any(stack.id in op.inputs for op in _matmuls(lp))
    assert sum(op.op == "concatenate" for op in lp.ops.values()) == 2


def test_long_bias_sums_reuse_each_chunk():
    inputs, outputs, _ = _rnn("float64", steps=STACK_PARTS + 2)
    lp, _, _ = prepare(build_program(inputs, outputs))
    stacks = [op for op in lp.ops.values() if op.op == "concatenate"]
    parts = [2, STACK_PARTS, STACK_PARTS]
    assert sorted(len(op.inputs) for op in stacks) == parts  # as without the bias
    bias = [op for op in _column_sums(lp) if op.shape == (HIDDEN,)]
    assert sorted(lp.ops[op.inputs[0]].shape[0] for op in bias) == [2 * BATCH,
                                                                     STACK_PARTS * BATCH]
    assert {op.inputs[0] for op in bias} <= {op.id for op in stacks}
    total = lp.ops[lp.outputs[-1]]
    assert total.op == "add" and sorted(total.inputs) == sorted(op.id for op in bias)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_sum_over_some_steps_is_a_row_block_of_the_stack(dtype: str):
    """b is added from step 1 on: its gradient sums dz_1..dz_4, rows of Wx's dz_0..dz_4."""
    inputs, outputs, feeds = _rnn(dtype, bias_from=1, grads=("Wx", "b"))
    program = build_program(inputs, outputs)
    assert len(_column_sums(_unbatched(program))) == 1 + (STEPS - 1)
    lp, _, _ = prepare(program)
    assert len(_column_sums(lp)) == 2
    grad_b = lp.ops[lp.outputs[-1]]
    assert grad_b.op == "reduce_sum"
    block = lp.ops[grad_b.inputs[0]]
    assert block.op == "slice" and block.shape == ((STEPS - 1) * BATCH, HIDDEN)
    assert block.attrs["starts"] == (BATCH, 0)
    stack = lp.ops[block.inputs[0]]
    assert stack.op == "concatenate" and stack.shape == (STEPS * BATCH, HIDDEN)
    assert sum(op.op == "concatenate" for op in lp.ops.values()) == 1
    _assert_same(*_both(inputs, outputs), feeds, dtype)


def test_bias_sum_with_a_step_outside_the_stack_still_adds_it():
    """Only Wh's gradient stacks dz_1..dz_4: the bias gradient adds the column sum of dz_0."""
    inputs, outputs, feeds = _rnn("float64", grads=("Wh", "b"))
    lp, _, _ = prepare(build_program(inputs, outputs))
    grad_b = lp.ops[lp.outputs[-1]]
    assert grad_b.op == "add"
    parts = sorted((lp.ops[i] for i in grad_b.inputs), key=lambda op: op.id)
    assert [op.op for op in parts] == ["reduce_sum", "reduce_sum"]
    rows = sorted(lp.ops[op.inputs[0]].shape[0] for op in parts)
    assert rows == [BATCH, (STEPS - 1) * BATCH]
    assert len(_column_sums(lp)) == 3
    _assert_same(*_both(inputs, outputs), feeds, "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_column_sums_of_consecutive_steps_read_a_slice_and_others_stay(dtype: str):
    """Sums of consecutive x[t] (2-D and 3-D, keepdims) read one slice of x; a bias gradient
    with no stack to share keeps its sums (each is fused with the step's backward)."""
    rng = np.random.default_rng(4)
    steps = 6
    x = gc.placeholder((steps, 4, 3), dtype, name="x")
    y = gc.placeholder((steps, 2, 3, 5), dtype, name="y")
    b = gc.parameter(rng.standard_normal(3).astype(dtype), name="b")
    column_total = gc.sum(x[0], axis=0, keepdims=True)
    block_total = gc.sum(y[0], axis=(0, 1))
    loss = gc.sum(b * b)
    for t in range(1, steps):
        column_total = column_total + gc.sum(x[t], axis=0, keepdims=True)
        block_total = block_total + gc.sum(y[t], axis=(0, 1))
        loss = loss + gc.sum(gc.tanh(x[t] * (t + 1.0) + b) ** 2)
    skipped = gc.sum(x[0], axis=0) + gc.sum(x[2], axis=0) + gc.sum(x[4], axis=0)
    outputs = [loss, column_total, block_total, skipped, gc.grad(loss, b)]
    program = build_program([x, y], outputs)
    before = len(_column_sums(_unbatched(program)))
    lp, _, _ = prepare(program)
    assert len(_column_sums(lp)) == before - 2 * (steps - 1)
    for value, shape in ((column_total, (steps * 4, 3)), (block_total, (steps * 2, 3, 5))):
        (total,) = [op for op in _column_sums(lp) if op.shape == value.shape]
        rows = lp.ops[total.inputs[0]]
        assert rows.op == "reshape" and rows.shape == shape, "a view of the placeholder"
        assert lp.ops[rows.inputs[0]].op == "slice"
    feeds = [rng.standard_normal((steps, 4, 3)).astype(dtype),
             rng.standard_normal((steps, 2, 3, 5)).astype(dtype)]
    _assert_same(*_both([x, y], outputs), feeds, dtype)


def test_column_sums_with_symbolic_rows_or_other_axes_stay_separate():
    rng = np.random.default_rng(5)
    dtype = "float64"
    x = gc.placeholder((3, None, 4), dtype, name="x")  # N rows per step: unknown
    z = gc.placeholder((3, 4, 2), dtype, name="z")
    outputs = [sum(gc.sum(x[t], axis=0) for t in range(3)),
               sum(gc.sum(z[t], axis=1) for t in range(3))]  # axis 0 is not summed
    program = build_program([x, z], outputs)
    lp, _, _ = prepare(program)
    assert len(_column_sums(lp)) == 6
    numba_fn, numpy_fn = _both([x, z], outputs)
    for n in (5, 2):
        feeds = [rng.standard_normal((3, n, 4)), rng.standard_normal((3, 4, 2))]
        _assert_same(numba_fn, numpy_fn, feeds, dtype)
