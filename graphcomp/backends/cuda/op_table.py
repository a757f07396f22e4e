"""How the CUDA backend computes each registry op: a device kernel, or numpy on the host.

Elementwise ops are scalar templates in fused kernel bodies. numba-cuda compiles the same
Python scalar subset as numba does on the CPU, so an op's template is the numba backend's,
except where that one calls a CPU fast-math helper (``fastmath.py``, njit functions a CUDA
kernel cannot call): those are written here with numpy's scalar functions. Reductions
(``reduce_sum``, ``reduce_prod``, ``reduce_max``, ``argmax``) are block reductions, 2-D
``matmul`` a tiled kernel (``kernels.py``).

Every other computing op runs on the host through its registry numpy implementation
(``HOST_FALLBACK``, each with the reason): its operands are copied to the host, the result
back to the device. ``tests/cuda/test_cuda_errors.py`` checks that every registry op is
covered by exactly one of these.

>>> CUDA_TEMPLATES["tanh"].format("x", dtype="float32")
'np.float32(fm.tanh(x))'
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from graphcomp.backends.numba.op_table import OP_TABLE
from graphcomp.errors import CompileError
from graphcomp.ops import REGISTRY

# Scalar math: ``fm`` is bound to Python's ``math`` when kernels compile for a device
# (numba-cuda lowers it to libdevice; numpy ufuncs on scalars do not compile there: PTX
# compilation refused ``np.exp``) and to ``SIMULATOR_MATH`` on the simulator, where ``math``
# would raise on a domain error instead of returning NaN as numpy and the GPU do.
_MATH = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "tanh": "tanh",
         "sqrt": "sqrt", "sin": "sin", "cos": "cos", "arcsin": "asin", "arccos": "acos",
         "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh",
         "erf": "erf", "floor": "floor", "ceil": "ceil", "trunc": "trunc"}
_OWN_TEMPLATES = {op: f"np.{{dtype}}(fm.{name}({{0}}))" for op, name in _MATH.items()}
_OWN_TEMPLATES.update({
    "sigmoid": "np.{dtype}(1.0) / (np.{dtype}(1.0) + np.{dtype}(fm.exp(-{0})))",
    "isnan": "fm.isnan({0})", "isinf": "fm.isinf({0})", "isfinite": "fm.isfinite({0})",
    "arctan2": "np.{dtype}(fm.atan2({0}, {1}))", "hypot": "np.{dtype}(fm.hypot({0}, {1}))",
    # numpy's ufuncs on scalars do not compile for a device: these three in arithmetic.
    # sign: zeros and NaN pass through; integers and floats alike.
    "sign": "(np.{dtype}(1) if {0} > 0 else (np.{dtype}(-1) if {0} < 0 else {0}))",
    # rint, halves to even: adding and subtracting 2**52 (2**23 for float32) rounds in the
    # current (nearest-even) mode; larger magnitudes, infinities and NaN are already integral
    # or pass through the comparison unchanged.
    "rint": "({0} if not (abs({0}) < np.{dtype}({big})) else "
            "(np.{dtype}(({0} + np.{dtype}({big})) - np.{dtype}({big})) if {0} >= 0 else "
            "-np.{dtype}(((-{0}) + np.{dtype}({big})) - np.{dtype}({big}))))",
    "sinc": "(np.{dtype}(fm.sin(np.{dtype}(3.141592653589793) * {0})) / "
            "(np.{dtype}(3.141592653589793) * {0}) if {0} != 0 else np.{dtype}(1.0))",
})
# The rint template's 2**(mantissa bits), by dtype.
ROUNDING_BIAS = {"float64": 4503599627370496.0, "float32": 8388608.0, "float16": 1024.0}
# The simulator's ``fm``: numpy's functions under math's names.
SIMULATOR_MATH = SimpleNamespace(
    **{name: getattr(np, op) for op, name in _MATH.items() if op != "erf"},
    erf=math.erf, isnan=np.isnan, isinf=np.isinf, isfinite=np.isfinite, atan2=np.arctan2,
    hypot=np.hypot)

CUDA_TEMPLATES: dict[str, str] = {
    name: _OWN_TEMPLATES.get(name, entry.template)
    for name, entry in OP_TABLE.items() if entry.kind == "elementwise"
}

DEVICE_REDUCTIONS = frozenset({"reduce_sum", "reduce_prod", "reduce_max", "argmax"})
# Ops that compute nothing on the device: views, index maps, bound dims, sources.
NO_KERNEL = frozenset({"reshape", "transpose", "broadcast_to", "slice", "dim_size",
                       "placeholder", "parameter", "constant"})

_LOOP_NEST = "a loop nest of its own; its CUDA kernel is not written yet (stage 1)"
HOST_FALLBACK: dict[str, str] = {
    "matmul": "only operands of rank > 2 (batched products); 2-D products run the tiled kernel",
    "pad": _LOOP_NEST,
    "concatenate": _LOOP_NEST,
    "cumsum": "a scan along an axis: needs a block scan (not written yet)",
    "cumprod": "a scan along an axis: needs a block scan (not written yet)",
    "sort": "per-line merge sort: needs a device sort (not written yet)",
    "argsort": "per-line merge sort: needs a device sort (not written yet)",
    "permute": _LOOP_NEST,
    "take": "a bounds-checked gather: a device kernel cannot raise InputError",
    "scatter_add": "bounds-checked accumulation: needs atomics and a device error flag",
    "check_index": "raises InputError on a bad label: a device kernel cannot raise it",
    "random_uniform": "Philox on the device is not written yet (the host draws the same bits)",
    "random_normal": "Philox on the device is not written yet (the host draws the same bits)",
    "random_randint": "Philox on the device is not written yet (the host draws the same bits)",
    "conv2d": "direct convolution kernels are not written yet (im2col + tiled GEMM next)",
    "conv2d_input_grad": "direct convolution kernels are not written yet",
    "conv2d_filter_grad": "direct convolution kernels are not written yet",
    "max_pool2d": _LOOP_NEST,
    "max_pool2d_grad": _LOOP_NEST,
    "max_pool2d_gather": _LOOP_NEST,
    "avg_pool2d": _LOOP_NEST,
    "avg_pool2d_grad": _LOOP_NEST,
    "sparse_sgd": "row updates in place with checked ids: needs a device error flag",
    "sparse_moment": "row updates in place with checked ids: needs a device error flag",
    "sparse_adam_step": "row updates in place with checked ids: needs a device error flag",
}


def template_for(op_name: str, label: str) -> str:
    """The CUDA scalar template of elementwise op ``op_name``; ``CompileError`` if none."""
    if op_name == "copy":
        return "{0}"
    template = CUDA_TEMPLATES.get(op_name)
    if template is None:
        raise CompileError(f"op {op_name!r} ({label}) has no CUDA template; compile with "
                           "backend='numpy' or 'numba'")
    return template


def coverage() -> dict[str, str]:
    """How each registry op runs on this backend: ``device``, ``no kernel`` or ``host``."""
    found = {}
    for name in REGISTRY:
        if name in CUDA_TEMPLATES or name in DEVICE_REDUCTIONS or name == "matmul":
            found[name] = "device"
        elif name in NO_KERNEL:
            found[name] = "no kernel"
        elif name in HOST_FALLBACK:
            found[name] = "host"
        else:
            found[name] = "missing"
    return found
