"""The op registry: one entry per primitive, holding everything graphcomp knows about it.

An entry holds the shape/dtype rule, the numpy reference implementation (the oracle every
backend is tested against), the VJP rule, an optional JVP rule, kernel templates per backend,
and sample inputs that the registry-generated tests use. Adding an op touches one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class OpDef:
    """Everything about one primitive op."""

    name: str
    kind: str  # "source", "elementwise", "reduction", "structural", "index", "linalg"
    infer: ShapeRule
    numpy_impl: NumpyImpl
    vjp: VJPRule | None = None
    jvp: Callable[..., Any] | None = None
    differentiable: bool = True  # False: explicitly registered as having no gradient
    kernels: dict[str, Any] = field(default_factory=dict)
    samples: SampleMaker | None = None
    doc: str = ""

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
