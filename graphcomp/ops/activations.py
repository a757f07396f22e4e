"""Activation functions built from primitives: each is a few elementwise ops, so the numba
backend fuses it into the loop of its producer or consumer like a primitive of its own.

``gelu`` calls the ``erf`` primitive (libm's ``erf`` on numba: scalar, not vectorised);
``gelu(x, approximate="tanh")`` and ``silu`` go through the vectorised ``tanh`` and ``sigmoid``
helpers instead.

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 8), "float32", name="x")
...     y = gc.gelu(gc.leaky_relu(x, 0.1))
>>> y.shape, y.dtype
(('N', 8), dtype('float32'))
"""

from __future__ import annotations

import math
from typing import Any, Literal

from graphcomp.ops import functions as F
from graphcomp.ops.tensor import Tensor

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    """``x`` where positive, ``negative_slope * x`` elsewhere (gradient at 0: the slope).
    ``gc.leaky_relu(x, 0.2)``"""
    x = F._to_float(x)
    return F.where(F.greater(x, 0), x, x * negative_slope)


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere. ``gc.elu(x)``"""
    x = F._to_float(x)
    positive = F.greater(x, 0)
    # expm1 of the non-positive part only: exp of a large x would overflow in the unused branch
    # (and give an inf * 0 = NaN gradient).
    negative_part = F.where(positive, F.zeros_like(x), x)
    return F.where(positive, x, F.expm1(negative_part) * alpha)


def gelu(x: Any, approximate: Literal[False, "tanh"] = False) -> Tensor:
    """Gaussian error linear unit, ``x * Phi(x)``; ``approximate="tanh"`` uses
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``. ``gc.gelu(x)``"""
    x = F._to_float(x)
    if approximate == "tanh":
        inner = (x + x * x * x * 0.044715) * _SQRT_2_OVER_PI
        return x * (F.tanh(inner) + 1.0) * 0.5
    if approximate is not False:
        raise ValueError(f"gelu: approximate must be False or 'tanh', got {approximate!r}")
    return x * (F.erf(x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5


def silu(x: Any) -> Tensor:
    """``x * sigmoid(x)`` (also called swish). ``gc.silu(x)``"""
    x = F._to_float(x)
    return x * F.sigmoid(x)


def log_sigmoid(x: Any) -> Tensor:
    """``log(sigmoid(x))`` without overflow or log(0): ``min(x, 0) - log1p(exp(-|x|))``.
    ``gc.log_sigmoid(x)``"""
    x = F._to_float(x)
    return F.minimum(x, 0) - F.log1p(F.exp(-F.abs(x)))
