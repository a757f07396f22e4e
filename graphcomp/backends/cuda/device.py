"""The one door to numba-cuda: finding it, checking for a device, and the few calls we use.

Everything CUDA-specific that the backend calls (``cuda.jit``, device arrays, streams,
``compile_ptx``) goes through this module, so that moving to another package
(numba-cuda-mlir) changes one file. Nothing here is imported by ``import graphcomp``.

>>> simulator_requested() in (True, False)
True
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

import numpy as np

from graphcomp.errors import CompileError

HOW_TO_SIMULATE = ("to run CUDA kernels on the CPU without a GPU, install numba-cuda and set "
                   "NUMBA_ENABLE_CUDASIM=1 before numba is imported")


def simulator_requested() -> bool:
    """Whether ``NUMBA_ENABLE_CUDASIM`` asks numba-cuda to simulate the device on the CPU."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def numba_cuda_installed() -> bool:
    """Whether NVIDIA's numba-cuda package (not numba's deprecated built-in) is installed."""
    return importlib.util.find_spec("numba_cuda") is not None


def load_cuda() -> ModuleType:
    """``numba.cuda`` from numba-cuda, checked usable: a ``CompileError`` saying what is
    missing (the package, a driver or GPU) and how to run on the simulator otherwise."""
    if not numba_cuda_installed():
        raise CompileError(
            "backend='cuda' needs NVIDIA's numba-cuda package, which is not installed: "
            "pip install 'graphcomp[cuda]' (or 'numba-cuda[cu12]' / 'numba-cuda[cu13]' for "
            f"a GPU); {HOW_TO_SIMULATE}; or compile with backend='numba' for the CPU")
    from numba import cuda

    if not simulator_requested() and not cuda.is_available():
        raise CompileError(
            "backend='cuda' found no usable CUDA driver or GPU (numba.cuda.is_available() is "
            f"False); {HOW_TO_SIMULATE}; or compile with backend='numba' for the CPU")
    return cuda


def is_simulated() -> bool:
    """Whether kernels run on numba-cuda's CPU simulator."""
    return simulator_requested()


def jit_kernel(function: Any) -> Any:
    """A kernel (``cuda.jit``) compiled lazily at its first launch."""
    return load_cuda().jit(function)


def to_device(array: np.ndarray, stream: Any = 0) -> Any:
    """A device copy of a host array."""
    return load_cuda().to_device(np.ascontiguousarray(array), stream=stream)


def device_zeros(size: int, dtype: np.dtype, stream: Any = 0) -> Any:
    """A zeroed 1-D device array of ``size`` elements (an arena)."""
    return load_cuda().to_device(np.zeros(max(size, 1), dtype=dtype), stream=stream)


def as_device_array(array: Any) -> Any:
    """A device view of an object with ``__cuda_array_interface__`` (no copy); a simulator
    array as it is."""
    if type(array).__name__ == "FakeCUDAArray":
        return array
    return load_cuda().as_cuda_array(array)


def copy_to_host(array: Any) -> np.ndarray:
    """A host copy of a device array (numba-cuda's, or any ``__cuda_array_interface__``)."""
    return np.asarray(as_device_array(array).copy_to_host())


def has_device_interface(array: Any) -> bool:
    """Whether ``array`` describes device memory (``__cuda_array_interface__``), or is a
    simulator device array."""
    return hasattr(array, "__cuda_array_interface__") or type(array).__name__ == "FakeCUDAArray"


def new_stream() -> Any:
    """A stream of its own (one per compiled function)."""
    return load_cuda().stream()


def unchecked_cuda() -> ModuleType:
    """``numba.cuda`` without the device check (to compile PTX where no GPU is present)."""
    if not numba_cuda_installed():
        raise CompileError("numba-cuda is not installed: pip install 'numba-cuda[cu13]'")
    from numba import cuda

    return cuda


def compile_ptx(function: Any, signature: Any, cc: tuple[int, int]) -> str:
    """PTX of a Python kernel for compute capability ``cc``; needs NVVM/NVRTC (the
    ``numba-cuda[cu13]`` extra), not a GPU. ``CompileError`` when they are missing."""
    if not numba_cuda_installed():
        raise CompileError("compile_ptx needs numba-cuda: pip install 'numba-cuda[cu13]'")
    from numba import cuda

    try:
        ptx, _ = cuda.compile_ptx(function, signature, cc=cc)
    except Exception as exc:  # the missing library's own error names it
        raise CompileError(f"compile_ptx failed for cc {cc}: {type(exc).__name__}: "
                           f"{str(exc)[:300]}") from None
    return str(ptx)


def gemm_library() -> ModuleType | None:
    """CuPy, whose ``matmul`` calls cuBLAS, where kernels run on a real GPU and CuPy is
    installed (``pip install 'graphcomp[cublas]'``); None on the simulator, without CuPy or
    with ``GRAPHCOMP_CUDA_GEMM=tiled``: then 2-D products run our tiled kernel."""
    if simulator_requested() or os.environ.get("GRAPHCOMP_CUDA_GEMM") == "tiled":
        return None
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CuPy for another CUDA version, or no device: the tiled kernel
        return None
    return cupy


class CublasProduct:
    """``out = a @ b`` for 2-D device arrays through cuBLAS (CuPy's ``matmul``) on
    ``stream``: CuPy views of the same device memory (``__cuda_array_interface__``, no
    copy); ``transposed`` operands are read as their base's ``.T``. Unverified until
    benchmarks/gpu/check.sh runs on a GPU."""

    def __init__(self, cupy: ModuleType, stream: Any, a: Any, b: Any, out: Any,
                 transposed: tuple[bool, bool]) -> None:
        left, right = cupy.asarray(a), cupy.asarray(b)
        self._a = left.T if transposed[0] else left
        self._b = right.T if transposed[1] else right
        self._out = cupy.asarray(out)
        self._matmul = cupy.matmul
        self._stream = cupy.cuda.ExternalStream(int(stream.handle))

    def __call__(self) -> None:
        with self._stream:
            self._matmul(self._a, self._b, out=self._out)
