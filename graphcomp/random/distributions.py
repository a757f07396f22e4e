"""``gc.random``: uniform, normal, bernoulli and randint draws as graph nodes.

Each call makes one random node with a stream of its own; every call of a compiled function
that computes it draws new values (see ``docs/randomness.md``). Shapes may hold symbols bound
by the function's inputs (``x.shape[0]``, ``"N"``). Draws carry no gradient, but the tensors
they are combined with do: ``mu + sigma * gc.random.normal(...)`` is the reparameterisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, RangeError, ShapeError
from graphcomp.ir import Graph, current_graph, user_source_line
from graphcomp.ir.dims import Dim
from graphcomp.ops import Tensor, apply
from graphcomp.ops.functions import stop_gradient
from graphcomp.ops.random_ops import MAX_SPAN
from graphcomp.random.state import next_stream

ShapeLike = int | str | Sequence[int | str]


def _graph_of(*operands: Any) -> Graph:
    for operand in operands:
        if isinstance(operand, Tensor):
            return operand.graph
    return current_graph()


def _shape(shape: ShapeLike, what: str) -> tuple[Dim, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer, str)) else tuple(shape)
    for d in dims:
        if isinstance(d, bool) or not (isinstance(d, str) or (
                isinstance(d, (int, np.integer)) and d >= 0)):
            raise ShapeError(f"{what} at {user_source_line()}: dimension {d!r} must be an int "
                             f">= 0 or a symbol (a str such as 'N', or x.shape[0])")
    return tuple(d if isinstance(d, str) else int(d) for d in dims)


def _float_dtype(dtype: Any, what: str) -> np.dtype:
    result = dtypes.as_dtype(dtype, where=f"for {what} at {user_source_line()}")
    if result.kind != "f":
        raise DTypeError(f"{what} at {user_source_line()}: dtype must be float32 or float64, "
                         f"got {result}")
    return result


def _draw(op: str, graph: Graph, shape: tuple[Dim, ...], dtype: np.dtype, name: str | None,
          **attrs: Any) -> Tensor:
    state, stream = next_stream(graph)
    return apply(op, state, shape=shape, dtype=dtype.name, stream=stream, name=name, **attrs)


def uniform(shape: ShapeLike, dtype: Any = "float32", low: float | Tensor = 0.0,
            high: float | Tensor = 1.0, name: str | None = None) -> Tensor:
    """Floats drawn uniformly from ``[low, high)`` (``low + (high - low) * u``, ``u`` in
    [0, 1) with 24 (float32) or 53 (float64) random bits; rounding may give ``high``
    itself when ``low != 0`` or ``high != 1``).

    >>> import graphcomp as gc
    >>> with gc.Graph(seed=1):
    ...     u = gc.random.uniform(("N", 3), low=-1.0, high=1.0)
    >>> u.shape, u.dtype
    (('N', 3), dtype('float32'))
    """
    dtype_ = _float_dtype(dtype, "uniform")
    graph = _graph_of(low, high)
    u = _draw("random_uniform", graph, _shape(shape, "uniform"), dtype_, name)
    if isinstance(low, Tensor) or isinstance(high, Tensor) or (low, high) != (0.0, 1.0):
        u = low + (high - low) * u
    return u


def normal(shape: ShapeLike, dtype: Any = "float32", mean: float | Tensor = 0.0,
           std: float | Tensor = 1.0, name: str | None = None) -> Tensor:
    """Normal draws ``mean + std * z``, ``z`` standard normal (Box-Muller over Philox).

    Gradients flow to tensor ``mean`` and ``std`` (the reparameterisation trick), not to ``z``.

    >>> import graphcomp as gc
    >>> with gc.Graph(seed=1):
    ...     z = gc.random.normal((2, 64), "float64")
    >>> z.shape
    (2, 64)
    """
    dtype_ = _float_dtype(dtype, "normal")
    z = _draw("random_normal", _graph_of(mean, std), _shape(shape, "normal"), dtype_, name)
    if isinstance(mean, Tensor) or isinstance(std, Tensor) or (mean, std) != (0.0, 1.0):
        z = mean + std * z
    return z


def bernoulli(p: float | Tensor, shape: ShapeLike, dtype: Any = "bool",
              name: str | None = None) -> Tensor:
    """``True`` (or 1) with probability ``p``: ``u < p`` for a float64 uniform ``u``.

    ``p`` is a float in [0, 1] or a float tensor (broadcast against ``shape``; values outside
    [0, 1] act as 0 or 1; it gets no gradient).

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     keep = gc.random.bernoulli(0.9, (4, 8), "float32")
    >>> keep.dtype
    dtype('float32')
    """
    dtype_ = dtypes.as_dtype(dtype, where=f"for bernoulli at {user_source_line()}")
    if not isinstance(p, Tensor):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or (
                not 0.0 <= float(p) <= 1.0):
            raise RangeError(f"bernoulli at {user_source_line()}: p must lie in [0, 1], "
                             f"got {p!r}")
    elif p.dtype.kind != "f":
        raise DTypeError(f"bernoulli at {user_source_line()}: a tensor p must be float32 or "
                         f"float64, got {p.dtype}")
    u = _draw("random_uniform", _graph_of(p), _shape(shape, "bernoulli"),
              np.dtype("float64"), name)
    if isinstance(p, Tensor):
        p = stop_gradient(p.astype("float64"))
    hit = u < p
    return hit if dtype_ == np.dtype("bool") else hit.astype(dtype_)


def randint(low: int, high: int, shape: ShapeLike, dtype: Any = "int64",
            name: str | None = None) -> Tensor:
    """Integers drawn uniformly from ``[low, high)``, ``high - low <= 2**32``.

    One 32-bit word per element, mapped by multiply-shift: each value has probability
    within ``2**-32`` of ``1 / (high - low)`` (exactly uniform when ``high - low`` is a power
    of two).

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     negatives = gc.random.randint(0, 10_000, ("N", 5))
    >>> negatives.dtype
    dtype('int64')
    """
    dtype_ = dtypes.as_dtype(dtype, where=f"for randint at {user_source_line()}")
    where = f"randint at {user_source_line()}"
    if dtype_.kind != "i":
        raise DTypeError(f"{where}: dtype must be int32 or int64, got {dtype_}")
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, (int, np.integer)):
            raise DTypeError(f"{where}: low and high must be ints, got {bound!r}")
    low, high = int(low), int(high)
    info = np.iinfo(dtype_)
    if low >= high:
        raise RangeError(f"{where}: needs low < high, got low={low}, high={high}")
    if high - low > MAX_SPAN:
        raise RangeError(f"{where}: high - low = {high - low} exceeds 2**32")
    if low < info.min or high - 1 > info.max:
        raise RangeError(f"{where}: [{low}, {high}) does not fit {dtype_}")
    return _draw("random_randint", current_graph(), _shape(shape, "randint"), dtype_, name,
                 low=low, high=high)
