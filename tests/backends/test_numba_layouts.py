"""Layout choices of the numba backend: column-sum loops and copied transposes.

* A sum over every axis but the last loops that axis directly when it is a static size of at
  most ``REDUCE_CHUNK``, and in chunks of ``REDUCE_CHUNK`` otherwise (symbolic or longer).
* A 2-D transpose read as the right operand of at least ``COPY_TRANSPOSE_MIN_USES`` products
  is copied once by a kernel; with fewer such reads the products take a ``.T`` view.

Every graph is compiled by both backends and the numba results must match the numpy oracle;
the generated source must show the layout chosen.
"""

from __future__ import annotations

import ast
import itertools
import re

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.kernels import REDUCE_CHUNK
from graphcomp.passes.fusion import COPY_TRANSPOSE_MIN_USES

RTOL = {"float32": 1e-5, "float64": 1e-10}


def _top_level_args(text: str) -> list[str]:
    """``"a, f(b, c), 3"`` -> ``["a", "f(b, c)", "3"]``."""
    call = ast.parse(f"f({text})", mode="eval").body
    return [ast.get_source_segment(f"f({text})", arg) for arg in call.args]


def _column_sum_calls(source: str) -> list[tuple[str, bool]]:
    """(size passed for the kept last axis, whether the kernel loops it in chunks) for every
    call of a column-sum kernel (one taking ``out, scratch, n0, ...``) in the driver."""
    kernels, driver = source.split("# ---- driver")
    signatures = {m[1]: (m[2], m[3]) for m in re.finditer(
        r"^def (k\d+)\(([^)]*)\):\n(.*?)(?=^\S)", kernels, re.MULTILINE | re.DOTALL)}
    calls = []
    for name, args in re.findall(r"\b(k\d+)\((.*)\)  #", driver):
        params, body = signatures[name]
        params = [p.strip() for p in params.split(",")]
        if "scratch" not in params or "out" not in params:
            continue
        sizes = [p for p in params if re.fullmatch(r"n\d+", p)]
        given = dict(zip(params, _top_level_args(args), strict=True))
        calls.append((given[sizes[-1]], f"for start in range(0, {sizes[-1]}, " in body))
    return calls


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_column_sums_loop_short_static_axes_directly_and_chunk_the_others(dtype: str):
    rng = np.random.default_rng(11)
    widths = [100, REDUCE_CHUNK + 476, "K"]  # direct, chunked (static), chunked (symbolic)
    with gc.Graph():
        inputs, outputs, weights, losses = [], [], [], []
        for width in widths:
            x = gc.placeholder((4, width), dtype, name=f"x{width}")
            y = gc.placeholder((2, 3, width), dtype, name=f"y{width}")
            if width == "K":  # a parameter cannot be symbolic: a placeholder stands in for it
                w = gc.placeholder(("K",), dtype, name="wK")
                inputs.append(w)
            else:
                w = gc.parameter(rng.uniform(0.5, 1.5, width).astype(dtype), name=f"w{width}")
            inputs += [x, y]
            weights.append(w)
            fused = [gc.sum(gc.tanh(x * w) * 2 + 1, axis=0),
                     gc.sum(gc.tanh(y * w) * 2 + 1, axis=(0, 1))]
            losses.append(gc.sum(fused[0] * fused[0]) + gc.sum(fused[1] * fused[1]))
            outputs += [gc.sum(x, axis=0), gc.sum(y, axis=(0, 1)), *fused, losses[-1]]
        # The gradients sum over the leading axes again: more column sums, each path.
        outputs += gc.grad(losses[0] + losses[1] + losses[2], weights)
    fast = gc.compile(inputs, outputs, backend="numba")
    reference = gc.compile(inputs, outputs, backend="numpy")
    # Positive inputs keep every sum away from zero, so a relative tolerance suffices.
    feeds = [rng.uniform(0.1, 1.0, [777 if d == "K" else d for d in t.shape]).astype(dtype)
             for t in inputs]
    got, expected = fast(*feeds), reference(*feeds)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, e, rtol=RTOL[dtype])

    calls = _column_sum_calls(fast.source)
    assert {chunked for _, chunked in calls} == {True, False}
    for size_arg, chunked in calls:
        static = size_arg.isdigit() and int(size_arg) <= REDUCE_CHUNK
        assert chunked != static, (size_arg, chunked)
    passed = {size_arg for size_arg, _ in calls}
    assert {"100", str(widths[1])} <= passed and any(not a.isdigit() for a in passed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_transpose_read_by_many_products_is_copied_and_by_few_is_a_view(dtype: str):
    rng = np.random.default_rng(12)
    many, few = COPY_TRANSPOSE_MIN_USES, COPY_TRANSPOSE_MIN_USES - 1
    with gc.Graph():
        # A symbolic row count keeps the products apart (batching needs known row blocks).
        xs = [gc.placeholder(("B", 16), dtype, name=f"x{i}") for i in range(many)]
        w = gc.parameter((rng.standard_normal((12, 16)) * 0.3).astype(dtype), name="W")
        v = gc.parameter((rng.standard_normal((12, 16)) * 0.3).astype(dtype), name="V")
        hidden = [gc.tanh(x @ w.T) for x in xs] + [gc.tanh(x @ v.T) for x in xs[:few]]
        loss = sum((gc.sum(h * h) for h in hidden[1:]), gc.sum(hidden[0] * hidden[0]))
        outputs = [loss, *gc.grad(loss, [w, v]), *hidden]
    # The plan does not depend on the driver; the Python one compiles in a third of the time.
    fast = gc.compile(xs, outputs, backend="numba", driver_jit=False)
    reference = gc.compile(xs, outputs, backend="numpy")
    feeds = [rng.standard_normal((5, 16)).astype(dtype) for _ in xs]
    for got, expected in zip(fast(*feeds), reference(*feeds), strict=True):
        np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=RTOL[dtype])

    driver = fast.source.split("# ---- driver")[1].split("# ---- vectorisable")[0]
    rights = re.findall(r"(?:gemm_f\d\d|np\.dot)\(x_x\d+, ([^,]+), ", driver)
    assert rights.count("p_V.T") == few
    # W is copied once by a kernel and every forward product reads the copy.
    assert "p_W.T" not in driver
    copies = re.findall(r"\bk\d+\(p_W, (\w+)\)", driver)
    assert len(copies) == 1
    assert rights.count(copies[0]) == many


