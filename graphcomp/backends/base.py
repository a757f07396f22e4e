"""The interface every backend implements, and the registry of backends by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from graphcomp.errors import CompileError


class Executable(Protocol):
    """A compiled program: one call computes every output and every update's new value."""

    # Read-only, so that an executable may hold a narrower type (the numba one's source is a str).
    @property
    def source(self) -> str | None:
        """The generated module's text, or None for a backend that generates none."""
        ...

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling (or loading from the cache)."""
        ...

    @property
    def cache_hit(self) -> bool:
        """Whether the compiled code came from the on-disk cache."""
        ...

    def run(
        self, inputs: Sequence[np.ndarray], binding: dict[str, int]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(outputs, new parameter values) for ``inputs`` under the dim ``binding``."""
        ...


BackendCompiler = Callable[..., Executable]
_BACKENDS: dict[str, Callable[[], BackendCompiler]] = {}


def register_backend(name: str, loader: Callable[[], BackendCompiler]) -> None:
    """Make ``gc.compile(..., backend=name)`` use ``loader()`` (imported lazily)."""
    _BACKENDS[name] = loader


def get_backend(name: str) -> BackendCompiler:
    """The compile function of backend ``name``; ``CompileError`` for an unknown name."""
    if name not in _BACKENDS:
        raise CompileError(f"unknown backend {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]()


def available_backends() -> list[str]:
    """Names accepted by ``gc.compile(..., backend=...)``."""
    return sorted(_BACKENDS)


def _load_numpy() -> BackendCompiler:
    from graphcomp.backends.numpy_backend import compile_numpy

    return compile_numpy


register_backend("numpy", _load_numpy)


def _load_numba() -> BackendCompiler:
    from graphcomp.backends.numba.backend import compile_numba

    return compile_numba


register_backend("numba", _load_numba)


def _load_cuda() -> BackendCompiler:
    from graphcomp.backends.cuda.backend import compile_cuda

    return compile_cuda


register_backend("cuda", _load_cuda)
