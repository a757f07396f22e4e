"""Registry-generated tests: every primitive on the numpy backend against a direct numpy formula.

For each op in ``REGISTRY`` (sources aside) and each of its ``samples(rng, dtype)``, the graph is
built from placeholders (symbolic where the sample says, and fully static when the attrs name no
symbol), compiled with ``backend="numpy"`` and compared with the formula in ``EXPECTED`` below,
written here independently of the op's own ``numpy_impl``. Each op also has a bad input in
``BAD_INPUTS`` whose shape/dtype error must name the op and this file's line.

Adding an op to the registry makes ``test_every_op_has_a_formula_samples_and_a_bad_input`` fail
until it has an entry in ``EXPECTED`` and in ``BAD_INPUTS`` (or ``ACCEPTS_ANY_INPUT``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ir import dim_value
from graphcomp.ops import REGISTRY, Sample, apply
from graphcomp.ops.sources import SOURCE_OPS

FILE = os.path.basename(__file__)
DTYPES = [np.dtype("float32"), np.dtype("float64")]
TESTED_OPS = sorted(set(REGISTRY) - SOURCE_OPS)


# ---------------------------------------------------------------- the direct numpy formulas
# Each: (input arrays, attrs, sizes of the sample's symbols) -> expected output.


def _concrete(dims: Any, sizes: dict[str, int]) -> tuple:
    return tuple(dim_value(d, sizes) if isinstance(d, str) else d for d in dims)


def _slice_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    stops = _concrete(attrs["stops"], sizes)
    index = tuple(
        slice(a, b, c) for a, b, c in zip(attrs["starts"], stops, attrs["steps"], strict=True)
    )
    return xs[0][index]


def _pad_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    x = xs[0]
    lo, hi, interior = attrs["lo"], attrs["hi"], attrs["interior"]
    shape = [
        low + high + n + max(n - 1, 0) * gap
        for n, low, high, gap in zip(x.shape, lo, hi, interior, strict=True)
    ]
    out = np.full(shape, attrs["value"], dtype=x.dtype)
    for index in np.ndindex(*x.shape):
        target = tuple(low + i * (gap + 1) for i, low, gap in zip(index, lo, interior, strict=True))
        out[target] = x[index]
    return out


def _scatter_add_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    base, indices, updates = xs
    out = base.copy()
    axis = attrs["axis"]
    for position in np.ndindex(*indices.shape):
        lead = (slice(None),) * axis
        out[(*lead, indices[position])] += updates[(*lead, *position)]
    return out


def _summed_rows(table: np.ndarray, ids: np.ndarray, rows: np.ndarray | None) -> dict:
    """Row number -> the rows of its ids added in order (zeros when ``rows`` is None)."""
    sums: dict = {}
    flat_rows = None if rows is None else rows.reshape((ids.size,) + table.shape[1:])
    for position, k in enumerate(ids.ravel()):
        k = int(k) % table.shape[0]
        start = sums.get(k, np.zeros(table.shape[1:], table.dtype))
        sums[k] = start if flat_rows is None else start + flat_rows[position]
    return sums


def _sparse_update_expected(xs: list, attrs: dict, sizes: dict, op: str) -> np.ndarray:
    table = xs[0]
    out = table.copy()
    rows = None if op == "sparse_adam_step" else xs[2]
    for r, g in _summed_rows(table, xs[3] if rows is None else xs[1], rows).items():
        if op == "sparse_sgd":
            out[r] = table[r] - xs[3] * g
        elif op == "sparse_moment":
            beta = table.dtype.type(attrs["beta"])
            out[r] = beta * table[r] + table.dtype.type(1 - attrs["beta"]) * g ** attrs["power"]
        else:
            m, v, lr, c1, c2 = xs[1][r], xs[2][r], xs[4], xs[5], xs[6]
            out[r] = table[r] - lr * (m / c1) / (np.sqrt(v / c2) + table.dtype.type(attrs["eps"]))
    return out


def _take_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    x, indices = xs
    return x[(slice(None),) * attrs["axis"] + (indices,)]


def _along_lines(x: np.ndarray, axis: int, line: Callable[[np.ndarray], Any],
                 dtype: Any = None) -> np.ndarray:
    """``line`` applied to every 1-D line of ``x`` along ``axis`` (empty inputs included)."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape, dtype=dtype or x.dtype)
    for index in np.ndindex(*moved.shape[:-1]):
        out[index] = line(moved[index])
    return np.moveaxis(out, -1, axis)


def _running(x: np.ndarray, attrs: dict, combine: Callable[[Any, Any], Any]) -> np.ndarray:
    def line(v: np.ndarray) -> np.ndarray:
        order = list(range(len(v)))[::-1] if attrs["reverse"] else list(range(len(v)))
        out = np.empty_like(v)
        acc = v.dtype.type(1)
        for step, j in enumerate(order):
            if attrs.get("exclusive"):
                out[j] = acc
                acc = combine(acc, v[j])
            else:
                acc = v[j] if step == 0 else combine(acc, v[j])
                out[j] = acc
        return out

    return _along_lines(x, attrs["axis"], line)


def _permute_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    x, perm = (np.moveaxis(a, attrs["axis"], -1) for a in xs)
    out = np.empty_like(x)
    for index in np.ndindex(*x.shape[:-1]):
        out[index] = [x[index][k] for k in perm[index]]
    return np.moveaxis(out, -1, attrs["axis"])


