"""numpy functions built from primitives (graphcomp/ops/composites.py).

Each case is one expression written once against a module ``m``: run with ``m = numpy`` on
arrays it is the reference, with ``m = graphcomp`` on tensors it builds the graph. So every
composite is checked for numpy's name and argument names, values (numpy backend), float64
finite-difference gradients, numba equal to numpy, and that numpy's own function on a tensor
reaches it (``np.var(t)`` is ``gc.var(t)``).
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import composites
from graphcomp.testing.cases import Case, check_gradient, check_value, on_both_backends, operands

NON_FINITE = np.array([np.inf, -np.inf, np.nan, 0.0, 1.0])  # nan_to_num's gradient is 0 there

CASES: dict[str, Case] = {
    "var": Case(lambda m, x: m.var(x), ((3, 4),)),
    "var axis ddof": Case(lambda m, x: m.var(x, axis=1, ddof=1, keepdims=True), ((3, 4),)),
    "std": Case(lambda m, x: m.std(x, axis=0), ((3, 4),)),
    "log2": Case(lambda m, x: m.log2(x), ((3, 4),), 0.2, 3.0),
    "log10": Case(lambda m, x: m.log10(x), ((3, 4),), 0.2, 3.0),
    "exp2": Case(lambda m, x: m.exp2(x), ((3, 4),)),
    "reciprocal": Case(lambda m, x: m.reciprocal(x), ((3, 4),), 0.5, 2.0),
    "logaddexp": Case(lambda m, a, b: m.logaddexp(a, b * 30.0), ((3, 4), (3, 4))),
    "logaddexp2": Case(lambda m, a, b: m.logaddexp2(a, b), ((3, 4), (4,))),
    "tan": Case(lambda m, x: m.tan(x), ((3, 4),), -1.2, 1.2),
    "sinh": Case(lambda m, x: m.sinh(x * 1e-3) + m.sinh(x), ((3, 4),)),
    "cosh": Case(lambda m, x: m.cosh(x), ((3, 4),)),
    "deg2rad, rad2deg": Case(lambda m, x: m.deg2rad(x * 90.0) + m.rad2deg(x), ((3, 4),)),
    "swapaxes": Case(lambda m, x: m.swapaxes(x, 0, 2), ((2, 3, 4),)),
    "moveaxis": Case(lambda m, x: m.moveaxis(x, 0, -1), ((2, 3, 4),)),
    "moveaxis several": Case(lambda m, x: m.moveaxis(x, [0, 1], [2, 0]), ((2, 3, 4),)),
    "atleast_1d": Case(lambda m, x: m.atleast_1d(x) * 2.0, ((),)),
    "atleast_2d": Case(lambda m, x: m.atleast_2d(x), ((4,),)),
    "atleast_3d": Case(lambda m, x, y: m.atleast_3d(x) * m.atleast_3d(y)[..., :1],
                       ((4,), (3, 4))),
    "hstack": Case(lambda m, x, y: m.hstack([x, y]), ((3, 4), (3, 2))),
    "vstack": Case(lambda m, x, y: m.vstack([x, y]), ((4,), (2, 4))),
    "outer": Case(lambda m, a, b: m.outer(a, b), ((3,), (4,))),
    "tril": Case(lambda m, x: m.tril(x), ((2, 4, 4),)),
    "triu": Case(lambda m, x: m.triu(x, 1), ((3, 5),)),
    "trace": Case(lambda m, x: m.trace(x, 1), ((4, 5),)),
    "diff": Case(lambda m, x: m.diff(x, 2, axis=0), ((5, 3),)),
    "ravel": Case(lambda m, x: m.ravel(x), ((2, 3, 4),)),
    "flip": Case(lambda m, x: m.flip(x, (0, 2)) + m.flip(x), ((2, 3, 4),)),
    "fliplr, flipud": Case(lambda m, x: m.fliplr(x) * m.flipud(x), ((3, 3),)),
    "rot90": Case(lambda m, x: m.rot90(x) + m.rot90(x, 2) + m.rot90(x, -1, (1, 0)), ((4, 4),)),
    "roll": Case(lambda m, x: m.roll(x, 2, axis=1) * m.roll(x, -1), ((3, 4),)),
    "repeat": Case(lambda m, x: m.repeat(x, 2, axis=0) + m.repeat(x, [1, 0, 3], axis=1)[:1, :3],
                   ((3, 3),)),
    "tile": Case(lambda m, x: m.tile(x, (2, 1, 3)), ((2, 3),)),
    "rollaxis": Case(lambda m, x: m.rollaxis(x, 2) + m.rollaxis(x, 0, 3).transpose(2, 0, 1),
                     ((3, 3, 3),)),
    "diagonal": Case(lambda m, x: m.diagonal(x, 1, 0, 2), ((3, 2, 4),)),
    "diag": Case(lambda m, v, x: m.diag(v, -1)[:3, :3] + m.diag(m.diag(x, 1)), ((3,), (3, 4))),
    "column_stack": Case(lambda m, v, x: m.column_stack([v, x, v]), ((3,), (3, 2))),
    "append": Case(lambda m, x, y: m.append(x, y, axis=0) + 0.0 * m.append(x, y)[0], ((2, 3),
                                                                                      (1, 3))),
    "split": Case(lambda m, x: m.split(x, 2, axis=1)[1].sum() * m.split(x, [1, 3])[1],
                  ((3, 4),)),
    "array_split": Case(lambda m, x: m.array_split(x, 3, axis=1)[0], ((2, 5),)),
    "hsplit": Case(lambda m, x: m.hsplit(x, 2)[0], ((2, 2, 3),)),
    "vsplit": Case(lambda m, x: m.vsplit(x, 2)[1], ((2, 2, 3),)),
    "dsplit": Case(lambda m, x: m.dsplit(x, [1])[1], ((2, 2, 3),)),
    "pad edge": Case(lambda m, x: m.pad(x, ((1, 2), (2, 0)), mode="edge"), ((3, 4),)),
    "pad reflect": Case(lambda m, x: m.pad(x, 2, "reflect"), ((3, 4),)),
    "pad symmetric": Case(lambda m, x: m.pad(x, ((0, 0), (3, 1)), "symmetric"), ((2, 3),)),
    "pad wrap": Case(lambda m, x: m.pad(x, (2, 5), mode="wrap"), ((4,),)),
    "pad constant": Case(lambda m, x: m.pad(x, 1, "constant", constant_values=2.5), ((2, 3),)),
    "select": Case(lambda m, x: m.select([x < -1.0, x > 1.0], [-x, x * x], x * 0.5), ((3, 4),)),
    "round": Case(lambda m, x: m.round(x * 10.0) + m.round(x, 2) + m.round(x * 100.0, -1),
                  ((3, 4),)),
    "nan_to_num": Case(lambda m, x: m.nan_to_num(x + NON_FINITE, nan=-1.0, posinf=5.0,
                                                 neginf=-3.0), ((4, 5),)),
}


@pytest.fixture(scope="module")
def numba_results() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return on_both_backends(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_matches_numpy(name: str):
    check_value(CASES[name], atol=1e-14)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name: str):
    check_gradient(CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_matches_numpy(name: str, numba_results):
    on_numba, on_numpy = numba_results[name]
    np.testing.assert_allclose(on_numba, on_numpy, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", [n for n, f in vars(composites).items() if n in gc.__all__
                                  and getattr(f, "__module__", "") == composites.__name__])
def test_numpy_function_on_a_tensor_reaches_the_composite(name: str):
    cases = [c for c in CASES.values() if f"m.{name}(" in _source(c)]
    assert cases, f"gc.{name} has no case in CASES"
    case = cases[0]
    with gc.Graph():
        inputs = [gc.placeholder(s, "float64", name=f"x{k}") for k, s in enumerate(case.shapes)]
        via_numpy = case.expression(np, *inputs)
        direct = case.expression(gc, *inputs)
        f = gc.compile(inputs, [via_numpy, direct], backend="numpy")
    a, b = f(*operands(case))
    np.testing.assert_array_equal(a, b)


def _source(case: Case) -> str:
    import inspect

    return inspect.getsource(case.expression)


def test_errors_name_what_is_wrong():
    with gc.Graph():
        x = gc.placeholder((None, 4), "float64", name="x")
        with pytest.raises(gc.ShapeError, match="static sizes"):
            gc.tril(gc.transpose(x))
        with pytest.raises(gc.ShapeError, match="vectors"):
            gc.outer(x, x)
        with pytest.raises(gc.ShapeError, match="source axes"):
            gc.moveaxis(x, [0, 1], [0])


def test_tensor_methods_numpy_code_calls():
    with gc.Graph():
        x = gc.placeholder((2, 1, 3), "float64", name="x")
        n = gc.placeholder((None, 64), "float64", name="n")
        f = gc.compile([x], [x.ravel(), x.flatten(), x.squeeze(), x.squeeze(1)],
                       backend="numpy")
        assert (len(x), x.size, n.size) == (2, 6, "N*64")
        with pytest.raises(TypeError, match="symbolic 'N'"):
            len(n)
    value = np.arange(6.0).reshape(2, 1, 3)
    for got, expected in zip(f(value), [value.ravel(), value.flatten(), value.squeeze(),
                                        value.squeeze(1)], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_pad_mode_errors_name_the_problem():
    with gc.Graph():
        x = gc.placeholder((None, 4), "float64", name="x")
        with pytest.raises(gc.ShapeError, match="mode 'median' is not one of"):
            gc.pad(x, 1, "median")
        with pytest.raises(gc.ShapeError, match="static, non-empty axis 0"):
            gc.pad(x, 1, "edge")
        assert gc.pad(x, ((0, 0), (1, 1)), "edge").shape == ("N", 6)
