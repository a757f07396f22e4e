"""Fixed helper functions of a generated module: the flat copy and the BLAS products.

Their text depends only on the dtypes a program multiplies and on the BLAS library numpy
loaded (its path, symbol names and integer width), so it is written here once; each is a
library module of its own in the kernel cache, imported by the drivers and kernels that call
it (below, and docs/architecture.md, "Module layout of generated code").

>>> copy_kernel("@njit").splitlines()[1]
'def copy_flat(source, target):'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba.blas import BlasLibrary
from graphcomp.backends.numba.expressions import DTYPE_SUFFIX, literal


def copy_kernel(head: str) -> str:
    """``copy_flat(source, target)``: target[:] = source for 1-D views (``head``: its
    decorator line)."""
    return "\n".join([
        head,
        "def copy_flat(source, target):",
        '    """target[:] = source, for 1-D views."""',
        "    for i in range(target.shape[0]):",
        "        target[i] = source[i]",
    ])


def gemm_helpers(blas: BlasLibrary | None, dtypes: set[str]) -> list[str]:
    """The matrix-product helpers the kernels and the driver call: ``gemm_acc_<sfx>`` and
    ``gemm_<sfx>`` on numpy's BLAS for each dtype, or ``matmul_2d`` (np.dot) without it."""
    if not dtypes:
        return []
    if blas is None:
        return ["", "\n".join([
            '@njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)',
            "def matmul_2d(a, b, out):",
            '    """out = a @ b (Numba\'s np.dot: numpy\'s BLAS was not found; see blas.py)."""',
            "    np.dot(a, b, out)",
        ]), ""]
    lines = [
        "",
        f"# numpy's BLAS, called by symbol (graphcomp/backends/numba/blas.py): {blas.path}",
        f"_BLAS = BlasLibrary({blas.path!r}, {blas.sgemm!r}, {blas.dgemm!r}, {blas.int_bits})",
        "load_numpy_blas(_BLAS.path)",
        "_GEMM = gemm_externals(_BLAS)",
    ]
    blas_int = f"np.int{blas.int_bits}"  # the library's integer width (ILP64 or LP64)
    for dtype in sorted(dtypes):
        suffix = DTYPE_SUFFIX[dtype]
        cblas = "cblas_sgemm" if dtype == "float32" else "cblas_dgemm"
        one, zero = literal(1.0, np.dtype(dtype)), literal(0.0, np.dtype(dtype))
        lines += ["", f"{cblas} = _GEMM[{cblas!r}]", "", "", "\n".join([
            '@njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)',
            f"def gemm_acc_{suffix}(a, b, out, alpha, beta):",
            f'    """out = alpha * a @ b + beta * out for 2-D {dtype} arrays, C-ordered or',
            '    transposed (F-ordered)."""',
            "    m, k = a.shape",
            "    n = b.shape[1]",
            "    if m == 0 or n == 0:",
            "        return",
            "    if k == 0:",
            "        for i in range(m):",
            "            for j in range(n):",
            "                out[i, j] = beta * out[i, j] if beta != 0 else 0",
            "        return",
            f"    size = {np.dtype(dtype).itemsize}",
            "    # Row-major BLAS: an operand with contiguous rows is passed as is, a transposed",
            "    # view as its base with the transpose flag; a leading dimension of one is free.",
            "    if a.strides[1] == size or k == 1:",
            "        trans_a, lda = 111, (a.strides[0] // size if m > 1 else k)",
            "    else:",
            "        trans_a, lda = 112, (a.strides[1] // size if k > 1 else m)",
            "    if b.strides[1] == size or n == 1:",
            "        trans_b, ldb = 111, (b.strides[0] // size if k > 1 else n)",
            "    else:",
            "        trans_b, ldb = 112, (b.strides[1] // size if n > 1 else k)",
            f"    {cblas}(101, trans_a, trans_b, {blas_int}(m), {blas_int}(n), {blas_int}(k),",
            f"                np.{dtype}(alpha), a.ctypes, {blas_int}(lda), b.ctypes,",
            f"                {blas_int}(ldb), np.{dtype}(beta), out.ctypes, {blas_int}(n))",
        ]), "", "", "\n".join([
            '@njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)',
            f"def gemm_{suffix}(a, b, out):",
            '    """out = a @ b."""',
            f"    gemm_acc_{suffix}(a, b, out, {one}, {zero})",
        ]), "", "", "\n".join([
            "if numba_config.DISABLE_JIT:",
            "    # Plain Python (for pdb) cannot call BLAS by symbol; np.dot is the same library.",
            f"    def gemm_acc_{suffix}(a, b, out, alpha, beta):  # noqa: F811",
            "        out *= beta",
            "        out += alpha * np.dot(a, b)",
        ]), ""]
    return lines


def split_gemm_helpers(blas: BlasLibrary) -> list[str]:
    """The lanes' functions (lanes/code.py, copied by ``lanes.module_text``): ``gemm_split``
    for every dtype, and ``rows_first``/``rows_next`` for row segments."""
    return ["", L.module_text(blas), ""]


# ---------------------------------------------------------------- library modules
#
# A generated program is a driver module plus the modules it imports: each distinct kernel,
# the copy helper, the BLAS helpers of one dtype, the fast-math library, the random generator
# and the lanes are a module of their own, cached as ``gc_<hash of its text>.py``. An importer
# names the module it imports by that hash, so when a callee's text changes its importer's
# text changes too and numba's cache of the importer cannot go stale (NUMBA_NOTES: "a changed
# callee in another file leaves the caller's cache stale"). Identical pieces of two programs
# (the training step and the evaluation function of one model) are then one module, compiled
# once per cache.

LIBRARY_IMPORTS = [
    "import math  # noqa: F401",
    "",
    "import numpy as np  # noqa: F401",
    "from numba import config as numba_config  # noqa: F401",
    "from numba import njit, prange  # noqa: F401",
    "",
    "from graphcomp.errors import InputError  # noqa: F401",
]


def library_text(title: str, body: Sequence[str], imports: Sequence[str] = ()) -> str:
    """A library module: a docstring line, the common imports, ``imports`` (lines importing
    other library modules), then ``body``."""
    lines = [f'"""graphcomp: {title} (generated; imported by generated drivers)."""', "",
             *LIBRARY_IMPORTS, *imports, "", *body]
    return "\n".join(lines).rstrip("\n") + "\n"


def import_line(module: str, names: Sequence[str]) -> str:
    """``from <module> import a, b  # noqa: F401`` (names sorted)."""
    return f"from {module} import {', '.join(sorted(names))}  # noqa: F401"


def gemm_library(blas: BlasLibrary | None, dtype: str) -> str:
    """The BLAS helpers of one dtype (``gemm_<sfx>``, ``gemm_acc_<sfx>``), or ``matmul_2d``
    (``dtype`` "any": numpy's BLAS was not found)."""
    imports = ["from graphcomp.backends.numba.blas import (  # noqa: F401",
               "    BlasLibrary,", "    gemm_externals,", "    load_numpy_blas,", ")"]
    return library_text(f"matrix products ({dtype})", gemm_helpers(blas, {dtype}), imports)


def copy_library(head: str) -> str:
    """``copy_flat`` alone (``head``: its decorator line)."""
    return library_text("flat copy", [copy_kernel(head)])
