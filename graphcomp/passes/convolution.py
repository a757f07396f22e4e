"""Convolutions as im2col + one matrix product, where the reduction is long enough to pay.

``conv2d``, ``conv2d_input_grad`` and ``conv2d_filter_grad`` (groups 1) whose reduction
``C_in * kh * kw`` reaches a threshold (or whose output rows are short) are rewritten into
ops the backend already runs well, plus two backend ops, ``im2col`` and ``col2im``. With
``P = OH * OW`` output positions per image and ``K = C_in * kh * kw``:

* ``conv2d(x, w)``: ``cols = im2col(x)`` ``[K, N*P]``, ``cols.T @ reshape(w, (O, K)).T``
  ``[N*P, O]``, reshaped to ``[N, OH, OW, O]`` and transposed to NCHW (an index map the
  consumer's kernel reads: a bias add and relu after a conv copy nothing more);
* ``conv2d_input_grad(g, w)``: ``col2im(reshape(w, (O, K)).T @ gt.T)`` with ``gt`` the
  gradient transposed to ``[N*P, O]`` (one copy, shared with the filter gradient);
* ``conv2d_filter_grad(x, g)``: ``gt.T @ im2col(x).T``, reshaped to ``[O, C, kh, kw]``.

The columns are ``[K, N*P]`` so that im2col and col2im copy along rows on both sides (at
stride 1 a contiguous, vectorised copy); the products read them through BLAS's transpose
flag.

So each is one BLAS product over the whole batch (split between two lanes when large), the
column buffer is an ordinary value of the memory plan (no allocation per step), and common
subexpression elimination (run after this pass) shares ``im2col(x)`` between a layer's
forward and its filter gradient, and ``gt`` between its two gradients. Below the threshold
the direct loop nests of ``backends/numba/conv_kernels.py`` run instead: measured by
``benchmarks/bench_conv.py`` (docs/convolutions.md, "Which kernel runs").

>>> IM2COL_MIN_REDUCTION, FILTER_GRAD_MIN_REDUCTION, DIRECT_MIN_WIDTH
(27, 9, 16)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from graphcomp.ir import multiply
from graphcomp.passes.lowered import Dim, LOp, LoweredProgram

ConvChoice = Literal["auto", "direct", "im2col"]
CONV_CHOICES: tuple[ConvChoice, ...] = ("auto", "direct", "im2col")
CONV_OPS = frozenset({"conv2d", "conv2d_input_grad", "conv2d_filter_grad"})
# When "auto" runs im2col + GEMM, from benchmarks/bench_conv.py (docs/convolutions.md, 1
# thread, 2026-12-07): the filter gradient from a reduction C_in * kh * kw of 9 on (direct:
# 2.8-4.5x slower at 9, 6-36x from 27 on); conv2d and the input gradient from a reduction of
# 27 on, or below it where output rows are shorter than DIRECT_MIN_WIDTH (direct loops over
# 8-wide rows were 3-4x slower at 9; over 24- and 28-wide rows with one input channel they
# were 1.1-2x faster than im2col at 9 and 25).
IM2COL_MIN_REDUCTION = 27
FILTER_GRAD_MIN_REDUCTION = 9
DIRECT_MIN_WIDTH = 16


def lower_convolutions(lp: LoweredProgram, choice: ConvChoice = "auto") -> LoweredProgram:
    """Rewrite the convolutions that ``choice`` sends to im2col + GEMM (see the module
    docstring); ``"direct"`` keeps every one a loop nest. Run ``eliminate_common`` after.

    >>> # lp = eliminate_common(lower_convolutions(lp))
    """
    if choice not in CONV_CHOICES:
        raise ValueError(f"conv must be one of {', '.join(CONV_CHOICES)}, got {choice!r}")
    result = lp.copy()
    if choice == "direct" or not any(_wanted(result, op, choice) for op in result.ops.values()):
        return result
    rebuilt = _Rebuilt(max(result.ops) + 1)
    for op in result.ops.values():
        if _wanted(result, op, choice):
            _REWRITES[op.op](result, rebuilt, op)
        rebuilt.ops[op.id] = op
    result.ops = rebuilt.ops
    return result


def reduction_length(lp: LoweredProgram, op: LOp) -> int:
    """``C_in * kh * kw`` of a convolution op (groups 1)."""
    if op.op == "conv2d":
        return _product(lp.ops[op.inputs[1]].shape[1:])
    if op.op == "conv2d_input_grad":
        return _product(op.shape[1:2]) * _product(lp.ops[op.inputs[1]].shape[2:])
    return _product(op.shape[1:])  # the filter gradient's [O, C, kh, kw]


def _product(dims: tuple[Dim, ...]) -> int:
    """The product of static dims (channels, spatial sizes and kernels always are)."""
    return int(np.prod([int(d) for d in dims]))


def _wanted(lp: LoweredProgram, op: LOp, choice: ConvChoice) -> bool:
    if op.op not in CONV_OPS or op.attrs["groups"] != 1:
        return False
    if choice == "im2col":
        return True
    reduction = reduction_length(lp, op)
    if op.op == "conv2d_filter_grad":
        return reduction >= FILTER_GRAD_MIN_REDUCTION
    out_width = int((op.shape if op.op == "conv2d" else lp.ops[op.inputs[0]].shape)[3])
    return reduction >= IM2COL_MIN_REDUCTION or out_width < DIRECT_MIN_WIDTH


class _Rebuilt:
    """The program's values in their new order; new values get ids from ``next_id`` on."""

    def __init__(self, next_id: int) -> None:
        self.ops: dict[int, LOp] = {}
        self.next_id = next_id

    def add(self, op: str, inputs: list[int], attrs: dict, shape: tuple[Dim, ...],
            like: LOp) -> int:
        value = self.next_id
        self.next_id += 1
        self.ops[value] = LOp(value, op, inputs, attrs, shape, like.dtype, list(like.labels))
        return value


