"""Every pass returns a new ``LoweredProgram`` and leaves its argument as it was.

Passes copy with ``LoweredProgram.copy`` (new ops, lists and attribute dicts; attribute values
shared), so a pass that changed a shared value in place would corrupt its input: compared here
against a deep copy taken before the pass.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.passes import batching, convolution, simplify
from graphcomp.passes.lowered import LoweredProgram
from graphcomp.passes.lowering import lower
from graphcomp.runtime.program import build_program

PASSES = [simplify.eliminate_dead, simplify.eliminate_common, simplify.fold_constants,
          simplify.isolate_outputs, simplify.simplify_powers, simplify.accumulate_products,
          batching.batch_matmuls, convolution.lower_convolutions]


def _lowered() -> LoweredProgram:
    rng = np.random.default_rng(0)
    with gc.Graph():
        x = gc.placeholder((None, 1, 6, 6), "float64", name="x")
        w = gc.parameter(rng.normal(size=(2, 1, 3, 3)), name="w")
        v = gc.parameter(rng.normal(size=(32, 3)), name="v")
        c = gc.constant(np.arange(3.0))
        h = gc.nn.flatten(gc.relu(gc.nn.conv2d(x, w))) @ v
        loss = gc.sum((h + c * 2.0 + c * 2.0) ** 2)
        grads = gc.grad(loss, [w, v])
        updates = [(p, p - 0.1 * g) for p, g in zip([w, v], grads, strict=True)]
        return lower(build_program([x], [loss, loss * 1.0], updates))


@pytest.mark.parametrize("rewrite", PASSES, ids=lambda p: p.__name__)
def test_a_pass_leaves_its_argument_unchanged(rewrite):
    lp = _lowered()
    before = copy.deepcopy(lp)
    result = rewrite(lp)
    assert result is not lp
    assert lp.inputs == before.inputs and lp.outputs == before.outputs
    assert lp.updates == before.updates and list(lp.ops) == list(before.ops)
    for key, op in lp.ops.items():
        old = before.ops[key]
        assert (op.op, op.inputs, op.shape, op.dtype, op.labels) == (
            old.op, old.inputs, old.shape, old.dtype, old.labels)
        assert op.attrs.keys() == old.attrs.keys()
        for name, value in op.attrs.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, old.attrs[name])
            else:
                assert repr(value) == repr(old.attrs[name]), (key, name)
