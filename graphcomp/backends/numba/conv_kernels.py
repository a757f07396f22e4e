"""Kernel text for convolution and pooling (``graphcomp/ops/convolution.py``): direct loops.

Each writer returns a ``KernelText`` whose body opens with the op's geometry as constants
(strides, padding, dilation, groups, pooling kernel); every size comes from the arrays'
shapes, so one kernel serves every batch size and every layer of the same geometry.

The loops put the output column innermost with the filter tap hoisted out of it: for a
stride of one the innermost loop reads and writes contiguous memory and vectorises. The range
of output rows and columns for which a tap falls inside the input is computed once per tap, so
the inner loops test nothing (padding is never read). The inner loop runs over 1-D row
slices that start at the first valid column, so its indices are never negative: indexing the
4-d arrays directly (``out[b, o, oh, ow]``) kept numba's wrap-around check for negative
indices in the loop, which was 2x slower (32x16x16x16 -> 32, 3x3: 111 ms against 61 ms on
a loaded 2-core machine). Gradients for the input scatter into a
zeroed ``out`` (col2im); the filter gradient accumulates each tap in float64.

>>> # text = conv2d_kernel(lp, kernel); text.params
>>> # ['a0', 'a1', 'out']
"""

from __future__ import annotations

from collections.abc import Callable

from graphcomp.backends.numba.kernels import KernelText
from graphcomp.passes.fusion import Kernel
from graphcomp.passes.lowered import LoweredProgram

Lines = list[tuple[str, str]]


def _indent(lines: Lines, depth: int) -> Lines:
    return [("    " * depth + line, note) for line, note in lines]


def _conv_header(attrs: dict) -> Lines:
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return [(f"sh, sw, pt, pl, dh, dw = {sh}, {sw}, {pt}, {pl}, {dh}, {dw}", ""),
            (f"groups = {attrs['groups']}", "")]


def _tap_ranges(var: str, depth: int) -> Lines:
    """For tap ``i`` (rows) or ``j`` (columns): the first input index ``r0``/``c0`` a window
    reads, and the output range ``[lo, hi)`` whose tap lies inside the input."""
    if var == "i":
        lines = ["r0 = i * dh - pt", "rlo = max(0, -(r0 // sh))",
                 "rhi = min(oh_n, (h - 1 - r0) // sh + 1)"]
    else:
        lines = ["c0 = j * dw - pl", "clo = max(0, -(c0 // sw))",
                 "chi = min(ow_n, (wd - 1 - c0) // sw + 1)"]
    return _indent([(line, "") for line in lines], depth)


def _zero(depth: int = 0) -> Lines:
    # Not a loop over out.reshape(out.size): the same speed (150x4096 float32: 25 us either
    # way), but numba's reshape made im2col's cold compile 0.59-0.72 s against 0.42-0.50 s.
    return _indent([("out[:] = 0", "")], depth)


