"""Convolution and pooling primitives over NCHW arrays, and the primitives of their gradients.

Attributes are normalised pairs: ``stride=(sh, sw)``, ``dilation=(dh, dw)``,
``padding=((top, bottom), (left, right))`` (asymmetric padding is allowed, so ``"same"`` with
an even kernel is exact), ``groups`` an int, ``kernel=(kh, kw)`` for pooling. The public
functions (``graphcomp.nn``) turn user arguments into these attrs.

Every gradient is itself a primitive with its own shape rule, numpy reference and VJP, so
gradients of gradients work (docs/convolutions.md):

- ``conv2d(x, w)``: ``conv2d_input_grad(g, w)`` and ``conv2d_filter_grad(x, g)``;
- ``conv2d_input_grad(g, w)``: ``conv2d(u, w)`` and ``conv2d_filter_grad(u, g)``;
- ``conv2d_filter_grad(x, g)``: ``conv2d_input_grad(g, v)`` and ``conv2d(x, v)``;
- ``max_pool2d(x)``: ``max_pool2d_grad(x, g)``;
- ``max_pool2d_grad(x, g)``: none for x (piecewise constant), ``max_pool2d_gather(x, u)``;
- ``max_pool2d_gather(x, v)``: none for x, ``max_pool2d_grad(x, g)``;
- ``avg_pool2d(x)``: ``avg_pool2d_grad(g)``; ``avg_pool2d_grad(g)``: ``avg_pool2d(u)``.

Max pooling pads with ``-inf``; its gradient goes to the window's arg-max, split equally
between tied maxima (as ``max`` does). Average pooling counts padding as zeros: every window
divides by ``kh * kw`` (PyTorch's ``count_include_pad=True``).

The batch axis may be symbolic; channels and spatial sizes must be static.

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 3, 8, 8), "float32", name="x")
...     w = gc.placeholder((4, 3, 3, 3), "float32", name="w")
...     y = apply("conv2d", x, w, stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
...               groups=1)
>>> y.shape
('N', 4, 8, 8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, ShapeError
from graphcomp.ir import DimMismatch, DimTable, Node
from graphcomp.ops.registry import OpDef, Sample, register
from graphcomp.ops.tensor import Tensor, apply

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]

# ================================================================ attribute checks


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(attrs: dict, name: str, minimum: int) -> Pair:
    value = attrs.get(name)
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise ShapeError(f"{name} must be a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ShapeError(f"{name} must be >= {minimum}, got {value}")
    return int(value[0]), int(value[1])


def _padding(attrs: dict) -> Padding:
    value = attrs.get("padding")
    if not (isinstance(value, tuple) and len(value) == 2
            and all(isinstance(p, tuple) and len(p) == 2 and all(_is_int(v) for v in p)
                    for p in value)):
        raise ShapeError(f"padding must be ((top, bottom), (left, right)), got {value!r}")
    if min(min(p) for p in value) < 0:
        raise ShapeError(f"padding must be >= 0, got {value}")
    return (int(value[0][0]), int(value[0][1])), (int(value[1][0]), int(value[1][1]))


def _static(dims: DimTable, node: Node, axes: Sequence[int], what: str) -> list[int]:
    sizes = [dims.resolve(node.shape[a]) for a in axes]
    if not all(isinstance(s, int) for s in sizes):
        raise ShapeError(f"the {what} must have static sizes, got {tuple(sizes)}")
    return [int(s) for s in sizes]


def _float_operands(nodes: Sequence[Node]) -> np.dtype:
    dtype = nodes[0].dtype
    if not dtypes.is_float(dtype):
        raise DTypeError(f"convolution and pooling take float32 or float64, got {dtype}")
    for node in nodes[1:]:
        if node.dtype != dtype:
            raise DTypeError(f"operands must have one dtype, got {dtype} and {node.dtype}")
    return dtype


def _rank4(node: Node, what: str) -> None:
    if node.ndim != 4:
        raise ShapeError(f"the {what} must be 4-d ({'NCHW' if what == 'input' else 'OIHW'}), "
                         f"got rank {node.ndim}")


def output_size(size: int, kernel: int, stride: int, pad: Pair, dilation: int) -> int:
    """Output length of a window of ``kernel`` taps ``dilation`` apart sliding by ``stride``
    over ``size`` padded by ``pad``.

    >>> output_size(7, 3, 2, (1, 1), 1)
    4
    """
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def _output_hw(hw: Sequence[int], kernel: Pair, stride: Pair, padding: Padding,
               dilation: Pair) -> tuple[int, int]:
    out = []
    for axis in range(2):
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        padded = hw[axis] + sum(padding[axis])
        if extent > padded:
            raise ShapeError(f"the kernel spans {extent} along {'HW'[axis]} (with dilation), "
                             f"more than the padded input's {padded}")
        out.append(output_size(hw[axis], kernel[axis], stride[axis], padding[axis],
                               dilation[axis]))
    return out[0], out[1]


def _unify(dims: DimTable, a: Any, b: Any, what: str) -> None:
    try:
        dims.unify(a, b)
    except DimMismatch:
        raise ShapeError(f"{what}: {a} against {b}") from None


# ================================================================ conv2d: shape rules


def _conv_geometry(attrs: dict) -> tuple[Pair, Padding, Pair, int]:
    stride, padding = _pair(attrs, "stride", 1), _padding(attrs)
    dilation, groups = _pair(attrs, "dilation", 1), attrs.get("groups")
    if not _is_int(groups) or groups < 1:
        raise ShapeError(f"groups must be an int >= 1, got {groups!r}")
    return stride, padding, dilation, int(groups)


def _check_filter(dims: DimTable, channels: int, w: Node, groups: int) -> list[int]:
    """The filter's static ``[O, C/groups, kh, kw]``, checked against ``channels``."""
    _rank4(w, "filter")
    o, per_group, kh, kw = _static(dims, w, range(4), "filter")
    if channels % groups:
        raise ShapeError(f"groups={groups} does not divide the input's {channels} channels")
    if o % groups:
        raise ShapeError(f"groups={groups} does not divide the filter's {o} output channels")
    if per_group * groups != channels:
        raise ShapeError(f"channel mismatch: the input has {channels} channels, the filter "
                         f"expects {per_group * groups} ({per_group} per group x {groups} "
                         f"group{'s' if groups > 1 else ''})")
    if min(kh, kw) < 1:
        raise ShapeError(f"the filter's kernel must be at least 1x1, got {kh}x{kw}")
    return [o, per_group, kh, kw]


