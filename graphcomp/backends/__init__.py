"""Backends: turn a ``Program`` into something that runs (numpy interpreter, Numba, CUDA)."""