def _geometry(op: LOp) -> dict:
    return {k: op.attrs[k] for k in ("stride", "padding", "dilation")}


def _columns(lp: LoweredProgram, new: _Rebuilt, x: int, kernel: tuple[Dim, ...],
             out_hw: tuple[Dim, ...], like: LOp) -> int:
    """``im2col(x)``: ``[C*kh*kw, N*OH*OW]``."""
    n, c = lp.ops[x].shape[:2]
    attrs = {**_geometry(like), "kernel": tuple(kernel)}
    shape = (multiply(c, *kernel), multiply(n, *out_hw))
    return new.add("im2col", [x], attrs, shape, like)


def _transposed(new: _Rebuilt, value: int, like: LOp) -> int:
    """A 2-D transpose (read by a product: a free ``.T`` view, BLAS's transpose flag)."""
    return new.add("transpose", [value], {"perm": (1, 0)}, tuple(reversed(new.ops[value].shape)),
                   like)


def _filter_matrix(lp: LoweredProgram, new: _Rebuilt, w: int, like: LOp) -> int:
    """The filter ``[O, C, kh, kw]`` as ``[O, C*kh*kw]`` (a reshape: no copy)."""
    o, *rest = lp.ops[w].shape
    return new.add("reshape", [w], {"shape": (o, multiply(*rest))}, (o, multiply(*rest)), like)


def _gradient_rows(lp: LoweredProgram, new: _Rebuilt, g: int, like: LOp) -> int:
    """The output gradient ``[N, O, OH, OW]`` as ``[N*OH*OW, O]`` (one transposing copy)."""
    n, o, oh, ow = lp.ops[g].shape
    moved = new.add("transpose", [g], {"perm": (0, 2, 3, 1)}, (n, oh, ow, o), like)
    rows = (multiply(n, oh, ow), o)
    return new.add("reshape", [moved], {"shape": rows}, rows, like)


