"""How the numba backend computes each registry op: one table, keyed by op name.

The op registry (``graphcomp.ops``) says what an op is; this table says how this backend runs
it. An elementwise op is a scalar template that the expression writer evaluates inside a fused
loop body; a template that calls a vectorisable helper of ``fastmath.py`` names it in
``fastmath`` (``"tanh"``), and the backend picks the variant for the operand dtype
(``tanh_f32``). Every other op names the way it runs (a view, an index map inside fused loops,
a loop nest of its own, a library call, ...) with a one-line note; the code for those lives in
``kernels.py``, ``expressions.py`` and ``codegen.py``.

``tests/backends/test_numba_op_table.py`` checks that every registered op has an entry here and
every entry a registered op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from graphcomp.errors import CompileError
from graphcomp.ops import REGISTRY

# The helpers of fastmath.py by (function, dtype name): the names generated code calls. Kept
# here as names (tests/backends/test_numba_op_table.py checks them against fastmath.FUNCTIONS)
# so that generating code does not import numba, which fastmath.py needs.
FASTMATH_FUNCTIONS: dict[tuple[str, str], str] = {
    (name, dtype): f"{name}_{'f64' if dtype == 'float64' else 'f32'}"
    for name in ("exp", "expm1", "log", "log1p", "tanh", "sigmoid")
    for dtype in ("float64", "float32")
}

# "elementwise": a scalar template in fused loop bodies;  "view": the input's buffer, no code;
# "index map": index arithmetic on the input inside the consumer's loop;  "loop nest": a kernel
# function of its own;  "library": a call into a library (BLAS);  "bound dims": an expression of
# the dims bound at call time;  "argument": a source, passed to the step, never computed.
KernelKind = Literal[
    "elementwise", "view", "index map", "loop nest", "library", "bound dims", "argument"
]

FASTMATH_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class OpKernel:
    """How the numba backend computes one op.

    ``template`` (elementwise only) is scalar code: ``{0}``, ``{1}``, ... are the operands
    (always plain names, so one may appear twice), ``{dtype}`` the result's dtype name, ``{to}``
    a cast's target dtype name and ``{fastmath}`` the helper named by ``fastmath`` for the
    operand dtype. ``note`` says in one line how the op runs.

    >>> OpKernel("elementwise", "{fastmath}({0})", fastmath="tanh").helper(np.dtype("float32"))
    'tanh_f32'
    """

    kind: KernelKind
    template: str = ""
    fastmath: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind == "elementwise" and not self.template:
            raise ValueError("an elementwise entry needs a template")
        if self.kind != "elementwise" and self.template:
            raise ValueError(f"only elementwise entries have a template, not {self.kind!r} ones")
        if self.fastmath is not None:
            missing = [d for d in FASTMATH_DTYPES if (self.fastmath, d) not in FASTMATH_FUNCTIONS]
            if missing:
                raise ValueError(f"fastmath.py has no {self.fastmath!r} helper for "
                                 f"{', '.join(missing)}")
        if (self.fastmath is not None) != ("{fastmath}" in self.template):
            raise ValueError(f"template {self.template!r} must call {{fastmath}} exactly when "
                             f"the entry names a fast-math helper (fastmath={self.fastmath!r})")
        for (name, _), function in FASTMATH_FUNCTIONS.items():
            # The module only carries fastmath.py when an entry says it calls a helper.
            if f"{function}(" in self.template:
                raise ValueError(f"template {self.template!r} calls {function} by "
                                 f"name: write {{fastmath}} and fastmath={name!r}")

    def helper(self, dtype: np.dtype) -> str:
        """The name of this entry's fast-math helper for operands of ``dtype``."""
        key = (self.fastmath or "", dtype.name)
        if key not in FASTMATH_FUNCTIONS:
            raise CompileError(f"fastmath.py has no {self.fastmath!r} helper for {dtype}")
        return FASTMATH_FUNCTIONS[key]


def _scalar(template: str, fastmath: str | None = None, note: str = "") -> OpKernel:
    return OpKernel("elementwise", template, fastmath, note)


