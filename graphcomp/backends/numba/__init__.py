"""Numba code-generation backend."""