@pytest.mark.parametrize("driver_jit", [False, True])
@pytest.mark.parametrize(("sizes", "dtype"), [((1, 8, 1), "float64"), ((5, 6, 1, 6, 2), "float32")])
def test_layers_one_wide_and_a_batch_of_one_train_on_both_drivers(sizes, dtype, driver_jit):
    """The .T of an (n, 1) or (1, n) array is C- and F-contiguous at once and numba types it
    C: the eagerly compiled products must accept it (a one-feature regression, a width-1
    bottleneck, a batch of one)."""
    rng = np.random.default_rng(3)
    with gc.Graph():
        x = gc.placeholder((None, sizes[0]), dtype, name="x")
        y = gc.placeholder((None, sizes[-1]), dtype, name="y")
        params, h = [], x
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            w = gc.parameter((rng.standard_normal((fan_in, fan_out)) * 0.5).astype(dtype))
            b = gc.parameter(np.zeros(fan_out, dtype))
            params += [w, b]
            h = h @ w + b
            h = gc.tanh(h) if i < len(sizes) - 2 else h
        loss = gc.mean(gc.square(h - y))
        grads = gc.grad(loss, params)
    fast = gc.compile([x, y], [loss, *grads], backend="numba", driver_jit=driver_jit)
    reference = gc.compile([x, y], [loss, *grads], backend="numpy")
    for rows in (1, 3):
        feeds = [rng.standard_normal((rows, sizes[0])).astype(dtype),
                 rng.standard_normal((rows, sizes[-1])).astype(dtype)]
        for got, expected in zip(fast(*feeds), reference(*feeds), strict=True):
            np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
