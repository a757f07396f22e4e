"""Convolutions as im2col + GEMM (passes/convolution.py) on the numba backend.

The numpy meaning of the two backend ops is checked against the registry's conv2d (the
oracle) and as each other's transpose; the rewrite is checked structurally (what runs as
im2col, what stays direct, what common subexpression elimination shares), and a small
training step runs with every convolution forced each way against the numpy backend.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.backend import prepare
from graphcomp.errors import CompileError
from graphcomp.ops import get_op
from graphcomp.passes import convolution as C
from graphcomp.runtime.program import build_program

RNG = np.random.default_rng(3)
GEOMETRIES = [  # stride, padding, dilation, kernel
    ((1, 1), ((1, 1), (1, 1)), (1, 1), (3, 3)),
    ((2, 1), ((1, 0), (2, 1)), (1, 2), (2, 3)),
    ((1, 2), ((0, 0), (0, 0)), (2, 1), (3, 2)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_columns_times_the_filter_is_the_registry_conv2d(geometry: tuple) -> None:
    stride, padding, dilation, kernel = geometry
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "kernel": kernel}
    x = RNG.standard_normal((2, 3, 7, 8))
    w = RNG.standard_normal((4, 3, *kernel))
    conv_attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": 1}
    cols = C.im2col_reference(x, attrs)
    oh, ow = ((size + sum(pad) - d * (k - 1) - 1) // s + 1
              for size, pad, d, k, s in zip((7, 8), padding, dilation, kernel, stride, strict=True))
    want = get_op("conv2d").numpy_impl([x, w], conv_attrs, (2, 4, oh, ow))
    n, o = 2, 4
    got = (w.reshape(4, -1) @ cols).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # col2im is im2col's transpose: <im2col(x), c> == <x, col2im(c)>
    c = RNG.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, C.col2im_reference(c, attrs, x.shape)),
                               rtol=1e-12)


def _layer(channels: int, kernel: int, width: int = 6) -> tuple:
    x = gc.placeholder((None, channels, 6, width), "float64", name="x")
    w = gc.parameter(RNG.standard_normal((4, channels, kernel, kernel)), name="w")
    loss = gc.sum(gc.tanh(gc.nn.conv2d(x, w, padding="same")))
    gx, gw = gc.grad(loss, [x, w])
    return build_program([x], [loss, gx, gw])


def _ops(program, conv: str) -> list[str]:
    lp, _, _ = prepare(program, conv)
    return [op.op for op in lp.ops.values()]


def test_auto_sends_long_reductions_to_im2col_and_short_ones_to_direct_loops() -> None:
    with gc.Graph():
        long = _layer(channels=3, kernel=3)  # C*k*k = 27
        short = _layer(channels=1, kernel=3, width=20)  # C*k*k = 9, rows 20 wide
        narrow = _layer(channels=1, kernel=3)  # C*k*k = 9, rows 6 wide
    ops = _ops(long, "auto")
    # the forward and the filter gradient share one im2col; the gradient rows are one copy
    assert ops.count("im2col") == 1 and ops.count("col2im") == 1 and ops.count("matmul") == 3
    assert not {"conv2d", "conv2d_input_grad", "conv2d_filter_grad"} & set(ops)
    assert "im2col" not in _ops(long, "direct") and "conv2d" in _ops(long, "direct")
    assert C.FILTER_GRAD_MIN_REDUCTION <= 9 < C.IM2COL_MIN_REDUCTION and C.DIRECT_MIN_WIDTH > 6
    # wide rows, short reduction: direct forward and input gradient, im2col filter gradient
    assert {"conv2d", "conv2d_input_grad", "im2col"} <= set(_ops(short, "auto"))
    assert "conv2d_filter_grad" not in _ops(short, "auto")
    assert "conv2d" not in _ops(narrow, "auto") and "conv2d" not in _ops(short, "im2col")


def test_grouped_convolutions_stay_direct() -> None:
    with gc.Graph():
        x = gc.placeholder((None, 4, 5, 5), "float64", name="x")
        w = gc.parameter(RNG.standard_normal((4, 2, 3, 3)), name="w")
        program = build_program([x], [gc.nn.conv2d(x, w, groups=2)])
    assert "conv2d" in _ops(program, "im2col")


def test_an_unknown_choice_is_a_compile_error() -> None:
    with gc.Graph():
        x = gc.placeholder((None, 1, 4, 4), "float64", name="x")
        w = gc.parameter(RNG.standard_normal((2, 1, 3, 3)), name="w")
        y = gc.nn.conv2d(x, w)
        with pytest.raises(CompileError, match="conv must be one of"):
            gc.compile([x], y, backend="numba", conv="fft")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_training_step_matches_numpy_with_either_kernel(dtype: str) -> None:
    tol = 1e-10 if dtype == "float64" else 2e-4
    with gc.Graph():
        x = gc.placeholder((None, 2, 7, 6), dtype, name="x")
        w1 = gc.parameter((RNG.standard_normal((5, 2, 3, 3)) * 0.3).astype(dtype), name="w1")
        b1 = gc.parameter(np.zeros(5, dtype), name="b1")
        w2 = gc.parameter((RNG.standard_normal((3, 5, 2, 2)) * 0.3).astype(dtype), name="w2")
        h = gc.relu(gc.nn.conv2d(x, w1, b1, padding="same"))  # bias + relu over the NCHW view
        h = gc.nn.conv2d(h, w2, stride=2, padding=((1, 0), (0, 1)), dilation=(1, 2))
        loss = gc.sum(h * h)
        params = [w1, b1, w2]
        outputs = [loss, *gc.grad(loss, [x, *params])]
        functions = {"numpy": gc.compile([x], outputs, backend="numpy")}
        for conv in ("direct", "im2col"):
            functions[conv] = gc.compile([x], outputs, backend="numba", conv=conv)
    assert "im2col" in functions["im2col"].source and "im2col" not in functions["direct"].source
    for batch in (3, 1, 0):
        feed = RNG.standard_normal((batch, 2, 7, 6)).astype(dtype)
        want = functions["numpy"](feed)
        for conv in ("direct", "im2col"):
            for k, (got, expected) in enumerate(zip(functions[conv](feed), want, strict=True)):
                scale = float(np.max(np.abs(expected), initial=1.0))
                np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale,
                                           err_msg=f"{conv}, batch {batch}, output {k}")


def test_the_columns_live_in_the_arena() -> None:
    with gc.Graph():
        program_graph = _layer(channels=3, kernel=3)
    from graphcomp.backends.numba.backend import generate_module

    _, _, module = generate_module(program_graph, conv="im2col")
    lines = [line for line in module.source.splitlines() if line.strip().startswith("im2col")]
    assert lines and all("= arena_float64[" in line for line in lines)


def test_images_under_prange_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """``conv_kernels.BATCH_PARALLEL`` (off by default): the image loops under prange give the
    serial kernels' results, im2col and direct conv alike, pooling on both of its paths."""
    from graphcomp.backends.numba import conv_kernels

    monkeypatch.setattr(conv_kernels, "BATCH_PARALLEL", set(conv_kernels._IMAGE_PARALLEL_SAFE))
    with gc.Graph():
        x = gc.placeholder((None, 2, 8, 7), "float64", name="x")
        w = gc.parameter(RNG.standard_normal((3, 2, 3, 3)) * 0.3, name="w")
        h = gc.nn.max_pool2d(gc.nn.conv2d(x, w, padding="same"), 2)  # non-overlapping
        h = gc.nn.max_pool2d(h, 3, stride=1, padding=1)  # the general path
        loss = gc.sum(h * h) + gc.sum(gc.nn.avg_pool2d(x, 2))
        outputs = [loss, *gc.grad(loss, [x, w])]
        want = gc.compile([x], outputs, backend="numpy")
        functions = [gc.compile([x], outputs, backend="numba", conv=conv)
                     for conv in ("direct", "im2col")]
    assert all("prange(n_img)" in f.source for f in functions)
    for batch in (3, 1, 0):
        feed = RNG.standard_normal((batch, 2, 8, 7))
        for f in functions:
            for got, expected in zip(f(feed), want(feed), strict=True):
                np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