def conv2d_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``out[b, o] = sum over taps of w[o, c, i, j] * x[b, c, rows, cols]`` per group."""
    op = lp.ops[kernel.root]
    body = _conv_header(op.attrs) + [
        ("n_img, n_out, oh_n, ow_n = out.shape", ""),
        ("h, wd = a0.shape[2], a0.shape[3]", ""),
        ("cg, kh, kw = a1.shape[1], a1.shape[2], a1.shape[3]", ""),
        ("og = n_out // groups", ""),
        *_zero(),
        ("for b in range(n_img):", ""),
        ("    for o in range(n_out):", ""),
        ("        first = (o // og) * cg", ""),
        ("        for ci in range(cg):", ""),
        ("            for i in range(kh):", ""),
        *_tap_ranges("i", 4),
        ("                for j in range(kw):", ""),
        *_tap_ranges("j", 5),
        ("                    wv = a1[o, ci, i, j]", ""),
        ("                    for oh in range(rlo, rhi):", ""),
        ("                        orow = out[b, o, oh, clo:chi]", ""),
        ("                        xrow = a0[b, first + ci, oh * sh + r0, clo * sw + c0:]", ""),
        ("                        for t in range(orow.shape[0]):", ""),
        ("                            orow[t] += wv * xrow[t * sw]", op.describe()),
    ]
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


def conv2d_input_grad_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """col2im: each ``g[b, o, oh, ow] * w[o, c, i, j]`` added where the tap read the input."""
    op = lp.ops[kernel.root]
    body = _conv_header(op.attrs) + [
        ("n_img, h, wd = out.shape[0], out.shape[2], out.shape[3]", ""),
        ("n_out, cg, kh, kw = a1.shape", ""),
        ("oh_n, ow_n = a0.shape[2], a0.shape[3]", ""),
        ("og = n_out // groups", ""),
        *_zero(),
        ("for b in range(n_img):", ""),
        ("    for o in range(n_out):", ""),
        ("        first = (o // og) * cg", ""),
        ("        for ci in range(cg):", ""),
        ("            for i in range(kh):", ""),
        *_tap_ranges("i", 4),
        ("                for j in range(kw):", ""),
        *_tap_ranges("j", 5),
        ("                    wv = a1[o, ci, i, j]", ""),
        ("                    for oh in range(rlo, rhi):", ""),
        ("                        grow = a0[b, o, oh, clo:chi]", ""),
        ("                        xrow = out[b, first + ci, oh * sh + r0, clo * sw + c0:]", ""),
        ("                        for t in range(grow.shape[0]):", ""),
        ("                            xrow[t * sw] += wv * grow[t]", op.describe()),
    ]
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


def conv2d_filter_grad_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``dw[o, c, i, j] = sum over b, oh, ow of g[b, o, oh, ow] * x[b, c, tap]``."""
    op = lp.ops[kernel.root]
    body = _conv_header(op.attrs) + [
        ("n_out, cg, kh, kw = out.shape", ""),
        ("n_img, h, wd = a0.shape[0], a0.shape[2], a0.shape[3]", ""),
        ("oh_n, ow_n = a1.shape[2], a1.shape[3]", ""),
        ("og = n_out // groups", ""),
        ("for o in range(n_out):", ""),
        ("    first = (o // og) * cg", ""),
        ("    for ci in range(cg):", ""),
        ("        for i in range(kh):", ""),
        *_tap_ranges("i", 3),
        ("            for j in range(kw):", ""),
        *_tap_ranges("j", 4),
        ("                acc = 0.0", ""),
        ("                for b in range(n_img):", ""),
        ("                    for oh in range(rlo, rhi):", ""),
        ("                        grow = a1[b, o, oh, clo:chi]", ""),
        ("                        xrow = a0[b, first + ci, oh * sh + r0, clo * sw + c0:]", ""),
        ("                        for t in range(grow.shape[0]):", ""),
        ("                            acc += grow[t] * xrow[t * sw]", ""),
        ("                out[o, ci, i, j] = acc", op.describe()),
    ]
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


# ---------------------------------------------------------------- im2col, col2im


