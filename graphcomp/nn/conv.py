"""Convolution, pooling and flatten on NCHW tensors: ``gc.nn.conv2d``, ``gc.nn.max_pool2d``,
``gc.nn.avg_pool2d``, ``gc.nn.flatten``.

These turn user arguments (an int, a pair, ``"same"``/``"valid"``) into the attributes of the
primitives in ``graphcomp/ops/convolution.py``; every shape error is raised while the graph is
built and names the user's line. The batch axis may be symbolic.

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 1, 8, 8), "float32", name="x")
...     w = gc.placeholder((4, 1, 3, 3), "float32", name="w")
...     h = gc.nn.max_pool2d(gc.relu(gc.nn.conv2d(x, w, padding="same")), 2)
...     flat = gc.nn.flatten(h)
>>> h.shape, flat.shape
(('N', 4, 4, 4), ('N', 64))
"""

from __future__ import annotations

import math
from typing import Any

from graphcomp.errors import ShapeError
from graphcomp.ir import user_source_line
from graphcomp.ops import functions as F
from graphcomp.ops.convolution import Padding, Pair
from graphcomp.ops.tensor import Tensor, apply, as_tensor

__all__ = ["avg_pool2d", "conv2d", "flatten", "max_pool2d"]


def _fail(what: str) -> ShapeError:
    return ShapeError(f"{what} (at {user_source_line()})")


def _as_pair(value: Any, name: str, op: str) -> Pair:
    """An int ``k`` as ``(k, k)``; a pair of ints as it is. Range checks are the shape
    rule's (it names the node)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return int(value[0]), int(value[1])
    raise _fail(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _as_padding(value: Any, op: str) -> Padding:
    """``k``, ``(ph, pw)`` (both sides alike) or ``((top, bottom), (left, right))``."""
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(p, (tuple, list)) for p in value)):
        top, left = (_as_pair(p, "padding", op) for p in value)
        return top, left
    ph, pw = _as_pair(value, "padding", op)
    return (ph, ph), (pw, pw)


def _same_padding(kernel: Pair, stride: Pair, dilation: Pair) -> Padding:
    """Padding keeping H and W (stride 1): the extra row or column goes below and right, as
    in PyTorch and TensorFlow."""
    if stride != (1, 1):
        raise _fail(f"conv2d: padding='same' needs stride 1, got stride={stride}")
    sides = []
    for axis in range(2):
        total = dilation[axis] * (kernel[axis] - 1)
        sides.append((total // 2, total - total // 2))
    return sides[0], sides[1]


def _conv_padding(padding: Any, kernel: Pair, stride: Pair, dilation: Pair) -> Padding:
    if isinstance(padding, str):
        if padding == "same":
            return _same_padding(kernel, stride, dilation)
        if padding == "valid":
            return (0, 0), (0, 0)
        raise _fail(f"conv2d: padding must be an int, a pair, 'same' or 'valid', "
                    f"got {padding!r}")
    return _as_padding(padding, "conv2d")


def _kernel_of(w: Tensor) -> Pair:
    if w.ndim != 4:
        raise _fail(f"conv2d: the filter must be 4-d (OIHW), got shape {w.shape}")
    kh, kw = (w.graph.dims.resolve(d) for d in w.shape[2:])
    if not isinstance(kh, int) or not isinstance(kw, int):
        raise _fail(f"conv2d: the filter's kernel size must be static, got {w.shape}")
    return kh, kw


def conv2d(x: Any, w: Any, b: Any = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[Any, Any] | str = 0, dilation: int | tuple[int, int] = 1,
           groups: int = 1) -> Tensor:
    """2-d convolution (cross-correlation, as in PyTorch) of ``x`` ``[N, C, H, W]`` with
    filters ``w`` ``[O, C / groups, kh, kw]``, plus bias ``b`` ``[O]`` if given.

    ``padding``: an int, ``(ph, pw)``, ``((top, bottom), (left, right))``, ``"valid"`` (none)
    or ``"same"`` (output H, W equal the input's; stride 1, the odd extra row/column below
    and right). ``groups`` splits channels into independent groups (``groups == C``:
    depthwise). ``gc.nn.conv2d(x, w, b, stride=2, padding=1)``
    """
    x_, w_ = F._promote(x, w)
    stride_ = _as_pair(stride, "stride", "conv2d")
    dilation_ = _as_pair(dilation, "dilation", "conv2d")
    padding_ = _conv_padding(padding, _kernel_of(w_), stride_, dilation_)
    y = apply("conv2d", x_, w_, stride=stride_, padding=padding_, dilation=dilation_,
              groups=groups)
    if b is None:
        return y
    bias = as_tensor(b, dtype=y.dtype) if not isinstance(b, Tensor) else b
    if bias.ndim != 1 or bias.graph.dims.resolve(bias.shape[0]) != y.shape[1]:
        raise _fail(f"conv2d: the bias must have shape ({y.shape[1]},), one per output "
                    f"channel, got {bias.shape}")
    return y + F.reshape(bias, (1, y.shape[1], 1, 1))


def _pool(op: str, x: Any, kernel: int | tuple[int, int], stride: int | tuple[int, int] | None,
          padding: int | tuple[Any, Any]) -> Tensor:
    kernel_ = _as_pair(kernel, "kernel", op)
    stride_ = kernel_ if stride is None else _as_pair(stride, "stride", op)
    return apply(op, as_tensor(x), kernel=kernel_, stride=stride_,
                 padding=_as_padding(padding, op))


def max_pool2d(x: Any, kernel: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               padding: int | tuple[Any, Any] = 0) -> Tensor:
    """Maximum over each ``kernel`` window of ``x`` ``[N, C, H, W]``, moving by ``stride``
    (default: the kernel, windows side by side). Padding (at most half the kernel) never
    wins; the gradient goes to each window's maximum, split equally between ties.
    ``gc.nn.max_pool2d(x, 2)``
    """
    return _pool("max_pool2d", x, kernel, stride, padding)


def avg_pool2d(x: Any, kernel: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               padding: int | tuple[Any, Any] = 0) -> Tensor:
    """Mean over each ``kernel`` window of ``x`` ``[N, C, H, W]``. Padding counts as zeros:
    every window divides by ``kh * kw`` (PyTorch's ``count_include_pad=True``).
    ``gc.nn.avg_pool2d(x, 2)``
    """
    return _pool("avg_pool2d", x, kernel, stride, padding)


def flatten(x: Any) -> Tensor:
    """``x`` ``[N, ...]`` as ``[N, prod(...)]``, keeping the (possibly symbolic) batch axis;
    the other axes must be static. ``gc.nn.flatten(h)``"""
    x_ = as_tensor(x)
    if x_.ndim < 1:
        raise _fail("flatten: a scalar has no batch axis")
    rest = [x_.graph.dims.resolve(d) for d in x_.shape[1:]]
    if not all(isinstance(d, int) for d in rest):
        raise _fail(f"flatten: the axes after the batch axis must be static, got {x_.shape}")
    return F.reshape(x_, (x_.shape[0], math.prod(int(d) for d in rest)))
