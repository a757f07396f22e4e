"""Every kernel generated for the benchmark workloads' training steps (tiny_mlp, mlp, ewise,
rnn, logreg) compiles to PTX for compute capabilities 8.0 and 9.0, and the kernels of every
elementwise registry op for 8.0, with numba-cuda's compile_ptx: NVVM on the CPU, no GPU.

Needs the ``numba-cuda[cu13]`` extra and ``NUMBA_ENABLE_CUDASIM`` unset: the kernels are
written as for a device (128-thread reductions, 16 x 16 tiles). .ci/run runs this file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.cuda import device
from graphcomp.runtime.program import build_program

_MISSING = not device.numba_cuda_installed() or importlib.util.find_spec("nvidia") is None
if _MISSING and os.environ.get("GRAPHCOMP_REQUIRE_CUDA") == "1":  # .ci/run: never skip there
    raise RuntimeError("GRAPHCOMP_REQUIRE_CUDA=1, but numba-cuda's [cu13] extra is missing")
pytestmark = pytest.mark.skipif(
    _MISSING or device.simulator_requested(),
    reason="needs numba-cuda with its [cu13] extra (NVVM, NVRTC) and NUMBA_ENABLE_CUDASIM unset")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import workloads  # noqa: E402

WORKLOADS = ("tiny_mlp", "mlp", "ewise", "rnn", "logreg")
CCS = ((8, 0), (9, 0))


def _step_program(name: str):
    problem = workloads.make(name)
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    updates = workloads.graphcomp_updates(problem, params, grads)
    return build_program(inputs, [loss], updates, True)


def _elementwise_program(dtype: str):
    """Every elementwise registry op at its samples, in one graph."""
    from graphcomp.backends.cuda.op_table import CUDA_TEMPLATES
    from graphcomp.ops import REGISTRY, apply

    rng = np.random.default_rng(0)
    with gc.Graph(name=f"ptx_elementwise_{dtype}"):
        inputs, outputs = [], []
        for name in sorted(CUDA_TEMPLATES):
            samples = REGISTRY[name].samples
            for sample in samples(rng, np.dtype(dtype)) if samples else []:
                args = [gc.placeholder(a.shape, a.dtype) for a in sample.args]
                inputs += args
                outputs.append(apply(name, *args, **sample.attrs))
        return build_program(inputs, outputs, None, True)


def _check(program, cc: tuple[int, int]) -> dict[str, str]:
    from graphcomp.backends.cuda.backend import prepare_records
    from graphcomp.backends.cuda.ptx import program_ptx

    found = program_ptx(program, cc)
    _, _, _, records = prepare_records(program)
    assert set(found) == set(records.kernels.kernels)  # every distinct kernel
    for name, ptx in found.items():
        assert ".entry" in ptx and f".target sm_{cc[0]}{cc[1]}" in ptx, name
    return found


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_step_kernels_compile_to_ptx(name: str, cc: tuple[int, int]) -> None:
    found = _check(_step_program(name), cc)
    assert found


def test_every_elementwise_template_compiles_to_ptx() -> None:
    # cc 8.0 only: a template's code does not depend on the target (the workloads above
    # cover 9.0), and this sweep is the file's slowest part.
    for dtype in ("float64", "float32"):
        _check(_elementwise_program(dtype), (8, 0))
