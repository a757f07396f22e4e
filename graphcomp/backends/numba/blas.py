"""numpy's own BLAS, callable from generated Numba code.

Numba's ``np.dot`` calls the BLAS bundled with scipy. numpy wheels bundle another OpenBLAS,
with its own thread pool, and a process that runs both (a user's numpy code between graphcomp
steps, or the benchmarks' numpy baseline) gets two pools whose idle threads spin on the same
cores: measured here, a 128x784x512 float32 GEMM took 0.55 ms when only one library ran and
3.9-13 ms when numpy's and scipy's alternated (``benchmarks/bench_blas_pools.py``). So generated
kernels call numpy's ``cblas_[sd]gemm`` directly, by symbol, through Numba's
``ExternalFunction``: the symbol name, not an address, goes into the compiled code, so the
on-disk cache keeps working. When numpy's BLAS cannot be found (a numpy built against another
BLAS), ``numpy_blas()`` is None and kernels fall back to Numba's ``np.dot``.

>>> info = numpy_blas()
>>> info is None or info.sgemm.endswith("gemm64_") or info.sgemm == "cblas_sgemm"
True
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

# (sgemm symbol, dgemm symbol, integer width) in the order they are tried. numpy >= 2 wheels
# ship scipy-openblas64 (prefixed, ILP64); plain names are LP64 OpenBLAS builds.
_SYMBOLS = [
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", 64),
    ("cblas_sgemm64_", "cblas_dgemm64_", 64),
    ("cblas_sgemm", "cblas_dgemm", 32),
]


@dataclass(frozen=True)
class BlasLibrary:
    """Where numpy's BLAS lives and how its GEMMs are named."""

    path: str
    sgemm: str
    dgemm: str
    int_bits: int


@functools.cache
def numpy_blas() -> BlasLibrary | None:
    """numpy's bundled BLAS library, or None when it is not a library we can call.

    >>> lib = numpy_blas()
    >>> lib is None or lib.int_bits in (32, 64)
    True
    """
    root = os.path.dirname(np.__file__)
    # Where numpy's wheels keep their bundled libraries: Linux, macOS, Windows.
    folders = [os.path.join(root, os.pardir, "numpy.libs"), os.path.join(root, ".dylibs")]
    paths = [p for folder in folders for p in sorted(glob.glob(os.path.join(folder, "*openblas*")))]
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for sgemm, dgemm, bits in _SYMBOLS:
            if bits == 32 and "64" in os.path.basename(path):
                continue  # an ILP64 library without suffixed names: integer width unknown
            if hasattr(library, sgemm) and hasattr(library, dgemm):
                return BlasLibrary(os.path.realpath(path), sgemm, dgemm, bits)
    return None


@functools.cache
def load_numpy_blas(path: str) -> None:
    """Make the library's symbols visible to Numba's linker (generated modules call this
    before any of their functions is compiled or loaded from the cache)."""
    import llvmlite.binding as llvm

    llvm.load_library_permanently(path)


def gemm_externals(library: BlasLibrary, by_address: bool = False) -> dict[str, object]:
    """Numba ``ExternalFunction``s for ``cblas_sgemm`` and ``cblas_dgemm`` (row-major calls),
    named ``cblas_[sd]gemm``. ``by_address=True`` declares the matrices as integer addresses
    instead (the same ABI as pointers on 64-bit targets, so a call can start in the middle of
    an array), named ``[sd]gemm_at``."""
    from numba import types

    integer = types.int64 if library.int_bits == 64 else types.int32
    matrix = types.int64 if by_address else types.voidptr
    names = ("sgemm_at", "dgemm_at") if by_address else ("cblas_sgemm", "cblas_dgemm")
    externals: dict[str, object] = {}
    for name, symbol, scalar in ((names[0], library.sgemm, types.float32),
                                 (names[1], library.dgemm, types.float64)):
        signature = types.void(
            types.int32, types.int32, types.int32, integer, integer, integer, scalar,
            matrix, integer, matrix, integer, scalar, matrix, integer,
        )
        externals[name] = types.ExternalFunction(symbol, signature)
    return externals


@functools.cache
def blas_thread_count() -> tuple[Any, Any] | None:
    """``(get, set)`` of numpy's OpenBLAS thread count, through ctypes; None when numpy's
    library is not OpenBLAS (a library without the pair keeps its thread count).

    >>> counts = blas_thread_count()
    >>> counts is None or counts[0]() >= 1
    True
    """
    library = numpy_blas()
    if library is None:
        return None
    blas = ctypes.CDLL(library.path)
    prefix = "scipy_openblas_" if library.sgemm.startswith("scipy_") else "openblas_"
    suffix = "64_" if library.sgemm.endswith("64_") else ""
    get_threads = getattr(blas, f"{prefix}get_num_threads{suffix}", None)
    set_threads = getattr(blas, f"{prefix}set_num_threads{suffix}", None)
    if get_threads is None or set_threads is None:
        return None
    set_threads.argtypes = [ctypes.c_int]
    return get_threads, set_threads