def _columns_header(attrs: dict) -> Lines:
    """Geometry of an im2col/col2im op (passes/convolution.py), with ``oh_n, ow_n`` computed
    from the image ``img`` (``a0`` or ``out``) so that the text holds no size."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    kh, kw = attrs["kernel"]
    return [(f"sh, sw, pt, pb, pl, pr, dh, dw = {sh}, {sw}, {pt}, {pb}, {pl}, {pr}, {dh}, {dw}",
             ""),
            (f"kh, kw = {kh}, {kw}", ""),
            ("n_img, chans, h, wd = img.shape", ""),
            ("oh_n = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1", ""),
            ("ow_n = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1", "")]


def _column_loops(statements: Lines) -> Lines:
    """For every image, channel and tap (row ``col`` of the ``[C*kh*kw, N*OH*OW]`` columns)
    and every output row ``oh`` whose tap row ``r`` is inside the image: ``statements``, with
    ``row0`` the position of ``(b, oh, 0)`` along the columns and ``[clo, chi)`` the output
    columns whose tap is inside."""
    head = [
        ("for b in range(n_img):", ""),
        ("    for c in range(chans):", ""),
        ("        for i in range(kh):", ""),
        *_tap_ranges("i", 3),
        ("            for j in range(kw):", ""),
        *_tap_ranges("j", 4),
        ("                col = (c * kh + i) * kw + j", ""),
        ("                for oh in range(rlo, rhi):", ""),
        ("                    row0 = (b * oh_n + oh) * ow_n", ""),
        ("                    r = oh * sh + r0", ""),
    ]
    return head + _indent(statements, 5)


def im2col_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """``out[(c, i, j), (b, oh, ow)] = x[b, c, tap]``: zeros first where there is padding,
    then every tap inside the image. Both sides are walked along rows: at stride 1 the inner
    loop is a contiguous copy and vectorises."""
    op = lp.ops[kernel.root]
    padded = any(p for pair in op.attrs["padding"] for p in pair)
    body = [("img = a0", "")] + _columns_header(op.attrs) + (_zero() if padded else [])
    body += _column_loops([
        ("crow = out[col, row0 + clo:row0 + chi]", ""),
        ("xrow = a0[b, c, r, clo * sw + c0:]", ""),
        ("for t in range(crow.shape[0]):", ""),
        ("    crow[t] = xrow[t * sw]", op.describe()),
    ])
    return KernelText(["a0", "out"], body, list(op.inputs))


def col2im_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """The transpose of ``im2col``: each column added back where it was read, into a zeroed
    ``out`` ``[N, C, H, W]``."""
    op = lp.ops[kernel.root]
    body = [("img = out", "")] + _columns_header(op.attrs) + _zero() + _column_loops([
        ("crow = a0[col, row0 + clo:row0 + chi]", ""),
        ("xrow = out[b, c, r, clo * sw + c0:]", ""),
        ("for t in range(crow.shape[0]):", ""),
        ("    xrow[t * sw] += crow[t]", op.describe()),
    ])
    return KernelText(["a0", "out"], body, list(op.inputs))


# ---------------------------------------------------------------- pooling


def _pool_header(attrs: dict, pooled: str) -> Lines:
    """Geometry, and loops over every window of the pooled array named ``pooled``, with the
    window's rows ``[rlo, rhi)`` and columns ``[clo, chi)`` inside the input ``a0``."""
    (kh, kw), (sh, sw), ((pt, _), (pl, _)) = attrs["kernel"], attrs["stride"], attrs["padding"]
    return [
        (f"kh, kw, sh, sw, pt, pl = {kh}, {kw}, {sh}, {sw}, {pt}, {pl}", ""),
        (f"n_img, chans, oh_n, ow_n = {pooled}.shape", ""),
        ("h, wd = a0.shape[2], a0.shape[3]", ""),
        ("for b in range(n_img):", ""),
        ("    for c in range(chans):", ""),
        ("        for oh in range(oh_n):", ""),
        ("            rlo = max(oh * sh - pt, 0)", ""),
        ("            rhi = min(oh * sh - pt + kh, h)", ""),
        ("            for ow in range(ow_n):", ""),
        ("                clo = max(ow * sw - pl, 0)", ""),
        ("                chi = min(ow * sw - pl + kw, wd)", ""),
    ]


def _window_loop(statements: Lines, depth: int = 4) -> Lines:
    head = [("for ih in range(rlo, rhi):", ""), ("    for iw in range(clo, chi):", "")]
    return _indent(head, depth) + _indent(statements, depth + 2)


def _window_max(depth: int = 4) -> Lines:
    """``top``: the window's maximum, NaN-propagating like numpy; ``ties``: how many equal it."""
    lines = _indent([("top = -np.inf", "")], depth)
    lines += _window_loop([("v = a0[b, c, ih, iw]", ""),
                           ("if v > top or v != v:", ""), ("    top = v", "")], depth)
    lines += _indent([("ties = 0", "")], depth)
    lines += _window_loop([("if a0[b, c, ih, iw] == top:", ""), ("    ties += 1", "")], depth)
    return lines


def max_pool2d_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """The maximum of each window (padding never wins: it is not read)."""
    op = lp.ops[kernel.root]
    if _tiled(op.attrs):
        body = _tile_header(op.attrs, "out", ["o2 = out[b, c]"]) + _tile_max()
        body += _indent([("o2[oh, ow] = top", op.describe())], 4)
        return KernelText(["a0", "out"], body, list(op.inputs))
    body = _pool_header(op.attrs, "out") + _indent([("top = -np.inf", "")], 4)
    body += _window_loop([("v = a0[b, c, ih, iw]", ""),
                          ("if v > top or v != v:", ""), ("    top = v", "")])
    body += _indent([("out[b, c, oh, ow] = top", op.describe())], 4)
    return KernelText(["a0", "out"], body, list(op.inputs))


