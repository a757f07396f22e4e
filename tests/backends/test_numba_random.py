"""Hypothesis-generated programs, forward and gradients: "numba" must agree with "numpy".

The programs come from the numpy backend's random-program strategy
(tests/ops/test_random_graphs_numpy.py). Each example packs several programs into one graph
and compiles it once: compile time, not arithmetic, dominates.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import graphcomp as gc

_SPEC = importlib.util.spec_from_file_location(
    "random_programs", Path(__file__).parents[1] / "ops" / "test_random_graphs_numpy.py")
assert _SPEC is not None and _SPEC.loader is not None
random_programs = importlib.util.module_from_spec(_SPEC)
sys.modules["random_programs"] = random_programs  # dataclasses look their module up
_SPEC.loader.exec_module(random_programs)


def _tolerance(program_dtypes: list[str]) -> float:
    # float32 intermediates differ from numpy's in the last bits (our exp/log are not numpy's)
    # and those bits survive a later cast to float64: a program with float32 anywhere gets the
    # float32 tolerance.
    return 1e-5 if "float32" in program_dtypes else 1e-10


# No shrinking: every example compiles kernels, so shrinking a failure can take many minutes
# (hypothesis' own limit is 5); the unshrunk failing programs are reported as they are.
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(programs=st.lists(random_programs.programs(), min_size=3, max_size=4),
       seed=st.integers(0, 2**32 - 1))
def test_random_programs_and_their_gradients_match_numpy(programs: list, seed: int):
    rng = np.random.default_rng(seed)
    placeholders, values, outputs, tolerances = [], [], [], []
    with gc.Graph(name="random_numba"):
        for p, (inputs, dtypes, steps, _) in enumerate(programs):
            symbol = {"B": f"B{p}"}
            ins = []
            for i, (shape, dtype) in enumerate(zip(inputs, dtypes, strict=True)):
                declared = tuple(symbol.get(d, d) for d in shape)
                ins.append(gc.placeholder(declared, dtype, name=f"p{p}_in{i}"))
                values.append(rng.standard_normal(random_programs.concrete(shape)).astype(dtype))
            tensors = list(ins)
            for step in steps:
                operands = [tensors[i] for i in step.operands]
                tensors.append(random_programs.KINDS[step.kind].build(operands, step.params))
            placeholders += ins
            results = tensors[len(ins):]
            outputs += results
            float_results = [t for t in results if t.dtype.kind == "f"]
            if float_results:
                loss = sum(gc.sum(gc.tanh(t)) for t in float_results)
                outputs += gc.grad(loss, ins)
            tolerances += [_tolerance(dtypes)] * (len(outputs) - len(tolerances))
    numba = gc.compile(placeholders, outputs, backend="numba")
    oracle = gc.compile(placeholders, outputs, backend="numpy")
    for got, want, tol in zip(numba(*values), oracle(*values), tolerances, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype.kind != "f":
            np.testing.assert_array_equal(got, want)
            continue
        finite = np.abs(want[np.isfinite(want)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)