OP_TABLE: dict[str, OpKernel] = {
    # ---------------------------------------------------------------- elementwise: unary
    "negative": _scalar("-{0}"),
    "exp": _scalar("{fastmath}({0})", fastmath="exp"),
    "log": _scalar("{fastmath}({0})", fastmath="log"),
    "log1p": _scalar("{fastmath}({0})", fastmath="log1p"),
    "expm1": _scalar("{fastmath}({0})", fastmath="expm1"),
    "sqrt": _scalar("np.sqrt({0})"),
    "abs": _scalar("abs({0})"),
    "sign": _scalar("np.sign({0})"),
    "sin": _scalar("np.sin({0})"),
    "cos": _scalar("np.cos({0})"),
    "tanh": _scalar("{fastmath}({0})", fastmath="tanh"),
    "sigmoid": _scalar("{fastmath}({0})", fastmath="sigmoid"),
    # ---------------------------------------------------------------- elementwise: binary
    "add": _scalar("{0} + {1}"),
    "subtract": _scalar("{0} - {1}"),
    "multiply": _scalar("{0} * {1}"),
    "divide": _scalar("{0} / {1}"),
    "power": _scalar("{0} ** {1}"),
    "maximum": _scalar("{0} if ({0} > {1} or {0} != {0}) else {1}",
                       note="NaN-propagating like numpy: a NaN in either operand wins"),
    "minimum": _scalar("{0} if ({0} < {1} or {0} != {0}) else {1}",
                       note="NaN-propagating like numpy: a NaN in either operand wins"),
    "less": _scalar("{0} < {1}"),
    "less_equal": _scalar("{0} <= {1}"),
    "greater": _scalar("{0} > {1}"),
    "greater_equal": _scalar("{0} >= {1}"),
    "equal": _scalar("{0} == {1}"),
    "not_equal": _scalar("{0} != {1}"),
    "where": _scalar("{1} if {0} else {2}"),
    "cast": _scalar("np.{to}({0})", note="to bool: ({0} != 0), written by expressions.py"),
    "stop_gradient": _scalar("{0}", note="an alias of its input when that has a buffer"),
    # ---------------------------------------------------------------- elementwise: numpy's further
    "floor": _scalar("np.floor({0})"),
    "ceil": _scalar("np.ceil({0})"),
    "trunc": _scalar("np.trunc({0})"),
    "rint": _scalar("np.rint({0})"),
    "arcsin": _scalar("np.arcsin({0})"),
    "arccos": _scalar("np.arccos({0})"),
    "arctan": _scalar("np.arctan({0})"),
    "arcsinh": _scalar("np.arcsinh({0})"),
    "erf": _scalar("math.erf({0})", note="libm's erf: scalar, not vectorised"),
    "arccosh": _scalar("np.arccosh({0})"),
    "arctanh": _scalar("np.arctanh({0})"),
    "sinc": _scalar("np.sin(np.{dtype}(np.pi) * {0}) / (np.{dtype}(np.pi) * {0}) if {0} != 0 "
                    "else np.{dtype}(1.0)", note="numpy's formula; pi * x is never 0 for x != 0"),
    "isnan": _scalar("np.isnan({0})"),
    "isinf": _scalar("np.isinf({0})"),
    "isfinite": _scalar("np.isfinite({0})"),
    "remainder": _scalar("np.{dtype}({0} % {1} if {1} != -1 else -((-{0}) % (-{1})))",
                         note="Python's % (numpy's signs, x % 0 is NaN or 0); x % -1 as "
                              "-(-x % 1), as the minimum int % -1 traps; ints % give int64"),
    "fmax": _scalar("{0} if ({0} >= {1} or {1} != {1}) else {1}",
                    note="NaN-ignoring like numpy: the other operand where one is NaN"),
    "fmin": _scalar("{0} if ({0} <= {1} or {1} != {1}) else {1}",
                    note="NaN-ignoring like numpy: the other operand where one is NaN"),
    "arctan2": _scalar("np.arctan2({0}, {1})"),
    "hypot": _scalar("np.hypot({0}, {1})"),
    # ---------------------------------------------------------------- structural
    "reshape": OpKernel("view", note="reshape of the input buffer (no copy)"),
    "transpose": OpKernel("index map", note="permuted loop indices (matmul: a free .T view)"),
    "broadcast_to": OpKernel("index map", note="0 on broadcast axes"),
    "slice": OpKernel("index map", note="start + step * i (x[t]: a view of the input)"),
    "pad": OpKernel("loop nest", note="fill, then strided copy"),
    "concatenate": OpKernel("loop nest", note="one copy per input"),
    # ---------------------------------------------------------------- reductions
    "reduce_sum": OpKernel("loop nest", note="float64 accumulator over the reduced axes"),
    "reduce_prod": OpKernel("loop nest", note="float64 accumulator (int64 for integers)"),
    "reduce_max": OpKernel("loop nest",
                           note="running maximum (NaN wins) over the reduced axes"),
    "argmax": OpKernel("loop nest", note="first index of the maximum along the axis"),
    "dim_size": OpKernel("bound dims", note="product of the bound dims, read from dims"),
    # ---------------------------------------------------------------- scans, sorting
    "cumsum": OpKernel("loop nest", note="row by row along the axis, in the input's dtype"),
    "cumprod": OpKernel("loop nest",
                        note="row by row along the axis, in the input's dtype (exclusive: "
                             "shifted, from 1)"),
    "sort": OpKernel("loop nest", note="per line: copy, stable merge sort (NaN last)"),
    "argsort": OpKernel("loop nest", note="per line: copy, stable merge argsort"),
    "permute": OpKernel("loop nest", note="per line: checked gather by a permutation"),
    # ---------------------------------------------------------------- indexing, linalg
    "take": OpKernel("loop nest", note="bounds-checked gather, one check and one contiguous "
                                        "copy per index"),
    "scatter_add": OpKernel("loop nest", note="copy, then bounds-checked accumulate, one "
                                               "check per index"),
    "check_index": OpKernel("loop nest", note="copy, raising on a label outside [0, size)"),
    "sparse_sgd": OpKernel("loop nest", note="touched rows only: ids in stable order, "
                                              "rows summed per id, then the row update "
                                              "(in place in the table; sparse_kernels.py)"),
    "sparse_moment": OpKernel("loop nest", note="touched rows only, like sparse_sgd"),
    "sparse_adam_step": OpKernel("loop nest", note="touched rows only, like sparse_sgd"),
    "matmul": OpKernel("library", note="numpy's BLAS gemm per 2-D product (blas.py, lanes.py)"),
    # ---------------------------------------------------------------- random (random_kernels.py)
    "random_uniform": OpKernel("loop nest", note="Philox blocks, 4 float32 or 2 float64 each"),
    "random_normal": OpKernel("loop nest", note="Philox blocks, Box-Muller: 2 normals each"),
    "random_randint": OpKernel("loop nest", note="Philox blocks, 4 multiply-shift ints each"),
    # ---------------------------------------------------------------- convolution, pooling
    "conv2d": OpKernel("loop nest", note="im2col + one GEMM where C*kh*kw >= 27 or rows "
                                         "< 16 wide (passes/convolution.py), else direct "
                                         "loops, output column innermost (conv_kernels.py)"),
    "conv2d_input_grad": OpKernel("loop nest", note="GEMM + col2im by the same rule as "
                                                    "conv2d, else direct loops scattering "
                                                    "into zeroed out"),
    "conv2d_filter_grad": OpKernel("loop nest", note="one GEMM against im2col columns from "
                                                     "C*kh*kw >= 9, else direct loops, "
                                                     "float64 sum per tap"),
    "max_pool2d": OpKernel("loop nest", note="running maximum per window (NaN wins)"),
    "max_pool2d_grad": OpKernel("loop nest", note="g split between each window's tied maxima"),
    "max_pool2d_gather": OpKernel("loop nest", note="mean of v over each window's tied maxima"),
    "avg_pool2d": OpKernel("loop nest", note="window sum over kh * kw"),
    "avg_pool2d_grad": OpKernel("loop nest", note="g / (kh * kw) added over each window"),
    # ---------------------------------------------------------------- sources
    "placeholder": OpKernel("argument", note="an input array of the step"),
    "parameter": OpKernel("argument", note="parameter storage, updated in place"),
    "constant": OpKernel("argument", note="an array of constants (one element: a literal)"),
}


