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
from graphcomp.ir.graph import Graph, ImplicitUpdate, current_graph, reset_default_graph
from graphcomp.ir.node import Node, NodeRole, user_source_line
from graphcomp.ir.scope import current_scope, name_scope, scoped_name

__all__ = [
    "Dim",
    "DimMismatch",
    "DimTable",
    "Graph",
    "ImplicitUpdate",
    "Node",
    "NodeRole",
    "Shape",
    "SymDim",
    "current_graph",
    "current_scope",
    "dim_factors",
    "dim_value",
    "is_static",
    "make_dim",
    "multiply",
    "name_scope",
    "reset_default_graph",
    "scoped_name",
    "shape_str",
    "static_shape",
    "user_source_line",
]