def _conv2d_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    x, w = nodes
    dtype = _float_operands(nodes)
    _rank4(x, "input")
    stride, padding, dilation, groups = _conv_geometry(attrs)
    c, h, wd = _static(dims, x, (1, 2, 3), "input's channels and spatial axes")
    o, _, kh, kw = _check_filter(dims, c, w, groups)
    oh, ow = _output_hw((h, wd), (kh, kw), stride, padding, dilation)
    return (x.shape[0], o, oh, ow), dtype


def _input_hw(attrs: dict) -> Pair:
    return _pair(attrs, "input_hw", 1)


def _check_cotangent(dims: DimTable, g: Node, expected: Sequence[Any]) -> None:
    _rank4(g, "input")
    for axis in range(1, 4):
        _unify(dims, g.shape[axis], expected[axis - 1],
               f"the output gradient's axis {axis} must match the output")


def _conv2d_input_grad_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    g, w = nodes
    dtype = _float_operands(nodes)
    stride, padding, dilation, groups = _conv_geometry(attrs)
    _rank4(w, "filter")
    per_group = _static(dims, w, (1,), "filter")[0]
    o, _, kh, kw = _check_filter(dims, per_group * groups, w, groups)
    h, wd = _input_hw(attrs)
    oh, ow = _output_hw((h, wd), (kh, kw), stride, padding, dilation)
    _check_cotangent(dims, g, (o, oh, ow))
    return (g.shape[0], per_group * groups, h, wd), dtype


