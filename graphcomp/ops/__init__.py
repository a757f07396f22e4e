"""Ops: the primitive registry, the Tensor type and the public op functions.

Importing this package registers every primitive (one module per family).
"""

from graphcomp.ops.tensor import Parameter, Tensor, apply, as_tensor  # noqa: I001  (first: breaks the cycle)
from graphcomp.ops import functions
from graphcomp.ops import elementwise, indexing, linalg, reductions, scans, sources, structural
from graphcomp.ops import random_ops
from graphcomp.ops import convolution
from graphcomp.ops import sparse_updates  # noqa: F401  (registers the row-wise updates)
from graphcomp.ops.registry import REGISTRY, OpDef, OpKind, Sample, get_op, register

__all__ = [
    "REGISTRY",
    "OpDef",
    "OpKind",
    "Parameter",
    "Sample",
    "Tensor",
    "apply",
    "as_tensor",
    "convolution",
    "elementwise",
    "functions",
    "get_op",
    "indexing",
    "linalg",
    "random_ops",
    "reductions",
    "register",
    "scans",
    "sources",
    "structural",
]
