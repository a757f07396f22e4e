"""PTX of every device kernel of a program, for a compute capability, without a GPU.

Used by tests/cuda/test_cuda_ptx.py (the benchmark workloads' steps, cc 8.0 and 9.0) and by
``benchmarks/gpu/check.sh``. Needs numba-cuda with its ``[cu13]`` extra (NVVM) and the
simulator off: the kernels are written as for a device (128-thread reductions, 16 x 16 tiles).

>>> # program_ptx(build_program([x], [loss], updates, True), (8, 0)) -> {kernel name: PTX}
"""

from __future__ import annotations

import numpy as np

from graphcomp.backends.cuda import device
from graphcomp.runtime.program import Program


def program_ptx(program: Program, cc: tuple[int, int]) -> dict[str, str]:
    """The PTX text of each distinct device kernel of ``program``, by kernel name
    (host-fallback calls have none). ``CompileError`` if one fails to compile."""
    from numba import from_dtype, types

    from graphcomp.backends.cuda.backend import load_module, prepare_records
    from graphcomp.backends.cuda.program import argument_types
    from graphcomp.backends.cuda.render import render_module

    lp, _, _, records = prepare_records(program)
    functions = load_module(render_module(records.kernels.kernels), device.unchecked_cuda())
    found: dict[str, str] = {}
    for call in records.calls:
        if call.target != "kernel" or call.function in found:
            continue
        args = [types.int64 if isinstance(t, str)
                else types.Array(from_dtype(np.dtype(t[0])), t[1], "A")
                for t in argument_types(lp, call)]
        found[call.function] = device.compile_ptx(functions[call.function].py_func,
                                                  types.void(*args), cc)
    return found
