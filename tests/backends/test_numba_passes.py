"""The backend passes, each alone: lowering, folding, CSE, DCE, fusion and the memory plan.

A small interpreter of the backend IR (registry numpy implementations) is the oracle: every
pass must leave the program's results unchanged, and do what it claims structurally.
"""

from __future__ import annotations

import numpy as np

import graphcomp as gc
from graphcomp.backends.numba.kernels import elementwise_kernel
from graphcomp.ops import get_op
from graphcomp.passes.fusion import plan_kernels
from graphcomp.passes.lowered import LoweredProgram, concrete_size, size_key
from graphcomp.passes.lowering import lower
from graphcomp.passes.memory import kernel_reads, plan_memory
from graphcomp.passes.simplify import (
    eliminate_common,
    eliminate_dead,
    fold_constants,
    join_pads,
    simplify_powers,
)
from graphcomp.runtime.program import build_program


def interpret(lp: LoweredProgram, feeds: list[np.ndarray], params: dict[int, np.ndarray],
              binding: dict[str, int]) -> list[np.ndarray]:
    values: dict[int, np.ndarray] = dict(zip(lp.inputs, feeds, strict=True))
    for op in lp.ops.values():
        if op.id in values:
            continue
        if op.op == "parameter":
            values[op.id] = params[op.attrs["storage_id"]]
        elif op.op == "constant":
            values[op.id] = op.attrs["value"]
        elif op.op == "dim_size":
            size = 1
            for d in op.attrs["dims"]:
                size *= binding[d] if isinstance(d, str) else d
            values[op.id] = np.asarray(size, dtype=op.dtype)
        else:
            shape = tuple(binding[d] if isinstance(d, str) else d for d in op.shape)
            args = [values[i] for i in op.inputs]
            values[op.id] = np.asarray(get_op(op.op).numpy_impl(args, dict(op.attrs), shape),
                                       dtype=op.dtype)
    return [values[i] for i in lp.roots]


def _program():
    rng = np.random.default_rng(0)
    with gc.Graph(name="passes") as graph:
        x = gc.placeholder((None, 4), "float64", name="x")
        w = gc.parameter(rng.standard_normal((4, 3)), name="w")
        two = gc.constant(2.0) * gc.constant(1.5)  # foldable
        h = gc.tanh(x @ w) * two
        h_again = gc.tanh(x @ w) * two  # CSE target
        unused = gc.exp(x)  # never an output: DCE target
        loss = gc.mean(h + h_again)
        (gw,) = gc.grad(loss, [w])
    del unused
    program = build_program([x], [loss, gw], [(w, w - 0.1 * gw)])
    feeds = [rng.standard_normal((5, 4))]
    return program, feeds, dict(graph.parameter_values), {"N": 5}


def _symbol_binding(lp: LoweredProgram) -> dict[str, int]:
    return {s: 5 for s in lp.symbols}