def _conv2d_filter_grad_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    x, g = nodes
    dtype = _float_operands(nodes)
    _rank4(x, "input")
    stride, padding, dilation, groups = _conv_geometry(attrs)
    c, h, wd = _static(dims, x, (1, 2, 3), "input's channels and spatial axes")
    kh, kw = _pair(attrs, "kernel_hw", 1)
    _rank4(g, "output gradient")
    o = _static(dims, g, (1,), "output gradient's channels")[0]
    if c % groups or o % groups:
        raise ShapeError(f"groups={groups} must divide {c} input and {o} output channels")
    oh, ow = _output_hw((h, wd), (kh, kw), stride, padding, dilation)
    _check_cotangent(dims, g, (o, oh, ow))
    _unify(dims, x.shape[0], g.shape[0], "the batch axes must match")
    return (o, c // groups, kh, kw), dtype


# ================================================================ conv2d: numpy references


def _pad(x: np.ndarray, padding: Padding, value: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), padding[0], padding[1]), constant_values=value)


def _tap(i: int, j: int, stride: Pair, dilation: Pair, out_hw: Sequence[int]
         ) -> tuple[slice, slice]:
    """Where tap ``(i, j)`` of every window lies in the padded input."""
    rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (out_hw[0] - 1) + 1, stride[0])
    cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (out_hw[1] - 1) + 1, stride[1])
    return rows, cols


def _columns(xp: np.ndarray, kernel: Sequence[int], stride: Pair, dilation: Pair,
             out_hw: Sequence[int], for_products: bool = False) -> np.ndarray:
    """im2col of a padded input: ``[N, C, kh, kw, OH, OW]``. ``for_products``: a view of
    memory laid out as ``[N, OH, OW, C, kh, kw]``, the order in which the convolutions'
    ``tensordot`` reads it, which then reshapes it to a matrix without a copy (the same
    matrix, so the same results); pooling reduces over the window in the plain layout."""
    n, c = xp.shape[:2]
    if for_products:
        cols = np.empty((n, *out_hw, c, *kernel), xp.dtype).transpose(0, 3, 4, 5, 1, 2)
    else:
        cols = np.empty((n, c, *kernel, *out_hw), xp.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            cols[:, :, i, j] = xp[(slice(None), slice(None), *_tap(i, j, stride, dilation,
                                                                   out_hw))]
    return cols


def _uncolumns(cols: np.ndarray, hw: Sequence[int], padding: Padding, stride: Pair,
               dilation: Pair) -> np.ndarray:
    """col2im: the sum of each ``[N, C, kh, kw, OH, OW]`` column back where it was read,
    padding cropped: ``[N, C, H, W]``."""
    n, c, kh, kw = cols.shape[:4]
    padded = (hw[0] + sum(padding[0]), hw[1] + sum(padding[1]))
    xp = np.zeros((n, c, *padded), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[(slice(None), slice(None), *_tap(i, j, stride, dilation, cols.shape[4:]))] += \
                cols[:, :, i, j]
    (top, _), (left, _) = padding
    return xp[:, :, top:top + hw[0], left:left + hw[1]]


def _geometry(attrs: dict) -> tuple[Pair, Padding, Pair, int]:
    return attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]


def _conv2d_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x, w = xs
    stride, padding, dilation, groups = _geometry(attrs)
    cols = _columns(_pad(x, padding, 0), w.shape[2:], stride, dilation, shape[2:], True)
    per_in, per_out = x.shape[1] // groups, w.shape[0] // groups
    parts = []
    for k in range(groups):
        cols_k = cols[:, k * per_in:(k + 1) * per_in]
        w_k = w[k * per_out:(k + 1) * per_out]
        parts.append(np.tensordot(cols_k, w_k, axes=([1, 2, 3], [1, 2, 3])))  # N, OH, OW, O_k
    return np.concatenate(parts, axis=3).transpose(0, 3, 1, 2)


def _conv2d_input_grad_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    g, w = xs
    stride, padding, dilation, groups = _geometry(attrs)
    per_out = w.shape[0] // groups
    parts = []
    for k in range(groups):
        g_k = g[:, k * per_out:(k + 1) * per_out]
        w_k = w[k * per_out:(k + 1) * per_out]
        parts.append(np.tensordot(g_k, w_k, axes=([1], [0])))  # N, OH, OW, C_k, kh, kw
    cols = np.concatenate(parts, axis=3).transpose(0, 3, 4, 5, 1, 2)
    return _uncolumns(cols, shape[2:], padding, stride, dilation)


def _conv2d_filter_grad_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple
                             ) -> np.ndarray:
    # Summed in float64, as the numba kernel does: a float32 sum over the batch and every
    # output position cancels badly (seen: 2.6664e-3 against 2.6666e-3 for 60 terms).
    x, g = (a.astype(np.float64) for a in xs)
    stride, padding, dilation, groups = _geometry(attrs)
    cols = _columns(_pad(x, padding, 0), shape[2:], stride, dilation, g.shape[2:], True)
    per_in, per_out = x.shape[1] // groups, g.shape[1] // groups
    parts = []
    for k in range(groups):
        g_k = g[:, k * per_out:(k + 1) * per_out]
        cols_k = cols[:, k * per_in:(k + 1) * per_in]
        parts.append(np.tensordot(g_k, cols_k, axes=([0, 2, 3], [0, 4, 5])))
    return np.concatenate(parts, axis=0)


