"""Graph IR: immutable nodes, symbolic shapes and the networkx-backed graph. Knows no op."""

from graphcomp.ir.dims import (
    Dim,
    DimMismatch,
    DimTable,
    Shape,
    SymDim,
    dim_factors,
    dim_value,
    is_static,
    make_dim,
    multiply,
    shape_str,
    static_shape,
)
from graphcomp.ir.graph import Graph, current_graph, reset_default_graph
from graphcomp.ir.node import Node, NodeRole, user_source_line

__all__ = [
    "Dim",
    "DimMismatch",
    "DimTable",
    "Graph",
    "Node",
    "NodeRole",
    "Shape",
    "SymDim",
    "current_graph",
    "dim_factors",
    "dim_value",
    "is_static",
    "make_dim",
    "multiply",
    "reset_default_graph",
    "shape_str",
    "static_shape",
    "user_source_line",
]