def _rewrite_conv2d(lp: LoweredProgram, new: _Rebuilt, op: LOp) -> None:
    x, w = op.inputs
    n, o, oh, ow = op.shape
    cols = _columns(lp, new, x, lp.ops[w].shape[2:], (oh, ow), op)
    wt = _transposed(new, _filter_matrix(lp, new, w, op), op)
    rows = new.add("matmul", [_transposed(new, cols, op), wt], {}, (multiply(n, oh, ow), o), op)
    nhwc = new.add("reshape", [rows], {"shape": (n, oh, ow, o)}, (n, oh, ow, o), op)
    op.op, op.inputs, op.attrs = "transpose", [nhwc], {"perm": (0, 3, 1, 2)}


def _rewrite_input_grad(lp: LoweredProgram, new: _Rebuilt, op: LOp) -> None:
    g, w = op.inputs
    rows_t = _transposed(new, _gradient_rows(lp, new, g, op), op)
    wt = _transposed(new, _filter_matrix(lp, new, w, op), op)
    cols = new.add("matmul", [wt, rows_t], {}, (new.ops[wt].shape[0], new.ops[rows_t].shape[1]),
                   op)
    attrs = {**_geometry(op), "kernel": tuple(lp.ops[w].shape[2:])}
    op.op, op.inputs, op.attrs = "col2im", [cols], attrs


def _rewrite_filter_grad(lp: LoweredProgram, new: _Rebuilt, op: LOp) -> None:
    x, g = op.inputs
    o, c, kh, kw = op.shape
    cols = _columns(lp, new, x, (kh, kw), lp.ops[g].shape[2:], op)
    rows_t = _transposed(new, _gradient_rows(lp, new, g, op), op)
    product = new.add("matmul", [rows_t, _transposed(new, cols, op)], {},
                      (o, multiply(c, kh, kw)), op)
    op.op, op.inputs, op.attrs = "reshape", [product], {"shape": tuple(op.shape)}


_REWRITES = {
    "conv2d": _rewrite_conv2d,
    "conv2d_input_grad": _rewrite_input_grad,
    "conv2d_filter_grad": _rewrite_filter_grad,
}


# ---------------------------------------------------------------- numpy meaning of the new ops


def im2col_reference(x: np.ndarray, attrs: dict) -> np.ndarray:
    """What ``im2col`` computes: row ``(c, i, j)``, column ``(b, oh, ow)`` holds the input
    that tap ``(i, j)`` of window ``(oh, ow)`` reads on channel ``c`` (0 in the padding).

    >>> attrs = {"stride": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1),
    ...          "kernel": (2, 2)}
    >>> im2col_reference(np.arange(9.0).reshape(1, 1, 3, 3), attrs)[:, 0].tolist()
    [0.0, 1.0, 3.0, 4.0]
    """
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    kh, kw = attrs["kernel"]
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((c, kh, kw, n, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[_taps(i, j, attrs, oh, ow)].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im_reference(cols: np.ndarray, attrs: dict, shape: tuple[int, ...]) -> np.ndarray:
    """What ``col2im`` computes: the transpose of ``im2col``, each column added back where
    it was read, into ``shape`` ``[N, C, H, W]``.

    >>> attrs = {"stride": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1),
    ...          "kernel": (2, 2)}
    >>> col2im_reference(np.ones((4, 4)), attrs, (1, 1, 3, 3))[0, 0].tolist()
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    kh, kw = attrs["kernel"]
    n, c, h, wd = shape
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    blocks = cols.reshape(c, kh, kw, n, oh, ow)
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[_taps(i, j, attrs, oh, ow)] += blocks[:, i, j].transpose(1, 0, 2, 3)
    return xp[:, :, pt:pt + h, pl:pl + wd]


def _taps(i: int, j: int, attrs: dict, oh: int, ow: int) -> tuple[slice, ...]:
    """Where tap ``(i, j)`` of every window lies in the padded input."""
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    return (slice(None), slice(None), slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
