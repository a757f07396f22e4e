"""The op registry: one entry per primitive, saying what the op is.

An entry holds the shape/dtype rule, the numpy reference implementation (the oracle every
backend is tested against), the VJP rule (or ``differentiable=False``), an optional JVP rule
and sample inputs that the registry-generated tests use. It holds nothing about backends: each
backend keeps its own table of how it computes the ops (numba: ``backends/numba/op_table.py``).

Adding an op touches these places (``tests/ops/test_adding_an_op.py`` adds softsign from a
test file alone, as a worked example):

1. ``register(OpDef(...))`` next to its family (``elementwise.py``, ``reductions.py``, ...):
   shape rule, numpy implementation, VJP built from existing ops, samples, a one-line doc.
2. Its line in the numba op table. An elementwise op is a scalar template, naming the
   ``fastmath.py`` helper it calls, if any (``register_kernel(name, template, fastmath)`` from
   outside the package); any other op also needs its kernel code in ``backends/numba`` and its
   place in ``passes/fusion.py``.
3. A public function in ``functions.py`` that promotes its operands (primitives take one
   dtype), exported from ``graphcomp/__init__.py``, if users should call it.
4. The test side. Picked up without a change: ``tests/autodiff/test_registry_vjp.py`` (the VJP
   on every smooth sample against finite differences, first and second order) and
   ``tests/backends/test_numba_registry.py`` (numba against numpy, forward and gradient, on
   every sample). Failing until told: ``tests/ops/test_registry_numpy.py`` (a direct numpy
   formula in ``EXPECTED``, a bad input in ``BAD_INPUTS`` or the op in ``ACCEPTS_ANY_INPUT``)
   and ``tests/backends/test_numba_op_table.py`` (the table entry of step 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from graphcomp.ir import DimTable, Node, Shape

# (inputs, attrs, dims) -> (shape, dtype); raises ShapeError/DTypeError/DimMismatch.
ShapeRule = Callable[[Sequence[Node], dict[str, Any], DimTable], tuple[Shape, np.dtype]]
# (input arrays, attrs, concrete output shape) -> output array.
NumpyImpl = Callable[[Sequence[np.ndarray], dict[str, Any], tuple[int, ...]], np.ndarray]
# (cotangent, output, inputs, attrs) -> one gradient Tensor (or None for "no gradient") per input.
VJPRule = Callable[..., Sequence[Any]]
# (rng, dtype) -> list of Sample: inputs and attrs for the generated tests.
SampleMaker = Callable[[np.random.Generator, np.dtype], list["Sample"]]


@dataclass(frozen=True)
class Sample:
    """Inputs (numpy arrays) and attrs for one registry-generated test case."""

    args: tuple[np.ndarray, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    # Symbolic names for input dims, e.g. ({0: "N"}, {0: "N"}): the shape test declares these
    # placeholders with symbols instead of sizes.
    symbolic: tuple[dict[int, str], ...] = ()
    # Inputs the finite-difference test must not perturb (integer indices, say).
    smooth: bool = True


# What an op is, for the passes that group ops (fusion inlines elementwise ops, say).
OpKind = Literal[
    "source", "elementwise", "reduction", "structural", "index", "linalg", "random"
]


@dataclass
class OpDef:
    """Everything about one primitive op."""

    name: str
    kind: OpKind
    infer: ShapeRule
    numpy_impl: NumpyImpl
    vjp: VJPRule | None = None
    jvp: Callable[..., Any] | None = None
    differentiable: bool = True  # False: explicitly registered as having no gradient
    samples: SampleMaker | None = None
    doc: str = ""
    # The ufunc that ``numpy_impl`` applies to the inputs in order, where it is one: the
    # numpy backend's step list calls it directly (with ``out=`` a dead input's buffer).
    numpy_ufunc: np.ufunc | None = None

    def __post_init__(self) -> None:
        if self.differentiable and self.vjp is None and self.kind != "source":
            raise ValueError(f"op {self.name!r} is differentiable but has no VJP rule")


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add ``op`` to the registry (names are unique)."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} is registered twice")
    REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    """The registry entry for ``name``."""
    return REGISTRY[name]
