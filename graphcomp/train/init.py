"""Initial values for parameters: plain numpy arrays, reproducible from a seed.

>>> import graphcomp as gc
>>> with gc.Graph():
...     W1 = gc.parameter(gc.init.glorot_uniform((784, 256), seed=0), name="W1")
>>> W1.shape, W1.dtype
((784, 256), dtype('float32'))

Fan-in and fan-out: a 2-D shape is ``(inputs, outputs)`` (as in ``x @ W``); a higher-rank shape is
``(out_channels, in_channels, *kernel)`` (as for convolutions); a 1-D shape has both equal to
its length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Seed = int | np.random.Generator | None

__all__ = [
    "fans", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "normal", "ones",
    "orthogonal", "uniform", "zeros",
]


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape``. ``fans((64, 128)) == (64, 128)``"""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def glorot_uniform(shape: Sequence[int], seed: Seed = None, dtype: Any = "float32") -> np.ndarray:
    """Uniform on ±sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio). ``glorot_uniform((64, 10))``"""
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return _rng(seed).uniform(-limit, limit, size=tuple(shape)).astype(dtype)


def glorot_normal(shape: Sequence[int], seed: Seed = None, dtype: Any = "float32") -> np.ndarray:
    """Normal with std sqrt(2 / (fan_in + fan_out)). ``glorot_normal((64, 10), seed=0)``"""
    fan_in, fan_out = fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return (_rng(seed).standard_normal(tuple(shape)) * std).astype(dtype)


def he_normal(shape: Sequence[int], seed: Seed = None, dtype: Any = "float32") -> np.ndarray:
    """Normal with std sqrt(2 / fan_in), for ReLU layers (He et al.). ``he_normal((64, 128), 0)``"""
    fan_in, _ = fans(shape)
    std = math.sqrt(2.0 / fan_in)
    return (_rng(seed).standard_normal(tuple(shape)) * std).astype(dtype)


def he_uniform(shape: Sequence[int], seed: Seed = None, dtype: Any = "float32") -> np.ndarray:
    """Uniform on ±sqrt(6 / fan_in). ``he_uniform((64, 128), seed=0)``"""
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return _rng(seed).uniform(-limit, limit, size=tuple(shape)).astype(dtype)


def normal(shape: Sequence[int], seed: Seed = None, std: float = 0.01, mean: float = 0.0,
           dtype: Any = "float32") -> np.ndarray:
    """Normal with the given mean and std. ``normal((10,), seed=0, std=0.1)``"""
    return (mean + std * _rng(seed).standard_normal(tuple(shape))).astype(dtype)


def orthogonal(shape: Sequence[int], seed: Seed = None, dtype: Any = "float32") -> np.ndarray:
    """A 2-D matrix with orthonormal rows or columns (whichever are fewer), from the QR
    factorisation of a standard normal one; recurrent weights keep the state's norm at first.
    ``orthogonal((32, 128), seed=0)``"""
    if len(shape) != 2:
        raise ValueError(f"orthogonal: needs a 2-D shape, got {tuple(shape)}")
    rows, cols = (int(d) for d in shape)
    tall = _rng(seed).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(tall)
    q = q * np.sign(np.diag(r))  # a unique factorisation: uniformly distributed q
    return (q if rows >= cols else q.T).astype(dtype)


def uniform(shape: Sequence[int], seed: Seed = None, low: float = -0.05, high: float = 0.05,
            dtype: Any = "float32") -> np.ndarray:
    """Uniform on [low, high). ``uniform((10,), seed=0)``"""
    return _rng(seed).uniform(low, high, size=tuple(shape)).astype(dtype)


def zeros(shape: Sequence[int], dtype: Any = "float32") -> np.ndarray:
    """All zeros (biases). ``zeros((128,))``"""
    return np.zeros(tuple(shape), dtype=dtype)


def ones(shape: Sequence[int], dtype: Any = "float32") -> np.ndarray:
    """All ones (scales). ``ones((128,))``"""
    return np.ones(tuple(shape), dtype=dtype)