def max_pool2d_grad_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Each ``g`` element split equally between its window's tied maxima, into zeroed ``out``."""
    op = lp.ops[kernel.root]
    if _tiled(op.attrs):
        return _tiled_max_pool2d_grad(lp, kernel)
    body = _zero() + _pool_header(op.attrs, "a1") + _window_max()
    body += _indent([("share = a1[b, c, oh, ow] / max(ties, 1)", "")], 4)
    body += _window_loop([("if a0[b, c, ih, iw] == top:", ""),
                          ("    out[b, c, ih, iw] += share", op.describe())])
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


def max_pool2d_gather_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Per window of ``x``: the mean of ``v`` over the window's tied maxima."""
    op = lp.ops[kernel.root]
    if _tiled(op.attrs):
        body = _tile_header(op.attrs, "out", ["v2 = a1[b, c]", "o2 = out[b, c]"]) + _tile_max()
        body += _indent([("total = 0.0", "")], 4)
        body += _tile_loop([("if xrow[q + j] == top:", ""), ("    total += vrow[q + j]", "")],
                           ["vrow = v2[r + i]"])
        body += _indent([("o2[oh, ow] = total / max(ties, 1)", op.describe())], 4)
        return KernelText(["a0", "a1", "out"], body, list(op.inputs))
    body = _pool_header(op.attrs, "out") + _window_max() + _indent([("total = 0.0", "")], 4)
    body += _window_loop([("if a0[b, c, ih, iw] == top:", ""),
                          ("    total += a1[b, c, ih, iw]", "")])
    body += _indent([("out[b, c, oh, ow] = total / max(ties, 1)", op.describe())], 4)
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


# Non-overlapping windows (stride == kernel, no padding): every input element lies in at most
# one window, so the gradient is written once per element (no zeroed buffer, no ``+=``), and
# each window is read through 2-d views of its image plane, its first element seeding the
# maximum in the input's dtype. benchmarks/bench_pool.py measures both paths.


TILED_POOLING = True  # False: every pooling op takes the general path (for benchmarks)


def _tiled(attrs: dict) -> bool:
    """True for non-overlapping pooling windows: stride equal to the kernel, no padding."""
    padded = any(p for pair in attrs["padding"] for p in pair)
    return TILED_POOLING and tuple(attrs["stride"]) == tuple(attrs["kernel"]) and not padded


def _tile_header(attrs: dict, pooled: str, planes: list[str],
                 rows: Lines | None = None) -> Lines:
    """Loops over every window of ``pooled``, with ``x2`` (and ``planes``) the image planes
    of ``(b, c)``, ``(r, q)`` the window's first row and column; ``rows`` run once per row of
    windows (at depth 4)."""
    kh, kw = attrs["kernel"]
    lines = [
        (f"kh, kw = {kh}, {kw}", ""),
        (f"n_img, chans, oh_n, ow_n = {pooled}.shape", ""),
        ("h, wd = a0.shape[2], a0.shape[3]", ""),
        ("for b in range(n_img):", ""),
        ("    for c in range(chans):", ""),
        ("        x2 = a0[b, c]", ""),
        *[("        " + plane, "") for plane in planes],
    ]
    return lines + [("        for oh in range(oh_n):", ""), ("            r = oh * kh", ""),
                    *(rows or []), ("            for ow in range(ow_n):", ""),
                    ("                q = ow * kw", "")]


def _tile_loop(statements: Lines, rows: tuple[str, ...] | list[str] = ()) -> Lines:
    """``statements`` for every element ``xrow[q + j]`` of the window at ``(r, q)``."""
    head = [("for i in range(kh):", ""), ("    xrow = x2[r + i]", "")]
    head += [("    " + row, "") for row in rows] + [("    for j in range(kw):", "")]
    return _indent(head, 4) + _indent(statements, 6)


def _tile_max() -> Lines:
    """``top``, the window's maximum (NaN-propagating), and ``ties``, how many equal it."""
    lines = _indent([("top = x2[r, q]", "")], 4)
    lines += _tile_loop([("v = xrow[q + j]", ""), ("if v > top or v != v:", ""),
                         ("    top = v", "")])
    lines += _indent([("ties = 0", "")], 4)
    return lines + _tile_loop([("if xrow[q + j] == top:", ""), ("    ties += 1", "")])


