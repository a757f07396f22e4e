"""The backend passes, each alone: lowering, folding, CSE, DCE, fusion and the memory plan.

A small interpreter of the backend IR (registry numpy implementations) is the oracle: every
pass must leave the program's results unchanged, and do what it claims structurally.
"""

from __future__ import annotations

import numpy as np

import graphcomp as gc
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
