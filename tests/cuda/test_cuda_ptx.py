"""The generated kernels of a training step compile to PTX for cc 8.0 and 9.0 with
numba-cuda's compile_ptx: NVVM on the CPU, no GPU (needs the ``numba-cuda[cu13]`` extra).

Runs with ``NUMBA_ENABLE_CUDASIM`` unset: the kernels are written as for a device
(128-thread reductions, 16 x 16 tiles).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.cuda import device
from graphcomp.runtime.program import build_program

pytestmark = pytest.mark.skipif(
    not device.numba_cuda_installed() or device.simulator_requested()
    or importlib.util.find_spec("nvidia") is None,
    reason="needs numba-cuda with its [cu13] extra (NVVM, NVRTC) and NUMBA_ENABLE_CUDASIM unset")


def _mlp_program(dtype: str):
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 32), dtype, name="x")
    labels = gc.placeholder((None,), "int64", name="labels")
    W1 = gc.parameter(rng.standard_normal((32, 64)).astype(dtype), name="W1")
    b1 = gc.parameter(np.zeros(64, dtype), name="b1")
    W2 = gc.parameter(rng.standard_normal((64, 10)).astype(dtype), name="W2")
    logits = gc.relu(x @ W1 + b1) @ W2
    loss = gc.mean(gc.softmax_cross_entropy(logits, labels))
    updates = gc.optim.Adam(1e-3).updates(loss, [W1, b1, W2])
    return build_program([x, labels], [loss, gc.argmax(logits, axis=1)], updates, True)


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
def test_training_step_kernels_compile_to_ptx(cc: tuple[int, int]) -> None:
    from numba import from_dtype, types

    from graphcomp.backends.cuda.backend import load_module, prepare_records
    from graphcomp.backends.cuda.program import argument_types
    from graphcomp.backends.cuda.render import render_module

    lp, _, _, records = prepare_records(_mlp_program("float32"))
    functions = load_module(render_module(records.kernels.kernels), device.unchecked_cuda())
    compiled = set()
    for call in records.calls:
        if call.target != "kernel" or call.function in compiled:
            continue
        args = [types.int64 if t == "int64" else types.Array(from_dtype(np.dtype(t[0])), t[1], "A")
                for t in argument_types(lp, call)]
        ptx = device.compile_ptx(functions[call.function].py_func, types.void(*args), cc)
        assert ".entry" in ptx and f".target sm_{cc[0]}{cc[1]}" in ptx, call.function
        compiled.add(call.function)
    kinds = {records.kernels.kernels[name].launch for name in compiled}
    assert kinds == {"elements", "rows", "tiles"}