def _maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a >= b, a, b)


def _minimum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a <= b, a, b)



def _in_float64(formula: Callable[..., np.ndarray]) -> Formula:
    """``formula`` evaluated in float64 (the reference for float32 too), in the inputs' dtype."""

    def expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.asarray(formula(*(x.astype("float64") for x in xs))).astype(xs[0].dtype)

    return expected


def _floor(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(x), x - np.mod(x, 1), x)


def _rint(x: np.ndarray) -> np.ndarray:
    down = _floor(x)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, not "up"; inf and NaN stay
        up_wins = (x - down > 0.5) | ((x - down == 0.5) & (np.mod(down, 2) == 1))
    return np.where(up_wins, down + 1, down).astype(x.dtype)


def _remainder(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r = np.fmod(a, b)
    return np.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)


def _fmax(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where((a >= b) | np.isnan(b), a, b)


def _fmin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where((a <= b) | np.isnan(b), a, b)


def _sinc(x: np.ndarray) -> np.ndarray:
    t = np.pi * np.where(x == 0, 1.0, x)
    return np.where(x == 0, 1.0, np.sin(t) / t)


# Convolution and pooling: direct loops over every output element and every tap, independent
# of the op's vectorised im2col reference. A tap outside the input is padding.


def _taps(start: int, count: int, dilation: int, size: int) -> list[tuple[int, int]]:
    """(tap, input index) of the taps of one window that fall inside an axis of ``size``."""
    return [(t, start + t * dilation) for t in range(count)
            if 0 <= start + t * dilation < size]


def _out_len(size: int, low: int, high: int, count: int, stride: int, dilation: int) -> int:
    n = 0
    while n * stride + (count - 1) * dilation < low + size + high:  # last tap inside padding
        n += 1
    return n


def _conv_geometry(attrs: dict) -> tuple:
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], \
        attrs["dilation"]
    return sh, sw, pt, pb, pl, pr, dh, dw, attrs["groups"]


