"""Random sources: ``random_uniform``, ``random_normal`` and ``random_randint``.

Each is a pure function of its one input, the generator state ``int64[2] = [seed, call]``,
and of its attrs ``shape``, ``dtype`` and ``stream`` (randint also ``low``, ``high``). Element
``i`` reads Philox4x32-10 (``philox.py``) at counter ``(block, stream, call_lo, call_hi)`` with
key ``(seed_lo, seed_hi)``:

* ``random_uniform`` float32: word ``i`` (block ``i // 4``, word ``i % 4``), its top 24 bits
  times 2**-24; float64: words ``2i, 2i+1`` (block ``i // 2``), 53 bits times 2**-53.
* ``random_randint``: word ``i`` mapped onto ``[low, high)`` by multiply-shift.
* ``random_normal``: pair ``j = i // 2`` reads block ``j``: ``u1 = 1 - uniform53(w0, w1)`` in
  (0, 1], ``u2 = uniform53(w2, w3)``; Box-Muller ``sqrt(-2 log u1) * (cos, sin)(2 pi u2)`` in
  float64 (element ``2j`` the cosine, ``2j + 1`` the sine), then cast to ``dtype``.

The state is the graph's ``random.state`` parameter (``graphcomp.random``), and ``stream`` a
number given to each random node when it is built: so the ops themselves know nothing of the
graph, and the registry tests feed the state as an ordinary input. None of them has a gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import DTypeError, ShapeError
from graphcomp.ir import DimTable, Node, shape_str
from graphcomp.ops import philox
from graphcomp.ops.registry import OpDef, Sample, register

STATE_DTYPE = np.dtype("int64")
MAX_SPAN = 1 << 32  # randint draws one 32-bit word per element
RANDOM_OPS = frozenset({"random_uniform", "random_normal", "random_randint"})


def _random_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (state,) = nodes
    if state.dtype != STATE_DTYPE:
        raise DTypeError(f"the generator state must be int64, got {state.dtype}")
    if tuple(dims.resolve_shape(state.shape)) != (2,):
        raise ShapeError(f"the generator state must have shape (2,), got "
                         f"{shape_str(dims.resolve_shape(state.shape))}")
    dtype = np.dtype(attrs["dtype"])
    want = "i" if attrs.get("high") is not None else "f"
    if dtype.kind != want or dtype.itemsize not in (4, 8):
        kinds = "int32 or int64" if want == "i" else "float32 or float64"
        raise DTypeError(f"dtype must be {kinds}, got {dtype}")
    if want == "i":
        _check_range(attrs["low"], attrs["high"], dtype)
    return tuple(dims.resolve_shape(attrs["shape"])), dtype


def _check_range(low: int, high: int, dtype: np.dtype) -> None:
    info = np.iinfo(dtype)
    if not low < high:
        raise ShapeError(f"randint needs low < high, got low={low}, high={high}")
    if high - low > MAX_SPAN:
        raise ShapeError(f"randint draws from at most 2**32 values, got high - low = {high - low}")
    if low < info.min or high - 1 > info.max:
        raise DTypeError(f"randint's range [{low}, {high}) does not fit {dtype}")


def _words(state: np.ndarray, stream: int, blocks: int) -> tuple[np.ndarray, ...]:
    """The four words of blocks ``0 .. blocks-1`` of ``stream`` at ``state``, as uint64."""
    seed, call = (np.uint64(int(v) & 0xFFFF_FFFF_FFFF_FFFF) for v in state)
    block = np.arange(blocks, dtype=np.uint64)
    c1, c2, c3 = (np.full(blocks, v, np.uint64)
                  for v in (stream, call & philox.MASK32, call >> philox.SHIFT32))
    return philox.philox4x32_10(block, c1, c2, c3, seed & philox.MASK32, seed >> philox.SHIFT32)


def _uniform_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    n, dtype = int(np.prod(shape)), np.dtype(attrs["dtype"])
    if dtype == np.float32:
        words = np.stack(_words(xs[0], attrs["stream"], -(-n // 4)), axis=1).ravel()[:n]
        values = philox.uniform24(words)
    else:
        w0, w1, w2, w3 = _words(xs[0], attrs["stream"], -(-n // 2))
        values = np.stack([philox.uniform53(w0, w1), philox.uniform53(w2, w3)], 1).ravel()[:n]
    return values.astype(dtype).reshape(shape)


def _normal_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    n = int(np.prod(shape))
    w0, w1, w2, w3 = _words(xs[0], attrs["stream"], -(-n // 2))
    radius = np.sqrt(-2.0 * np.log(1.0 - philox.uniform53(w0, w1)))
    cos, sin = philox.sincos_turns(philox.uniform53(w2, w3))
    values = np.stack([radius * cos, radius * sin], axis=1).ravel()[:n]
    return values.astype(attrs["dtype"]).reshape(shape)


def _randint_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    n = int(np.prod(shape))
    words = np.stack(_words(xs[0], attrs["stream"], -(-n // 4)), axis=1).ravel()[:n]
    offsets = philox.bounded32(words, np.uint64(attrs["high"] - attrs["low"]))
    return (offsets.astype(np.int64) + attrs["low"]).astype(attrs["dtype"]).reshape(shape)


def _state_sample(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(-(2**62), 2**62, size=2, dtype=np.int64)


def _float_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [Sample((_state_sample(rng),), {"shape": shape, "dtype": dtype.name, "stream": s},
                   smooth=False)
            for shape, s in [((7,), 0), ((3, 5), 3), ((), 1), ((0, 4), 2)]]


def _randint_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    cases: list[tuple[Any, str, int, int]] = [
        ((9,), "int64", 0, 10), ((2, 3), "int32", -5, 5),
        ((5,), "int64", -(2**40), -(2**40) + 2**32),
    ]
    return [Sample((_state_sample(rng),), {"shape": shape, "dtype": dt, "stream": 7,
                                           "low": low, "high": high}, smooth=False)
            for shape, dt, low, high in cases]


for _name, _impl, _samples, _doc in [
    ("random_uniform", _uniform_impl, _float_samples, "uniform floats in [0, 1) (Philox4x32-10)"),
    ("random_normal", _normal_impl, _float_samples, "standard normals (Philox, Box-Muller)"),
    ("random_randint", _randint_impl, _randint_samples, "integers in [low, high) (Philox)"),
]:
    register(OpDef(name=_name, kind="random", infer=_random_rule, numpy_impl=_impl,
                   differentiable=False, samples=_samples, doc=_doc))