def register_kernel(name: str, template: str, fastmath: str | None = None) -> OpKernel:
    """Add the numba kernel of a registered elementwise op ``name`` (names are unique).

    ``template`` is scalar code over the operands ``{0}``, ``{1}``, ... (see ``OpKernel``);
    ``fastmath`` names the ``fastmath.py`` helper it calls as ``{fastmath}``, if any.

    >>> register_kernel("tanh", "np.tanh({0})")
    Traceback (most recent call last):
    ValueError: op 'tanh' already has a numba kernel: ...
    """
    if name in OP_TABLE:
        raise ValueError(f"op {name!r} already has a numba kernel: {OP_TABLE[name]}")
    if name not in REGISTRY or REGISTRY[name].kind != "elementwise":
        raise ValueError(f"op {name!r} is not a registered elementwise op: register its OpDef "
                         f"first (graphcomp.ops.register)")
    entry = _scalar(template, fastmath)
    OP_TABLE[name] = entry
    return entry


def kernel_for(op_name: str, label: str) -> OpKernel:
    """The table entry for ``op_name``; ``CompileError`` naming the op (``label``) if none.

    >>> kernel_for("tanh", "%3 tanh").fastmath
    'tanh'
    """
    entry = OP_TABLE.get(op_name)
    if entry is None:
        raise CompileError(
            f"op {op_name!r} ({label}) has no numba kernel; compile with backend='numpy' or "
            f"add one with graphcomp.backends.numba.op_table.register_kernel"
        )
    return entry
