"""The CUDA backend: the passes' program rendered as numba-cuda kernels (docs/cuda.md).

``gc.compile(..., backend="cuda")`` loads ``backend.compile_cuda``. Every import of numba-cuda
goes through ``device.py``, so importing this package imports no CUDA code.
"""