def _tiled_max_pool2d_grad(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """The gradient for non-overlapping windows: ``share`` or 0 written once per element;
    rows and columns that no window covers are zeroed."""
    op = lp.ops[kernel.root]
    bottom = ["g2 = a1[b, c]", "o2 = out[b, c]", "for t in range(oh_n * kh, h):",
              "    for u in range(wd):", "        o2[t, u] = 0"]
    right = [("for i in range(kh):", ""), ("    orow = o2[r + i]", ""),
             ("    for t in range(ow_n * kw, wd):", ""), ("        orow[t] = 0", "")]
    body = _tile_header(op.attrs, "a1", bottom, _indent(right, 3)) + _tile_max()
    share = "share = 0.0 + g2[oh, ow] / max(ties, 1)"  # 0 + as the general path: -0.0 -> 0.0
    body += _indent([(share, "")], 4)
    body += _tile_loop([("orow[q + j] = share if xrow[q + j] == top else 0", op.describe())],
                       ["orow = o2[r + i]"])
    return KernelText(["a0", "a1", "out"], body, list(op.inputs))


def avg_pool2d_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """The sum of each window's inputs over ``kh * kw`` (padding counts as zeros)."""
    op = lp.ops[kernel.root]
    body = _pool_header(op.attrs, "out") + _indent([("total = 0.0", "")], 4)
    body += _window_loop([("total += a0[b, c, ih, iw]", "")])
    body += _indent([("out[b, c, oh, ow] = total / (kh * kw)", op.describe())], 4)
    return KernelText(["a0", "out"], body, list(op.inputs))


def avg_pool2d_grad_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """Each ``g`` element over ``kh * kw``, added to every input its window covers."""
    op = lp.ops[kernel.root]
    # a0 is g here; the header reads the input's size from out, so name it a0's shape first.
    header = _pool_header(op.attrs, "a0")
    header[2] = ("h, wd = out.shape[2], out.shape[3]", "")
    body = _zero() + header + _indent([("share = a0[b, c, oh, ow] / (kh * kw)", "")], 4)
    body += _window_loop([("out[b, c, ih, iw] += share", op.describe())])
    return KernelText(["a0", "out"], body, list(op.inputs))


# Ops whose kernel runs its loop over the images under ``prange`` (each image writes only its
# own part of ``out``). Empty: see ``benchmarks/bench_conv_prange.py`` and docs/convolutions.md
# for the measurement on the 2-core machine.
BATCH_PARALLEL: set[str] = set()
# The ops whose image loop may run in parallel (the filter gradient sums over the images).
_IMAGE_PARALLEL_SAFE = frozenset({
    "conv2d", "conv2d_input_grad", "max_pool2d", "max_pool2d_grad", "max_pool2d_gather",
    "avg_pool2d", "avg_pool2d_grad", "im2col", "col2im"})


def _batch_loop(writer: Callable[[LoweredProgram, Kernel], KernelText]
                ) -> Callable[[LoweredProgram, Kernel], KernelText]:
    """``writer``, with the image loop under ``prange`` for the ops in ``BATCH_PARALLEL``."""
    def write(lp: LoweredProgram, kernel: Kernel) -> KernelText:
        text = writer(lp, kernel)
        name = lp.ops[kernel.root].op
        if name in BATCH_PARALLEL and name in _IMAGE_PARALLEL_SAFE:
            loop = "for b in range(n_img):"
            text.body = [(line.replace(loop, "for b in prange(n_img):"), note) if
                         line.startswith(loop) else (line, note) for line, note in text.body]
            text.parallel = True
        return text
    return write


WRITERS = {name: _batch_loop(writer) for name, writer in {
    "conv2d": conv2d_kernel,
    "conv2d_input_grad": conv2d_input_grad_kernel,
    "conv2d_filter_grad": conv2d_filter_grad_kernel,
    "max_pool2d": max_pool2d_kernel,
    "max_pool2d_grad": max_pool2d_grad_kernel,
    "max_pool2d_gather": max_pool2d_gather_kernel,
    "avg_pool2d": avg_pool2d_kernel,
    "avg_pool2d_grad": avg_pool2d_grad_kernel,
    "im2col": im2col_kernel,
    "col2im": col2im_kernel,
}.items()}