def test_lowering_matches_the_numpy_backend():
    program, feeds, params, _ = _program()
    lp = lower(program)
    oracle = _numpy_reference(program, feeds)
    got = interpret(lp, feeds, params, _symbol_binding(lp))
    for a, b in zip(got, oracle, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _numpy_reference(program, feeds):
    from graphcomp.backends.numpy_backend import evaluate

    values = evaluate(program, feeds, {"N": 5})
    return [values[n.id] for n in program.outputs] + [values[v.id] for _, v in program.updates]


def test_each_simplification_preserves_results_and_does_its_job():
    program, feeds, params, _ = _program()
    lp = lower(program)
    binding = _symbol_binding(lp)
    reference = interpret(lp, feeds, params, binding)
    folded = fold_constants(lp)
    assert sum(op.op == "constant" for op in folded.ops.values()) < sum(
        op.op == "constant" for op in lp.ops.values()) + 1
    assert not any(op.op == "multiply" and all(folded.ops[i].op == "constant" for i in op.inputs)
                   for op in folded.ops.values())
    common = eliminate_common(folded)
    assert len(common.ops) < len(folded.ops)
    dead = eliminate_dead(common)
    assert not any(op.op == "exp" for op in dead.ops.values())
    assert len(lp.ops) == len(lower(program).ops), "passes must not mutate their input"
    for stage in (folded, common, dead):
        for a, b in zip(interpret(stage, feeds, params, binding), reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_constant_powers_become_multiplies_identities_and_square_roots():
    rng = np.random.default_rng(1)
    with gc.Graph(name="powers") as graph:
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.parameter(rng.random((3,)) + 0.5, name="w")
        y = (x * w) ** 2.0 + w**1.0 + gc.sqrt(w) ** 1 + w**0.5 + w ** gc.constant([3.0, 3.0, 3.0])
        loss = gc.sum(y)
        (gw,) = gc.grad(loss, [w])
    program = build_program([x], [loss, gw])
    lp = fold_constants(lower(program))
    feeds = [rng.standard_normal((5, 3))]  # _symbol_binding binds every symbol to 5
    params = dict(graph.parameter_values)
    binding = _symbol_binding(lp)
    simplified = simplify_powers(lp)
    remaining = [op for op in simplified.ops.values() if op.op == "power"]
    # Left: general exponents only (3, and the VJP's 3 - 1 ... folded to constants, 0, -0.5).
    exponents = {float(simplified.ops[op.inputs[1]].attrs["value"].flat[0]) for op in remaining
                 if simplified.ops[op.inputs[1]].op == "constant"}
    assert 3.0 in exponents and not exponents & {1.0, 2.0, 0.5}, exponents
    assert sum(op.op == "power" for op in lp.ops.values()) > len(remaining)
    # The gradient seed (a broadcast 1.0) multiplies nothing any more.
    ones = [op for op in simplified.ops.values() if op.op == "multiply" and any(
        simplified.ops[i].op in ("constant", "broadcast_to")
        and np.all(simplified.ops[simplified.ops[i].inputs[0] if simplified.ops[i].inputs
                                  else i].attrs["value"] == 1.0)
        for i in op.inputs)]
    assert not ones
    for a, b in zip(interpret(simplified, feeds, params, binding),
                    interpret(lp, feeds, params, binding), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _sliced_gradient(cuts: list[tuple[int, int]]) -> tuple[LoweredProgram, list, dict]:
    """The gradient of a loss that reads ``x * w`` through the column ranges ``cuts``."""
    rng = np.random.default_rng(2)
    with gc.Graph(name="slices") as graph:
        x = gc.placeholder((None, 8), "float64", name="x")
        w = gc.parameter(rng.random((8,)) + 0.5, name="w")
        z = x * w
        loss = sum(gc.sum(gc.tanh(z[:, a:b]) * (k + 1)) for k, (a, b) in enumerate(cuts))
        (gx,) = gc.grad(loss, [x])
    lp = eliminate_dead(fold_constants(lower(build_program([x], [loss, gx]))))
    return lp, [rng.standard_normal((5, 8))], dict(graph.parameter_values)


def test_pads_that_tile_an_axis_become_one_concatenate():
    for cuts, joined in (([(3, 8), (0, 2), (2, 3)], True), ([(0, 5), (3, 8)], False),
                         ([(0, 3), (5, 8)], False)):
        lp, feeds, params = _sliced_gradient(cuts)
        result = join_pads(lp)
        ops = [op.op for op in result.ops.values()]
        assert ("concatenate" in ops) == joined and ("pad" not in ops) == joined, (cuts, ops)
        binding = _symbol_binding(lp)
        for a, b in zip(interpret(result, feeds, params, binding),
                        interpret(lp, feeds, params, binding), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_fusion_inlines_single_use_elementwise_chains():
    program, *_ = _program()
    lp = eliminate_dead(eliminate_common(fold_constants(lower(program))))
    plan = plan_kernels(lp)
    kinds = [k.kind for k in plan.kernels]
    assert "matmul" in kinds and "loop" in kinds
    # Every value is either materialised or inlined, never both.
    assert not (plan.materialised & plan.inlined)
    assert plan.materialised | plan.inlined == set(lp.ops)
    # Fewer kernels than computed values: chains were fused.
    computed = [op for op in lp.ops.values() if not op.is_source]
    assert len(plan.kernels) < len(computed)
    # An inlined value has exactly one consumer kernel.
    owners: dict[int, int] = {}
    for k in plan.kernels:
        for value in k.inlined:
            assert value not in owners or lp.ops[value].op in ("dim_size", "transpose",
                                                                "broadcast_to", "slice")
            owners[value] = k.root


def test_memory_plan_never_shares_a_slot_between_live_values():
    program, *_ = _program()
    lp = eliminate_dead(eliminate_common(fold_constants(lower(program))))
    plan = plan_kernels(lp)
    memory = plan_memory(lp, plan)
    produced = {v: i for i, k in enumerate(plan.kernels) for v in k.results}
    last: dict[int, int] = {}
    for i in range(len(plan.kernels)):
        for value in kernel_reads(lp, plan, i):
            last[memory.base(value)] = i
    for value in lp.roots:
        last[memory.base(value)] = len(plan.kernels)
    owners = list(memory.slot_of)
    for a in owners:
        for b in owners:
            if a < b and memory.slot_of[a] == memory.slot_of[b]:
                # Lifetimes [produced, last use] must not overlap.
                ia, ib = produced[a], produced[b]
                la, lb = last.get(a, ia), last.get(b, ib)
                assert la < ib or lb < ia, (a, b)
                slot = memory.slots[memory.slot_of[a]]
                assert slot.size == size_key(lp.ops[a].shape) == size_key(lp.ops[b].shape)
    assert len(memory.slots) < len(owners), "a dead buffer should have been reused"
    assert concrete_size(memory.slots[0].size, {"N": 3}) > 0


def _lstm_step_program():
    """One LSTM cell step: four gates read as column slices of one pre-activation ``z + h @
    w``, then the cell update, all of shape (batch, hidden); outputs h', c', the gates (a
    scan keeps them for its gradient) and the gradients of a loss."""
    rng = np.random.default_rng(3)
    n = 3
    with gc.Graph(name="nest") as graph:
        h = gc.placeholder((4, n), "float64", name="h")
        c = gc.placeholder((4, n), "float64", name="c")
        z = gc.placeholder((4, 4 * n), "float64", name="z")
        w = gc.parameter(rng.standard_normal((n, 4 * n)), name="w")
        a = z + h @ w
        i, f, o = (gc.sigmoid(a[:, k * n:(k + 1) * n]) for k in (0, 1, 3))
        g = gc.tanh(a[:, 2 * n:3 * n])
        c_new = f * c + i * g
        h_new = o * gc.tanh(c_new)
        loss = gc.sum(h_new * c_new)
        grads = gc.grad(loss, [w, h, c])
    feeds = [rng.standard_normal((4, n)), rng.standard_normal((4, n)),
             rng.standard_normal((4, 4 * n))]
    return graph, [h, c, z], [h_new, c_new, i, f, g, o], [loss, *grads], feeds


def test_gates_read_through_slices_and_the_cell_update_run_as_one_nest():
    graph, inputs, forward, backward, feeds = _lstm_step_program()
    lp = eliminate_dead(eliminate_common(fold_constants(lower(build_program(inputs, forward,
                                                                            [])))))
    plan = plan_kernels(lp)
    # The product, then one loop nest over (batch, hidden) for the gates and the cell update:
    # z + h @ w is recomputed in each gate instead of getting a buffer.
    assert [k.kind for k in plan.kernels] == ["matmul", "nest"]
    nest = plan.kernels[1]
    assert set(nest.outputs) == set(lp.roots)
    assert not (plan.materialised & plan.inlined)
    assert plan.materialised | plan.inlined == set(lp.ops)
    outputs = forward + backward
    with graph:
        expected = gc.compile(inputs, outputs, backend="numpy")(*feeds)
        got = gc.compile(inputs, outputs, backend="numba")(*feeds)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_transposed_copy_runs_in_tiles_and_matches_numpy():
    """A transposed matrix read by four products is copied once (fusion's
    COPY_TRANSPOSE_MIN_USES) by a tiled loop; sides that are not multiples of the tile."""
    rng = np.random.default_rng(5)
    w_value = rng.standard_normal((37, 21))
    with gc.Graph(name="tiles") as graph:
        w = gc.parameter(w_value, name="w")
        xs = [gc.placeholder((3, 21), "float64", name=f"x{k}") for k in range(4)]
        outputs = [x @ gc.transpose(w) for x in xs]
    feeds = [rng.standard_normal((3, 21)) for _ in xs]
    lp = eliminate_dead(eliminate_common(fold_constants(lower(build_program(xs, outputs, [])))))
    plan = plan_kernels(lp)
    (copy,) = [k for k in plan.kernels if lp.ops[k.root].op == "transpose"]
    assert any("range(0, n0, 16)" in line for line, _ in elementwise_kernel(lp, copy).body)
    with graph:
        function = gc.compile(xs, outputs, backend="numba")
    for got, x in zip(function(*feeds), feeds, strict=True):
        np.testing.assert_allclose(got, x @ w_value.T, rtol=1e-12)


def _relu_layers_step(backend: str):
    """Two relu layers with biases (a nest each: bias add, mask and relu), their gradients and
    SGD updates, in a graph of its own; returns the step and the placeholder's feed."""
    rng = np.random.default_rng(7)
    with gc.Graph(name="relu-layers"):
        x = gc.placeholder((5, 7), "float64", name="x")
        w0, b0 = gc.parameter(rng.standard_normal((7, 6)), name="w0"), gc.parameter(
            rng.standard_normal(6), name="b0")
        w1, b1 = gc.parameter(rng.standard_normal((6, 3)), name="w1"), gc.parameter(
            rng.standard_normal(3), name="b1")
        out = gc.relu(gc.relu(x @ w0 + b0) @ w1 + b1)
        loss = gc.sum(out * out)
        params = [w0, b0, w1, b1]
        grads = gc.grad(loss, params)
        step = gc.compile([x], [loss, *grads], backend=backend,
                          updates=[(p, p - 0.01 * g) for p, g in zip(params, grads, strict=True)])
    return step, rng.standard_normal((5, 7))


def test_relu_layers_their_gradients_and_updates_match_numpy_over_steps():
    numba_step, feed = _relu_layers_step("numba")
    numpy_step, _ = _relu_layers_step("numpy")
    for _ in range(3):  # later steps read the parameters the earlier ones updated
        for got, expected in zip(numba_step(feed), numpy_step(feed), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
