"""The CUDA backend: the passes' program rendered as numba-cuda kernels (docs/cuda.md).

``gc.compile(..., backend="cuda")`` loads ``backend.compile_cuda``; ``device_call`` calls
such a function with device arrays. Every import of numba-cuda goes through ``device.py``,
so importing this package imports no CUDA code.
"""

from graphcomp.backends.cuda.calls import device_call

__all__ = ["device_call"]