def _conv_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    x, w = xs
    sh, sw, pt, pb, pl, pr, dh, dw, groups = _conv_geometry(attrs)
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out = np.zeros((n, o, _out_len(h, pt, pb, kh, sh, dh), _out_len(wd, pl, pr, kw, sw, dw)),
                   x.dtype)
    for b, oc, oh, ow in np.ndindex(*out.shape):
        first = (oc // (o // groups)) * cg
        for ci in range(cg):
            for i, ih in _taps(oh * sh - pt, kh, dh, h):
                for j, iw in _taps(ow * sw - pl, kw, dw, wd):
                    out[b, oc, oh, ow] += x[b, first + ci, ih, iw] * w[oc, ci, i, j]
    return out


def _conv_input_grad_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    """dx[b, c, ih, iw]: every output element whose window read x[b, c, ih, iw]."""
    g, w = xs
    sh, sw, pt, _, pl, _, dh, dw, groups = _conv_geometry(attrs)
    o, cg, kh, kw = w.shape
    h, wd = attrs["input_hw"]
    out = np.zeros((g.shape[0], cg * groups, h, wd), g.dtype)
    for b, c, ih, iw in np.ndindex(*out.shape):
        group, ci = divmod(c, cg)
        for oc in range(group * (o // groups), (group + 1) * (o // groups)):
            for i, j in np.ndindex(kh, kw):
                oh, row_left = divmod(ih + pt - i * dh, sh)
                ow, col_left = divmod(iw + pl - j * dw, sw)
                if (row_left == col_left == 0 and 0 <= oh < g.shape[2]
                        and 0 <= ow < g.shape[3]):
                    out[b, c, ih, iw] += g[b, oc, oh, ow] * w[oc, ci, i, j]
    return out


def _conv_filter_grad_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    x, g = xs
    sh, sw, pt, _, pl, _, dh, dw, groups = _conv_geometry(attrs)
    kh, kw = attrs["kernel_hw"]
    o, cg = g.shape[1], x.shape[1] // groups
    out = np.zeros((o, cg, kh, kw), x.dtype)
    for oc, ci, i, j in np.ndindex(*out.shape):
        c = (oc // (o // groups)) * cg + ci
        for b, oh, ow in np.ndindex(g.shape[0], *g.shape[2:]):
            ih, iw = oh * sh - pt + i * dh, ow * sw - pl + j * dw
            if 0 <= ih < x.shape[2] and 0 <= iw < x.shape[3]:
                out[oc, ci, i, j] += g[b, oc, oh, ow] * x[b, c, ih, iw]
    return out


def _pool_windows(hw: tuple, attrs: dict) -> dict:
    """{(oh, ow): [(ih, iw) inside the input]} for every window of a pooling."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = attrs["kernel"], attrs["stride"], \
        attrs["padding"]
    shape = (_out_len(hw[0], pt, pb, kh, sh, 1), _out_len(hw[1], pl, pr, kw, sw, 1))
    return {(oh, ow): [(ih, iw) for _, ih in _taps(oh * sh - pt, kh, 1, hw[0])
                       for _, iw in _taps(ow * sw - pl, kw, 1, hw[1])]
            for oh, ow in np.ndindex(*shape)}


def _pool_expected(xs: list, attrs: dict, reduce: Callable[[list], Any]) -> np.ndarray:
    x = xs[0]
    windows = _pool_windows(x.shape[2:], attrs)
    oh, ow = max(windows)
    out = np.zeros((*x.shape[:2], oh + 1, ow + 1), x.dtype)
    for b, c in np.ndindex(*x.shape[:2]):
        for (i, j), taps in windows.items():
            out[b, c, i, j] = reduce([x[b, c, ih, iw] for ih, iw in taps])
    return out


def _max_pool_grad_expected(xs: list, attrs: dict, gather: bool) -> np.ndarray:
    """Each window's gradient split over its tied maxima (gather: the mean of v there)."""
    x, other = xs
    windows = _pool_windows(x.shape[2:], attrs)
    oh, ow = max(windows)
    out = np.zeros((*x.shape[:2], oh + 1, ow + 1) if gather else x.shape, x.dtype)
    for b, c in np.ndindex(*x.shape[:2]):
        for (i, j), taps in windows.items():
            top = max(x[b, c, ih, iw] for ih, iw in taps)
            winners = [(ih, iw) for ih, iw in taps if x[b, c, ih, iw] == top]
            for ih, iw in winners:
                if gather:
                    out[b, c, i, j] += other[b, c, ih, iw] / len(winners)
                else:
                    out[b, c, ih, iw] += other[b, c, i, j] / len(winners)
    return out


def _avg_pool_grad_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    (g,) = xs
    kh, kw = attrs["kernel"]
    out = np.zeros((*g.shape[:2], *attrs["input_hw"]), g.dtype)
    for b, c in np.ndindex(*g.shape[:2]):
        for (i, j), taps in _pool_windows(attrs["input_hw"], attrs).items():
            for ih, iw in taps:
                out[b, c, ih, iw] += g[b, c, i, j] / (kh * kw)
    return out


Formula = Callable[[list, dict, dict], np.ndarray]
def _philox_words(state: np.ndarray, stream: int, block: int) -> list[int]:
    """Philox4x32-10 in Python ints, one block, written from the paper's definition."""
    mask = 0xFFFFFFFF
    seed, call = (int(v) % 2**64 for v in state)
    c = [block, stream, call & mask, call >> 32]
    k = [seed & mask, seed >> 32]
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & mask, (p0 >> 32) ^ c[3] ^ k[1], p0 & mask]
        k = [(k[0] + 0x9E3779B9) & mask, (k[1] + 0xBB67AE85) & mask]
    return c


def _random_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    shape = _concrete(attrs["shape"], sizes)
    n, dtype = int(np.prod(shape)), np.dtype(attrs["dtype"])
    per_value = 1 if dtype == np.float32 or "low" in attrs else 2
    words = [w for b in range(-(-n * per_value // 4))
             for w in _philox_words(xs[0], attrs["stream"], b)]
    if "low" in attrs:
        values = [attrs["low"] + (w * (attrs["high"] - attrs["low"]) >> 32) for w in words]
    elif dtype == np.float32:
        values = [(w >> 8) / 2**24 for w in words]
    else:
        pairs = zip(words[::2], words[1::2], strict=True)
        values = [((a >> 5) * 2**26 + (b >> 6)) / 2**53 for a, b in pairs]
    return np.array(values[:n], dtype=dtype).reshape(shape)


def _normal_expected(xs: list, attrs: dict, sizes: dict) -> np.ndarray:
    shape = _concrete(attrs["shape"], sizes)
    n = int(np.prod(shape))
    values = []
    for b in range(-(-n // 2)):
        w = _philox_words(xs[0], attrs["stream"], b)
        u1 = 1.0 - ((w[0] >> 5) * 2**26 + (w[1] >> 6)) / 2**53
        u2 = ((w[2] >> 5) * 2**26 + (w[3] >> 6)) / 2**53
        radius = np.sqrt(-2.0 * np.log(u1))
        values += [radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)]
    return np.array(values[:n]).astype(attrs["dtype"]).reshape(shape)


EXPECTED: dict[str, Formula] = {
    "sparse_sgd": lambda xs, attrs, sizes: _sparse_update_expected(xs, attrs, sizes, "sparse_sgd"),
    "sparse_moment": lambda xs, attrs, sizes: _sparse_update_expected(xs, attrs, sizes,
                                                                      "sparse_moment"),
    "sparse_adam_step": lambda xs, attrs, sizes: _sparse_update_expected(xs, attrs, sizes,
                                                                         "sparse_adam_step"),
    "random_uniform": _random_expected,
    "random_randint": _random_expected,
    "random_normal": _normal_expected,
    "negative": lambda xs, attrs, sizes: 0 - xs[0],
    "exp": lambda xs, attrs, sizes: np.e ** xs[0],
    "log": lambda xs, attrs, sizes: np.log(xs[0]),
    "log1p": lambda xs, attrs, sizes: np.log1p(xs[0]),
    "expm1": lambda xs, attrs, sizes: np.expm1(xs[0]),
    "sqrt": lambda xs, attrs, sizes: xs[0] ** 0.5,
    "abs": lambda xs, attrs, sizes: np.where(xs[0] < 0, -xs[0], xs[0]),
    "sign": lambda xs, attrs, sizes: (xs[0] > 0).astype(xs[0].dtype) - (xs[0] < 0),
    "sin": lambda xs, attrs, sizes: np.sin(xs[0]),
    "cos": lambda xs, attrs, sizes: np.cos(xs[0]),
    "tanh": lambda xs, attrs, sizes: np.tanh(xs[0]),
    "sigmoid": lambda xs, attrs, sizes: 1 / (1 + np.exp(-xs[0])),
    "add": lambda xs, attrs, sizes: xs[0] + xs[1],
    "subtract": lambda xs, attrs, sizes: xs[0] - xs[1],
    "multiply": lambda xs, attrs, sizes: xs[0] * xs[1],
    "divide": lambda xs, attrs, sizes: xs[0] / xs[1],
    "power": lambda xs, attrs, sizes: xs[0] ** xs[1],
    "maximum": lambda xs, attrs, sizes: _maximum(xs[0], xs[1]),
    "minimum": lambda xs, attrs, sizes: _minimum(xs[0], xs[1]),
    "less": lambda xs, attrs, sizes: xs[0] < xs[1],
    "less_equal": lambda xs, attrs, sizes: xs[0] <= xs[1],
    "greater": lambda xs, attrs, sizes: xs[0] > xs[1],
    "greater_equal": lambda xs, attrs, sizes: xs[0] >= xs[1],
    "equal": lambda xs, attrs, sizes: xs[0] == xs[1],
    "not_equal": lambda xs, attrs, sizes: xs[0] != xs[1],
    "where": lambda xs, attrs, sizes: np.choose(xs[0].astype(int), [xs[2], xs[1]]),
    "cast": lambda xs, attrs, sizes: np.array(xs[0], dtype=attrs["dtype"]),
    "stop_gradient": lambda xs, attrs, sizes: xs[0].copy(),
    "take": _take_expected,
    "check_index": lambda xs, attrs, sizes: xs[0].copy(),  # in range: test_index_checks.py
    "scatter_add": _scatter_add_expected,
    "matmul": lambda xs, attrs, sizes: np.einsum("...ij,...jk->...ik", xs[0], xs[1]),
    "reduce_sum": lambda xs, attrs, sizes: np.add.reduce(
        xs[0], axis=tuple(attrs["axes"]), keepdims=attrs["keepdims"]
    ),
    "reduce_prod": lambda xs, attrs, sizes: np.multiply.reduce(
        xs[0], axis=tuple(attrs["axes"]), keepdims=attrs["keepdims"]
    ),
    "cumsum": lambda xs, attrs, sizes: _running(xs[0], attrs, lambda a, b: a + b),
    "cumprod": lambda xs, attrs, sizes: _running(xs[0], attrs, lambda a, b: a * b),
    "sort": lambda xs, attrs, sizes: _along_lines(xs[0], attrs["axis"], sorted),
    "argsort": lambda xs, attrs, sizes: _along_lines(
        xs[0], attrs["axis"], lambda v: sorted(range(len(v)), key=lambda i: v[i]), "int64"
    ),
    "permute": _permute_expected,
    "reduce_max": lambda xs, attrs, sizes: np.maximum.reduce(
        xs[0], axis=tuple(attrs["axes"]), keepdims=attrs["keepdims"]
    ),
    "argmax": lambda xs, attrs, sizes: np.argmax(
        xs[0], axis=attrs["axis"], keepdims=attrs["keepdims"]
    ),
    "dim_size": lambda xs, attrs, sizes: np.array(
        np.prod([xs[0].shape[a] for a in attrs["axes"]]), dtype=attrs["dtype"]
    ),
    "reshape": lambda xs, attrs, sizes: xs[0].reshape(_concrete(attrs["shape"], sizes)),
    "transpose": lambda xs, attrs, sizes: np.moveaxis(
        xs[0], list(attrs["perm"]), list(range(xs[0].ndim))
    ),
    "broadcast_to": lambda xs, attrs, sizes: xs[0] + np.zeros(attrs["shape"], xs[0].dtype),
    "slice": _slice_expected,
    "pad": _pad_expected,
    "concatenate": lambda xs, attrs, sizes: np.concatenate(xs, axis=attrs["axis"]),
    "floor": lambda xs, attrs, sizes: _floor(xs[0]),
    "ceil": lambda xs, attrs, sizes: -_floor(-xs[0]),
    "trunc": lambda xs, attrs, sizes: np.where(xs[0] < 0, -_floor(-xs[0]), _floor(xs[0])),
    "rint": lambda xs, attrs, sizes: _rint(xs[0]),
    "arcsin": _in_float64(lambda x: np.arctan2(x, np.sqrt(1 - x * x))),
    "arccos": _in_float64(lambda x: np.arctan2(np.sqrt(1 - x * x), x)),
    "arctan": _in_float64(lambda x: np.angle(1 + 1j * x)),
    "arcsinh": _in_float64(lambda x: np.sign(x) * np.log(np.abs(x) + np.sqrt(x * x + 1))),
    "arccosh": _in_float64(lambda x: np.log(x + np.sqrt(x * x - 1))),
    "arctanh": _in_float64(lambda x: 0.5 * np.log((1 + x) / (1 - x))),
    "sinc": _in_float64(_sinc),
    "erf": _in_float64(np.vectorize(math.erf, otypes=[np.float64])),
    "isnan": lambda xs, attrs, sizes: xs[0] != xs[0],
    "isinf": lambda xs, attrs, sizes: np.abs(xs[0]) == np.inf,
    "isfinite": lambda xs, attrs, sizes: np.abs(xs[0]) < np.inf,
    "remainder": lambda xs, attrs, sizes: _remainder(xs[0], xs[1]),
    "fmax": lambda xs, attrs, sizes: _fmax(xs[0], xs[1]),
    "fmin": lambda xs, attrs, sizes: _fmin(xs[0], xs[1]),
    "arctan2": _in_float64(lambda y, x: np.angle(x + 1j * y)),
    "hypot": _in_float64(lambda a, b: np.abs(a + 1j * b)),
    "conv2d": _conv_expected,
    "conv2d_input_grad": _conv_input_grad_expected,
    "conv2d_filter_grad": _conv_filter_grad_expected,
    "max_pool2d": lambda xs, attrs, sizes: _pool_expected(xs, attrs, max),
    "max_pool2d_grad": lambda xs, attrs, sizes: _max_pool_grad_expected(xs, attrs, False),
    "max_pool2d_gather": lambda xs, attrs, sizes: _max_pool_grad_expected(xs, attrs, True),
    "avg_pool2d": lambda xs, attrs, sizes: _pool_expected(
        xs, attrs, lambda v: sum(v) / (attrs["kernel"][0] * attrs["kernel"][1])
    ),
    "avg_pool2d_grad": _avg_pool_grad_expected,
}


# ---------------------------------------------------------------- bad inputs, one per op
# Each builder must raise on its own (single) line: the error has to name that line.


def ph(shape: tuple, dtype: str = "float64") -> gc.Tensor:
    return gc.placeholder(shape, dtype)


CONV = {"stride": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "groups": 1}
CONV_HW = {**CONV, "input_hw": (5, 5)}
CONV_K = {**CONV, "kernel_hw": (3, 3)}
POOL = {"kernel": (2, 2), "stride": (2, 2), "padding": ((0, 0), (0, 0))}

BAD_INPUTS: dict[str, tuple[type, Callable[[], Any]]] = {
    "sparse_sgd": (gc.ShapeError, lambda: apply("sparse_sgd", ph((5, 3)), ph((4,), "int64"),
                                                ph((4, 2)), ph(()))),
    "sparse_moment": (gc.DTypeError, lambda: apply("sparse_moment", ph((5, 3)), ph((4,)),
                                                   ph((4, 3)), beta=0.9, power=1)),
    "sparse_adam_step": (gc.ShapeError, lambda: apply("sparse_adam_step", ph((5, 3)), ph((5, 3)),
                                                      ph((5, 2)), ph((4,), "int64"), ph(()),
                                                      ph(()), ph(()), eps=1e-8)),
    "random_uniform": (gc.DTypeError, lambda: apply("random_uniform", ph((2,)), shape=(3,),
                                                    dtype="float32", stream=0)),
    "random_normal": (gc.ShapeError, lambda: apply("random_normal", ph((3,), "int64"),
                                                   shape=(3,), dtype="float64", stream=0)),
    "random_randint": (gc.ShapeError, lambda: apply("random_randint", ph((2,), "int64"),
                                                    shape=(3,), dtype="int64", stream=0,
                                                    low=4, high=4)),
    "negative": (gc.DTypeError, lambda: apply("negative", ph((3,), "bool"))),
    "exp": (gc.DTypeError, lambda: apply("exp", ph((3,), "int64"))),
    "log": (gc.DTypeError, lambda: apply("log", ph((3,), "int32"))),
    "log1p": (gc.DTypeError, lambda: apply("log1p", ph((3,), "bool"))),
    "expm1": (gc.DTypeError, lambda: apply("expm1", ph((3,), "int64"))),
    "sqrt": (gc.DTypeError, lambda: apply("sqrt", ph((3,), "int64"))),
    "abs": (gc.DTypeError, lambda: apply("abs", ph((3,), "bool"))),
    "sign": (gc.DTypeError, lambda: apply("sign", ph((3,), "bool"))),
    "sin": (gc.DTypeError, lambda: apply("sin", ph((3,), "int64"))),
    "cos": (gc.DTypeError, lambda: apply("cos", ph((3,), "int64"))),
    "tanh": (gc.DTypeError, lambda: apply("tanh", ph((3,), "int64"))),
    "sigmoid": (gc.DTypeError, lambda: apply("sigmoid", ph((3,), "int64"))),
    "add": (gc.ShapeError, lambda: apply("add", ph((3, 4)), ph((5,)))),
    "subtract": (gc.ShapeError, lambda: apply("subtract", ph((2, 3)), ph((3, 2)))),
    "multiply": (gc.DTypeError, lambda: apply("multiply", ph((3,)), ph((3,), "float32"))),
    "divide": (gc.DTypeError, lambda: apply("divide", ph((3,), "int64"), ph((3,), "int64"))),
    "power": (gc.ShapeError, lambda: apply("power", ph((4,)), ph((5,)))),
    "maximum": (gc.ShapeError, lambda: apply("maximum", ph((2, 4)), ph((3, 4)))),
    "minimum": (gc.ShapeError, lambda: apply("minimum", ph((2, 4)), ph((2, 3)))),
    "less": (gc.ShapeError, lambda: apply("less", ph((3,)), ph((4,)))),
    "less_equal": (gc.ShapeError, lambda: apply("less_equal", ph((3,)), ph((4,)))),
    "greater": (gc.ShapeError, lambda: apply("greater", ph((3,)), ph((4,)))),
    "greater_equal": (gc.ShapeError, lambda: apply("greater_equal", ph((3,)), ph((4,)))),
    "equal": (gc.DTypeError, lambda: apply("equal", ph((3,)), ph((3,), "int64"))),
    "not_equal": (gc.ShapeError, lambda: apply("not_equal", ph((3,)), ph((4,)))),
    "where": (gc.ShapeError, lambda: apply("where", ph((3,), "bool"), ph((3, 4)), ph((3, 4)))),
    "cast": (gc.DTypeError, lambda: apply("cast", ph((3,)), dtype="float16")),
    "take": (gc.DTypeError, lambda: apply("take", ph((5, 3)), ph((2,)), axis=0)),
    "check_index": (gc.DTypeError, lambda: apply("check_index", ph((4,)), size=3)),
    "scatter_add": (
        gc.ShapeError,
        lambda: apply("scatter_add", ph((5, 3)), ph((4,), "int64"), ph((4, 2)), axis=0),
    ),
    "matmul": (gc.ShapeError, lambda: apply("matmul", ph((3, 4)), ph((5, 2)))),
    "reduce_sum": (
        gc.ShapeError,
        lambda: apply("reduce_sum", ph((3, 4)), axes=(2,), keepdims=False),
    ),
    "reduce_prod": (
        gc.ShapeError,
        lambda: apply("reduce_prod", ph((3, 4)), axes=(1, 0), keepdims=False),
    ),
    "cumsum": (gc.DTypeError, lambda: apply("cumsum", ph((3,), "bool"), axis=0, reverse=False)),
    "cumprod": (
        gc.ShapeError,
        lambda: apply("cumprod", ph((3, 4)), axis=2, reverse=False, exclusive=False),
    ),
    "sort": (gc.ShapeError, lambda: apply("sort", ph((3,)), axis=1)),
    "argsort": (gc.DTypeError, lambda: apply("argsort", ph((3,), "bool"), axis=0)),
    "permute": (gc.ShapeError, lambda: apply("permute", ph((3, 4)), ph((3, 5), "int64"), axis=1)),
    "reduce_max": (
        gc.DTypeError,
        lambda: apply("reduce_max", ph((3,), "bool"), axes=(0,), keepdims=False),
    ),
    "argmax": (gc.ShapeError, lambda: apply("argmax", ph((3, 4)), axis=2, keepdims=False)),
    "dim_size": (gc.ShapeError, lambda: apply("dim_size", ph((3,)), axes=(1,), dtype="float64")),
    "reshape": (gc.ShapeError, lambda: apply("reshape", ph((3, 4)), shape=(5, 2))),
    "transpose": (gc.ShapeError, lambda: apply("transpose", ph((3, 4)), perm=(0, 0))),
    "broadcast_to": (gc.ShapeError, lambda: apply("broadcast_to", ph((3,)), shape=(2, 4))),
    "slice": (gc.ShapeError, lambda: apply("slice", ph((4,)), starts=(1,), stops=(6,), steps=(1,))),
    "pad": (
        gc.ShapeError,
        lambda: apply("pad", ph((4,)), lo=(-1,), hi=(0,), interior=(0,), value=0.0),
    ),
    "concatenate": (gc.ShapeError, lambda: apply("concatenate", ph((3, 4)), ph((2, 5)), axis=0)),
    "floor": (gc.DTypeError, lambda: apply("floor", ph((3,), "int64"))),
    "ceil": (gc.DTypeError, lambda: apply("ceil", ph((3,), "bool"))),
    "trunc": (gc.DTypeError, lambda: apply("trunc", ph((3,), "int32"))),
    "rint": (gc.DTypeError, lambda: apply("rint", ph((3,), "int64"))),
    "arcsin": (gc.DTypeError, lambda: apply("arcsin", ph((3,), "int64"))),
    "arccos": (gc.DTypeError, lambda: apply("arccos", ph((3,), "int32"))),
    "arctan": (gc.DTypeError, lambda: apply("arctan", ph((3,), "bool"))),
    "arcsinh": (gc.DTypeError, lambda: apply("arcsinh", ph((3,), "int64"))),
    "arccosh": (gc.DTypeError, lambda: apply("arccosh", ph((3,), "int64"))),
    "arctanh": (gc.DTypeError, lambda: apply("arctanh", ph((3,), "int64"))),
    "sinc": (gc.DTypeError, lambda: apply("sinc", ph((3,), "int64"))),
    "erf": (gc.DTypeError, lambda: apply("erf", ph((3,), "int32"))),
    "isnan": (gc.DTypeError, lambda: apply("isnan", ph((3,), "int64"))),
    "isinf": (gc.DTypeError, lambda: apply("isinf", ph((3,), "bool"))),
    "isfinite": (gc.DTypeError, lambda: apply("isfinite", ph((3,), "int32"))),
    "remainder": (gc.DTypeError, lambda: apply("remainder", ph((3,), "bool"), ph((3,), "bool"))),
    "fmax": (gc.ShapeError, lambda: apply("fmax", ph((2, 4)), ph((3, 4)))),
    "fmin": (gc.DTypeError, lambda: apply("fmin", ph((3,)), ph((3,), "float32"))),
    "arctan2": (gc.DTypeError, lambda: apply("arctan2", ph((3,), "int64"), ph((3,), "int64"))),
    "hypot": (gc.ShapeError, lambda: apply("hypot", ph((3,)), ph((4,)))),
    "conv2d": (gc.ShapeError, lambda: apply("conv2d", ph((2, 3, 5, 5)), ph((4, 2, 3, 3)), **CONV)),
    "conv2d_input_grad": (
        gc.ShapeError,
        lambda: apply("conv2d_input_grad", ph((2, 4, 2, 3)), ph((4, 3, 3, 3)), **CONV_HW),
    ),
    "conv2d_filter_grad": (
        gc.ShapeError,
        lambda: apply("conv2d_filter_grad", ph((2, 3, 5)), ph((2, 4, 3, 3)), **CONV_K),
    ),
    "max_pool2d": (gc.ShapeError, lambda: apply("max_pool2d", ph((2, 3, 1, 5)), **POOL)),
    "max_pool2d_grad": (
        gc.ShapeError,
        lambda: apply("max_pool2d_grad", ph((2, 3, 4, 4)), ph((2, 3, 3, 2)), **POOL),
    ),
    "max_pool2d_gather": (
        gc.DTypeError,
        lambda: apply("max_pool2d_gather", ph((2, 3, 4, 4)), ph((2, 3, 4, 4), "int64"), **POOL),
    ),
    "avg_pool2d": (gc.DTypeError, lambda: apply("avg_pool2d", ph((2, 3, 4, 4), "int64"), **POOL)),
    "avg_pool2d_grad": (
        gc.ShapeError,
        lambda: apply("avg_pool2d_grad", ph((2, 3, 2, 2)), **POOL, input_hw=(6, 5)),
    ),
}

# Ops whose operands are integers whatever the float dtype tested (with the reason).
INTEGER_ONLY: dict[str, str] = {
    "check_index": "checks integer class labels",
    "random_uniform": "reads the int64 generator state",
    "random_normal": "reads the int64 generator state",
    "random_randint": "reads the int64 generator state",
}

# Ops whose rule accepts every shape and dtype, so no bad input exists (with the reason).
ACCEPTS_ANY_INPUT: dict[str, str] = {"stop_gradient": "identity on any shape and dtype"}


# ---------------------------------------------------------------- helpers


def _symbols(sample: Sample) -> set[str]:
    return {name for per_input in sample.symbolic for name in per_input.values()}


def _mentions(value: Any, symbols: set[str]) -> bool:
    if isinstance(value, str):  # a symbol, or a product of symbols such as "N*3"
        return bool(set(value.split("*")) & symbols)
    if isinstance(value, (tuple, list)):
        return any(_mentions(v, symbols) for v in value)
    return False


def _declared_shape(array: np.ndarray, symbolic: dict[int, str] | None) -> tuple:
    return tuple((symbolic or {}).get(axis, n) for axis, n in enumerate(array.shape))


def _run_sample(op_name: str, sample: Sample, symbolic: bool) -> None:
    sizes: dict[str, int] = {}
    symbolic_axes: list[dict[int, str]] = []
    with gc.Graph(name=f"{op_name}_sample") as graph:
        placeholders = []
        for i, array in enumerate(sample.args):
            per_input = sample.symbolic[i] if symbolic and i < len(sample.symbolic) else {}
            symbolic_axes.append(per_input)
            for axis, symbol in per_input.items():
                assert sizes.setdefault(symbol, array.shape[axis]) == array.shape[axis]
            placeholders.append(
                gc.placeholder(_declared_shape(array, per_input), array.dtype, name=f"in{i}")
            )
        out = apply(op_name, *placeholders, **sample.attrs)
    f = gc.compile(placeholders, out, backend="numpy")
    _check_call(f, out, graph, op_name, list(sample.args), sample.attrs, sizes)
    if sizes:
        # The same function with every symbol bound to twice the size: each input is repeated
        # along its symbolic axes (indices stay valid, equal symbols stay equal).
        doubled = []
        for array, per_input in zip(sample.args, symbolic_axes, strict=True):
            for axis in per_input:
                array = np.concatenate([array, array], axis=axis)
            doubled.append(array)
        twice = {symbol: 2 * size for symbol, size in sizes.items()}
        _check_call(f, out, graph, op_name, doubled, sample.attrs, twice)
        # And bound to 1 and to 0: each input cut to its first 0 or 1 entries along them.
        for size in (1, 0):
            cut = [_cut(array, per_input, size)
                   for array, per_input in zip(sample.args, symbolic_axes, strict=True)]
            _check_call(f, out, graph, op_name, cut, sample.attrs, dict.fromkeys(sizes, size))


def _cut(array: np.ndarray, symbolic_axes: dict[int, str], size: int) -> np.ndarray:
    return array[tuple(slice(0, size) if a in symbolic_axes else slice(None)
                       for a in range(array.ndim))]


def _check_call(
    f: gc.Function,
    out: gc.Tensor,
    graph: gc.Graph,
    op_name: str,
    args: list[np.ndarray],
    attrs: dict,
    sizes: dict[str, int],
) -> None:
    try:
        expected = np.asarray(EXPECTED[op_name]([a.copy() for a in args], attrs, sizes))
    except ValueError as exc:  # numpy refuses: a max over nothing (no identity)
        assert "empty" in str(exc) or "identity" in str(exc), exc
        with pytest.raises(gc.InputError, match="an empty axis has no"):
            f(*args)
        return
    result = f(*args)
    bound = {graph.dims.resolve(symbol): size for symbol, size in sizes.items()}
    rule_shape = tuple(dim_value(d, bound) if isinstance(d, str) else d for d in out.shape)
    assert result.shape == rule_shape == expected.shape, (op_name, attrs, sizes)
    assert result.dtype == out.dtype == expected.dtype, (op_name, attrs)
    if result.dtype.kind == "f":
        tight = result.dtype == np.dtype("float64")
        rtol, atol = (1e-12, 1e-12) if tight else (2e-6, 2e-6)
        np.testing.assert_allclose(result, expected, rtol=rtol, atol=atol, err_msg=op_name)
    else:
        np.testing.assert_array_equal(result, expected, err_msg=op_name)


# ---------------------------------------------------------------- the tests


def test_every_op_has_a_formula_samples_and_a_bad_input():
    rng = np.random.default_rng(0)
    assert set(EXPECTED) == set(TESTED_OPS), "EXPECTED must cover exactly the registry's ops"
    assert set(BAD_INPUTS) | set(ACCEPTS_ANY_INPUT) == set(TESTED_OPS)
    assert not set(BAD_INPUTS) & set(ACCEPTS_ANY_INPUT)
    for name in TESTED_OPS:
        op = REGISTRY[name]
        assert op.samples is not None, f"op {name!r} has no samples"
        for dtype in DTYPES:
            assert op.samples(rng, dtype), f"op {name!r} gives no samples for {dtype}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op_name", TESTED_OPS)
def test_op_matches_direct_numpy(op_name: str, dtype: np.dtype):
    if REGISTRY[op_name].samples is None:
        pytest.fail(f"op {op_name!r} has no samples")
    rng = np.random.default_rng(sorted(REGISTRY).index(op_name))
    samples = REGISTRY[op_name].samples(rng, dtype)
    for sample in samples:
        if any(sample.symbolic):
            _run_sample(op_name, sample, symbolic=True)
        if not _mentions(tuple(sample.attrs.values()), _symbols(sample)):
            _run_sample(op_name, sample, symbolic=False)
    # The samples must really exercise the requested dtype (ops of integer indices alone aside).
    if op_name not in INTEGER_ONLY:
        assert any(a.dtype == dtype for s in samples for a in s.args), op_name


@pytest.mark.parametrize("op_name", sorted(BAD_INPUTS))
def test_bad_input_names_op_and_line(op_name: str):
    error, build = BAD_INPUTS[op_name]
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert f"{op_name}(" in message
    assert f"{FILE}:{build.__code__.co_firstlineno}" in message, message
    assert isinstance(info.value, gc.GraphcompError)


# ---------------------------------------------------------------- shape rules: broadcasting


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((3, 4), (4,), (3, 4)),
        ((3, 1, 4), (2, 1), (3, 2, 4)),
        ((), (2, 3), (2, 3)),
        ((1,), (5,), (5,)),
        ((2, 1), (1, 3), (2, 3)),
        (("N", 1), (1, 4), ("N", 4)),
        (("N",), (1,), ("N",)),
        ((1, 3), ("N", 1), ("N", 3)),
        (("N", 3), (), ("N", 3)),
    ],
)
def test_broadcast_shape_rule(a: tuple, b: tuple, expected: tuple):
    x, y = ph(a), ph(b)
    for op in ("add", "multiply", "maximum", "less"):
        assert apply(op, x, y).shape == expected
    assert gc.where(x > 0, x, y).shape == expected


def test_broadcast_ties_two_symbols_and_checks_them_at_call_time():
    x, y = ph(("N", 3)), ph(("M", 3))
    z = x + y
    assert z.shape == x.shape == y.shape  # N and M are now one class
    f = gc.compile([x, y], z, backend="numpy")
    assert f(np.ones((2, 3)), np.ones((2, 3))).shape == (2, 3)
    with pytest.raises(gc.InputError, match="bound by"):
        f(np.ones((2, 3)), np.ones((4, 3)))


def test_broadcast_fixes_a_symbol_to_a_size():
    x = ph(("N", 3))
    z = x + ph((5, 3))
    assert z.shape == (5, 3) and x.shape == (5, 3)
    with pytest.raises(gc.ShapeError, match=r"add\("):
        x + ph((6, 3))


def test_symbol_never_broadcasts_against_another_size():
    # A symbolic dim is not assumed to be 1: N against 4 ties N = 4 rather than broadcasting.
    x = ph(("N",))
    assert (x + ph((4,))).shape == (4,)


@pytest.mark.parametrize(
    ("a", "b"),
    [((3, 4), (5,)), ((2, 3), (3, 2)), ((2, 1, 4), (3, 5))],
)
def test_broadcast_mismatch_is_a_shape_error(a: tuple, b: tuple):
    x, y = ph(a), ph(b)
    with pytest.raises(gc.ShapeError) as info:
        x + y
    message = str(info.value)
    assert "add(" in message and f"{FILE}:" in message


def test_failed_op_leaves_symbols_untouched():
    # (N,3) + (3,4): axis 0 would tie N = 3 before axis 1 fails; the failure must not stick.
    x = ph(("N", 3))
    with pytest.raises(gc.ShapeError):
        x + ph((3, 4))
    assert x.shape == ("N", 3)
    f = gc.compile([x], x * 2.0, backend="numpy")
    assert f(np.ones((7, 3))).shape == (7, 3)


def test_matmul_shape_rule_with_symbols_and_batches():
    x, w = ph(("N", 4)), ph((4, 5))
    assert apply("matmul", x, w).shape == ("N", 5)
    a, b = ph((2, 1, 3, 4)), ph((6, 4, 5))
    assert apply("matmul", a, b).shape == (2, 6, 3, 5)
    k = ph(("K", 5))
    assert apply("matmul", ph((3, "K")), k).shape == (3, 5)
    with pytest.raises(gc.ShapeError, match="inner dimensions differ"):
        apply("matmul", ph((3, 4)), ph((3, 4)))
