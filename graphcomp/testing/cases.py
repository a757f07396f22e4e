"""Test cases written once against a module ``m``: numpy gives the reference, graphcomp the graph.

A ``Case`` is an expression ``(m, *operands) -> result`` and the operands' shapes. Run with
``m = numpy`` on arrays it is the reference; with ``m = graphcomp`` on placeholders it builds
the graph, so one line checks a numpy-named function's name, argument names, values,
gradient and kernels. A ``"B"`` in a shape is a symbolic dim, bound to ``BATCH`` at call time.

>>> import numpy as np
>>> case = Case(lambda m, x: m.exp(x) * 2.0, ((2, "B"),))
>>> check_value(case); check_gradient(case)
>>> [a.shape for a in operands(case)]
[(2, 5)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from graphcomp.ir import Graph
from graphcomp.ops import Tensor
from graphcomp.ops.functions import placeholder
from graphcomp.runtime.function import compile as compile_function
from graphcomp.testing.gradcheck import check_grads

BATCH = 5


@dataclass(frozen=True)
class Case:
    """One expression and the shapes of its float64 operands (drawn from [low, high))."""

    expression: Callable  # (module, *operands) -> result
    shapes: tuple[tuple[int | str, ...], ...]
    low: float = -2.0
    high: float = 2.0


def operands(case: Case, seed: int = 0) -> list[np.ndarray]:
    """Random operands of the case's shapes."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(case.low, case.high, size=tuple(BATCH if isinstance(d, str) else d
                                                       for d in shape))
            for shape in case.shapes]


def build(case: Case, prefix: str = "x") -> tuple[list[Tensor], Tensor]:
    """Placeholders named ``{prefix}0``, ``{prefix}1``... and the case's graph over them."""
    inputs = [placeholder(s, "float64", name=f"{prefix}{k}") for k, s in enumerate(case.shapes)]
    return inputs, case.expression(_graphcomp(), *inputs)


def _graphcomp() -> object:
    import graphcomp

    return graphcomp


def check_value(case: Case, rtol: float = 1e-12, atol: float = 1e-12) -> None:
    """The numpy backend's value and shape equal numpy's."""
    with Graph():
        inputs, out = build(case)
        function = compile_function(inputs, [out], backend="numpy")
    arrays = operands(case)
    (value,) = function(*arrays)
    expected = case.expression(np, *arrays)
    assert np.shape(value) == np.shape(expected), (np.shape(value), np.shape(expected))
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=atol)


def check_gradient(case: Case) -> None:
    """The gradient equals float64 central differences."""
    with Graph():
        inputs, out = build(case)
        feed = dict(zip(inputs, operands(case, seed=1), strict=True))
        assert check_grads(out, inputs, feed, rtol=1e-6, atol=1e-7).passed


def on_both_backends(cases: Mapping[str, Case]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every case computed by one numba function and one numpy function: name -> (numba
    value, numpy value). One compile for all the cases."""
    with Graph():
        graphs = {name: build(case, f"case{i}_") for i, (name, case) in enumerate(cases.items())}
        inputs = [t for ins, _ in graphs.values() for t in ins]
        outputs = [out for _, out in graphs.values()]
        numba = compile_function(inputs, outputs, backend="numba")
        numpy = compile_function(inputs, outputs, backend="numpy")
    arrays = [a for case in cases.values() for a in operands(case)]
    return dict(zip(cases, zip(numba(*arrays), numpy(*arrays), strict=True), strict=True))