# ================================================================ conv2d: VJPs


def _conv_attrs(attrs: dict) -> dict:
    return {k: attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _hw(t: Tensor) -> tuple[int, int]:
    return int(t.shape[2]), int(t.shape[3])


def _vjp_conv2d(g: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    x, w = ins
    geometry = _conv_attrs(attrs)
    return [apply("conv2d_input_grad", g, w, input_hw=_hw(x), **geometry),
            apply("conv2d_filter_grad", x, g, kernel_hw=_hw(w), **geometry)]


def _vjp_conv2d_input_grad(u: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    g, w = ins
    geometry = _conv_attrs(attrs)
    return [apply("conv2d", u, w, **geometry),
            apply("conv2d_filter_grad", u, g, kernel_hw=_hw(w), **geometry)]


def _vjp_conv2d_filter_grad(v: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict
                            ) -> list:
    x, g = ins
    geometry = _conv_attrs(attrs)
    return [apply("conv2d_input_grad", g, v, input_hw=_hw(x), **geometry),
            apply("conv2d", x, v, **geometry)]


# ================================================================ conv2d: samples

_CONV_CASES = [
    # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 5, 6), (4, 3, 3, 2), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((1, 4, 7, 5), (6, 2, 3, 3), (2, 1), ((1, 2), (0, 1)), (1, 2), 2),
    ((2, 2, 6, 7), (2, 1, 2, 3), (3, 2), ((2, 1), (1, 1)), (2, 1), 2),
    ((1, 2, 6, 6), (3, 2, 3, 3), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),  # uncovered last row
]


def _geometry_attrs(case: tuple) -> dict:
    _, _, stride, padding, dilation, groups = case
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _conv_out_shape(case: tuple) -> tuple[int, ...]:
    x, w, stride, padding, dilation, _ = case
    hw = [output_size(x[2 + a], w[2 + a], stride[a], padding[a], dilation[a]) for a in range(2)]
    return (x[0], w[0], *hw)


def _normal(rng: np.random.Generator, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _conv2d_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [Sample((_normal(rng, case[0], dtype), _normal(rng, case[1], dtype)),
                   _geometry_attrs(case), symbolic=({0: "N"}, {})) for case in _CONV_CASES]


def _conv2d_input_grad_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [Sample((_normal(rng, _conv_out_shape(case), dtype), _normal(rng, case[1], dtype)),
                   {**_geometry_attrs(case), "input_hw": case[0][2:]}, symbolic=({0: "N"}, {}))
            for case in _CONV_CASES]


def _conv2d_filter_grad_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [Sample((_normal(rng, case[0], dtype), _normal(rng, _conv_out_shape(case), dtype)),
                   {**_geometry_attrs(case), "kernel_hw": case[1][2:]},
                   symbolic=({0: "N"}, {0: "N"})) for case in _CONV_CASES]


register(OpDef(
    name="conv2d", kind="linalg", infer=_conv2d_rule, numpy_impl=_conv2d_impl,
    vjp=_vjp_conv2d, samples=_conv2d_samples,
    doc="2-d cross-correlation of NCHW input x with OIHW filter w (stride, padding, "
        "dilation, groups)",
))
register(OpDef(
    name="conv2d_input_grad", kind="linalg", infer=_conv2d_input_grad_rule,
    numpy_impl=_conv2d_input_grad_impl, vjp=_vjp_conv2d_input_grad,
    samples=_conv2d_input_grad_samples,
    doc="conv2d's gradient for its input: the transposed convolution of g by w (col2im)",
))
register(OpDef(
    name="conv2d_filter_grad", kind="linalg", infer=_conv2d_filter_grad_rule,
    numpy_impl=_conv2d_filter_grad_impl, vjp=_vjp_conv2d_filter_grad,
    samples=_conv2d_filter_grad_samples,
    doc="conv2d's gradient for its filter: the correlation of x with g over the batch",
))


# ================================================================ pooling: shape rules


def _pool_geometry(attrs: dict) -> tuple[Pair, Pair, Padding]:
    kernel, stride, padding = _pair(attrs, "kernel", 1), _pair(attrs, "stride", 1), \
        _padding(attrs)
    for axis in range(2):
        if max(padding[axis]) > kernel[axis] // 2:
            raise ShapeError(f"padding {padding[axis]} along {'HW'[axis]} is more than half "
                             f"the kernel ({kernel[axis]}): a window could hold only padding")
    return kernel, stride, padding


def _pooled_shape(dims: DimTable, x: Node, attrs: dict) -> tuple:
    _rank4(x, "input")
    kernel, stride, padding = _pool_geometry(attrs)
    c, h, w = _static(dims, x, (1, 2, 3), "input's channels and spatial axes")
    oh, ow = _output_hw((h, w), kernel, stride, padding, (1, 1))
    return (x.shape[0], c, oh, ow)


def _pool_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    dtype = _float_operands(nodes)
    return _pooled_shape(dims, nodes[0], attrs), dtype


def _max_pool2d_grad_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    """``(x, g)`` -> x's shape, g shaped like the pooled x."""
    x, g = nodes
    dtype = _float_operands(nodes)
    pooled = _pooled_shape(dims, x, attrs)
    _check_cotangent(dims, g, pooled[1:])
    _unify(dims, x.shape[0], g.shape[0], "the batch axes must match")
    return x.shape, dtype


def _max_pool2d_gather_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    """``(x, v)`` -> the pooled shape, v shaped like x."""
    x, v = nodes
    dtype = _float_operands(nodes)
    pooled = _pooled_shape(dims, x, attrs)
    _rank4(v, "input")
    for axis in range(4):
        _unify(dims, x.shape[axis], v.shape[axis], f"the operands' axis {axis} must match")
    return pooled, dtype


def _avg_pool2d_grad_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (g,) = nodes
    dtype = _float_operands(nodes)
    kernel, stride, padding = _pool_geometry(attrs)
    h, w = _input_hw(attrs)
    _rank4(g, "output gradient")
    c = _static(dims, g, (1,), "output gradient's channels")[0]
    oh, ow = _output_hw((h, w), kernel, stride, padding, (1, 1))
    _check_cotangent(dims, g, (c, oh, ow))
    return (g.shape[0], c, h, w), dtype


# ================================================================ pooling: numpy references


def _windows(x: np.ndarray, attrs: dict, out_hw: Sequence[int], fill: float) -> np.ndarray:
    """Every window of ``x`` (padded with ``fill``): ``[N, C, kh * kw, OH, OW]``."""
    cols = _columns(_pad(x, attrs["padding"], fill), attrs["kernel"], attrs["stride"], (1, 1),
                    out_hw)
    kh, kw = attrs["kernel"]
    return cols.reshape(*cols.shape[:2], kh * kw, *out_hw)


def _unwindows(cols: np.ndarray, attrs: dict, hw: Sequence[int]) -> np.ndarray:
    kh, kw = attrs["kernel"]
    shaped = cols.reshape(*cols.shape[:2], kh, kw, *cols.shape[3:])
    return _uncolumns(shaped, hw, attrs["padding"], attrs["stride"], (1, 1))


def _argmax_share(x: np.ndarray, attrs: dict, out_hw: Sequence[int]) -> np.ndarray:
    """Per window, 1/count at each tied maximum and 0 elsewhere: ``[N, C, kh*kw, OH, OW]``."""
    windows = _windows(x, attrs, out_hw, -np.inf)
    mask = windows == windows.max(axis=2, keepdims=True)
    return mask / mask.sum(axis=2, keepdims=True)


def _max_pool2d_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    return _windows(xs[0], attrs, shape[2:], -np.inf).max(axis=2)


def _max_pool2d_grad_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x, g = xs
    share = _argmax_share(x, attrs, g.shape[2:])
    return _unwindows(share * g[:, :, None], attrs, shape[2:])


def _max_pool2d_gather_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x, v = xs
    share = _argmax_share(x, attrs, shape[2:])
    return (share * _windows(v, attrs, shape[2:], 0)).sum(axis=2)


def _avg_pool2d_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    return _windows(xs[0], attrs, shape[2:], 0).mean(axis=2)


def _avg_pool2d_grad_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    (g,) = xs
    kh, kw = attrs["kernel"]
    cols = np.broadcast_to((g / (kh * kw))[:, :, None], (*g.shape[:2], kh * kw, *g.shape[2:]))
    return _unwindows(cols, attrs, shape[2:])


# ================================================================ pooling: VJPs


def _pool_attrs(attrs: dict) -> dict:
    return {k: attrs[k] for k in ("kernel", "stride", "padding")}


def _vjp_max_pool2d(g: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    return [apply("max_pool2d_grad", ins[0], g, **_pool_attrs(attrs))]


def _vjp_max_pool2d_grad(u: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    return [None, apply("max_pool2d_gather", ins[0], u, **_pool_attrs(attrs))]


def _vjp_max_pool2d_gather(g: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    return [None, apply("max_pool2d_grad", ins[0], g, **_pool_attrs(attrs))]


def _vjp_avg_pool2d(g: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    return [apply("avg_pool2d_grad", g, input_hw=_hw(ins[0]), **_pool_attrs(attrs))]


def _vjp_avg_pool2d_grad(u: Tensor, out: Tensor, ins: Sequence[Tensor], attrs: dict) -> list:
    return [apply("avg_pool2d", u, **_pool_attrs(attrs))]


# ================================================================ pooling: samples

_POOL_CASES = [
    # x shape, kernel, stride, padding
    ((2, 3, 4, 5), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((1, 2, 5, 4), (3, 2), (1, 2), ((1, 1), (0, 1))),
    ((2, 1, 7, 6), (3, 3), (2, 3), ((1, 0), (1, 1))),
]


def _pool_case_attrs(case: tuple) -> dict:
    return {"kernel": case[1], "stride": case[2], "padding": case[3]}


def _pool_out_shape(case: tuple) -> tuple[int, ...]:
    x, kernel, stride, padding = case
    hw = [output_size(x[2 + a], kernel[a], stride[a], padding[a], 1) for a in range(2)]
    return (*x[:2], *hw)


def _ties(rng: np.random.Generator, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Small integers: windows with tied maxima (and one window of equal values)."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    x[0, 0, :2, :2] = 1
    return x


def _max_pool2d_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    samples = [Sample((_normal(rng, case[0], dtype),), _pool_case_attrs(case),
                      symbolic=({0: "N"},)) for case in _POOL_CASES]
    case = _POOL_CASES[1]
    samples.append(Sample((_ties(rng, case[0], dtype),), _pool_case_attrs(case), smooth=False))
    return samples


def _max_pool2d_pair_samples(rng: np.random.Generator, dtype: np.dtype, gather: bool
                             ) -> list[Sample]:
    samples = []
    for k, case in enumerate([*_POOL_CASES, _POOL_CASES[1]]):
        tied = k == len(_POOL_CASES)
        x = _ties(rng, case[0], dtype) if tied else _normal(rng, case[0], dtype)
        other = _normal(rng, case[0] if gather else _pool_out_shape(case), dtype)
        samples.append(Sample((x, other), _pool_case_attrs(case),
                              symbolic=({0: "N"}, {0: "N"}), smooth=not tied))
    return samples


def _avg_pool2d_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [Sample((_normal(rng, case[0], dtype),), _pool_case_attrs(case),
                   symbolic=({0: "N"},)) for case in _POOL_CASES]


def _avg_pool2d_grad_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [Sample((_normal(rng, _pool_out_shape(case), dtype),),
                   {**_pool_case_attrs(case), "input_hw": case[0][2:]}, symbolic=({0: "N"},))
            for case in _POOL_CASES]


register(OpDef(
    name="max_pool2d", kind="linalg", infer=_pool_rule, numpy_impl=_max_pool2d_impl,
    vjp=_vjp_max_pool2d, samples=_max_pool2d_samples,
    doc="maximum over each kh x kw window of NCHW x (padding is -inf)",
))
register(OpDef(
    name="max_pool2d_grad", kind="linalg", infer=_max_pool2d_grad_rule,
    numpy_impl=_max_pool2d_grad_impl, vjp=_vjp_max_pool2d_grad,
    samples=lambda rng, dtype: _max_pool2d_pair_samples(rng, dtype, gather=False),
    doc="max_pool2d's input gradient: g to each window's arg-max, ties split equally",
))
register(OpDef(
    name="max_pool2d_gather", kind="linalg", infer=_max_pool2d_gather_rule,
    numpy_impl=_max_pool2d_gather_impl, vjp=_vjp_max_pool2d_gather,
    samples=lambda rng, dtype: _max_pool2d_pair_samples(rng, dtype, gather=True),
    doc="per window of x, the mean of v over x's tied maxima (max_pool2d_grad's transpose)",
))
register(OpDef(
    name="avg_pool2d", kind="linalg", infer=_pool_rule, numpy_impl=_avg_pool2d_impl,
    vjp=_vjp_avg_pool2d, samples=_avg_pool2d_samples,
    doc="mean over each kh x kw window of NCHW x (padding counts as zeros)",
))
register(OpDef(
    name="avg_pool2d_grad", kind="linalg", infer=_avg_pool2d_grad_rule,
    numpy_impl=_avg_pool2d_grad_impl, vjp=_vjp_avg_pool2d_grad,
    samples=_avg_pool2d_grad_samples,
    doc="avg_pool2d's input gradient: g / (kh * kw) spread over each window",
))
