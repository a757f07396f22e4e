"""Adding an op, worked through from outside the package: softsign(x) = x / (1 + |x|).

The fixture does what a new op needs (see "Adding an op" in docs/architecture.md): a registry
entry saying what softsign is (shape rule, numpy reference, VJP built from existing ops,
samples) and a numba op table entry saying how that backend computes it. The tests then check
values and gradients on both backends. The fixture removes both entries afterwards, so the
registry-generated tests elsewhere never see softsign.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import dtypes
from graphcomp.backends.numba.op_table import OP_TABLE, register_kernel
from graphcomp.errors import DTypeError
from graphcomp.ir import DimTable, Node
from graphcomp.ops import REGISTRY, OpDef, Sample, apply, register
from graphcomp.ops import functions as F

DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-6, "float64": 1e-12}


def _expected(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.abs(x))


def _rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"needs a float input, got {x.dtype} (cast it first)")
    return x.shape, x.dtype


def _numpy_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x = xs[0]
    return x / (x.dtype.type(1) + np.abs(x))


def _vjp(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    denominator = 1.0 + F.abs(ins[0])
    return [g / (denominator * denominator)]


def _samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    return [
        Sample((rng.standard_normal((3, 4)).astype(dtype),), symbolic=({0: "N"},)),
        Sample((rng.standard_normal(()).astype(dtype),)),
    ]


@pytest.fixture
def softsign() -> Iterator[str]:
    register(OpDef(name="softsign", kind="elementwise", infer=_rule, numpy_impl=_numpy_impl,
                   vjp=_vjp, samples=_samples, doc="elementwise x / (1 + |x|)"))
    try:
        # The numba template's operands are plain names; {dtype} keeps float32 in float32.
        register_kernel("softsign", "{0} / (np.{dtype}(1.0) + abs({0}))")
        yield "softsign"
    finally:
        REGISTRY.pop("softsign", None)
        OP_TABLE.pop("softsign", None)


def _compiled(op_name: str, dtype: str, backend: str) -> gc.Function:
    """(x, u) -> softsign(x) and d/dx sum(softsign(x) * u), for a batch of 4-vectors."""
    with gc.Graph():
        x = gc.placeholder((None, 4), dtype, name="x")
        u = gc.placeholder((None, 4), dtype, name="u")
        y = apply(op_name, x)
        (gx,) = gc.grad(gc.sum(y * u), [x])
        return gc.compile([x, u], [y, gx], backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_new_op_gives_the_formula_and_its_derivative(softsign: str, backend: str, dtype: str):
    rng = np.random.default_rng(3)
    xv = (rng.standard_normal((5, 4)) * 3).astype(dtype)
    uv = rng.standard_normal((5, 4)).astype(dtype)
    f = _compiled(softsign, dtype, backend)
    y, gx = f(xv, uv)
    assert y.dtype == gx.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, _expected(xv), rtol=RTOL[dtype])
    np.testing.assert_allclose(gx, uv / (1 + np.abs(xv)) ** 2, rtol=RTOL[dtype] * 10)


def test_the_numba_module_computes_it_with_its_template(softsign: str):
    f = _compiled(softsign, "float32", "numba")
    assert "/ (np.float32(1.0) + abs(" in f.source


def test_its_vjp_matches_finite_differences_on_its_samples(softsign: str):
    rng = np.random.default_rng(4)
    for sample in REGISTRY[softsign].samples(rng, np.dtype("float64")):
        (value,) = sample.args
        with gc.Graph():
            x = gc.placeholder(value.shape, value.dtype, name="x")
            out = apply(softsign, x)
        for order in (1, 2):
            gc.check_grads(out, [x], feed={x: value}, order=order)


def test_numba_gradient_matches_differences_of_numba_values(softsign: str):
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((2, 4)) * 2
    uv = rng.standard_normal((2, 4))
    f = _compiled(softsign, "float64", "numba")
    _, gx = f(xv, uv)
    eps = 1e-6
    numeric = np.zeros_like(xv)
    for index in np.ndindex(*xv.shape):
        step = np.zeros_like(xv)
        step[index] = eps
        numeric[index] = (np.sum(f(xv + step, uv)[0] * uv)
                          - np.sum(f(xv - step, uv)[0] * uv)) / (2 * eps)
    np.testing.assert_allclose(gx, numeric, rtol=1e-6, atol=1e-8)


def test_the_registry_entry_refuses_an_int_input(softsign: str):
    with gc.Graph():
        x = gc.placeholder((2,), "int32", name="x")
        with pytest.raises(gc.DTypeError, match="softsign"):
            apply(softsign, x)


def test_the_fixture_leaves_no_trace():
    assert "softsign" not in REGISTRY and "softsign" not in OP_TABLE
