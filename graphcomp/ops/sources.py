"""Source ops: the leaves of every graph. Backends read their values, they compute nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from graphcomp.ir import DimTable, Node
from graphcomp.ops.registry import OpDef, register


def _no_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> NoReturn:
    raise AssertionError("source nodes are created directly, not through apply()")


def _no_impl(xs: Sequence, attrs: dict, shape: tuple) -> NoReturn:
    raise AssertionError("backends read source nodes' values directly")


for _name, _doc in [
    ("placeholder", "an input fed at call time"),
    ("parameter", "trainable state kept in the graph's parameter storage"),
    ("constant", "a value fixed when the graph is built (attrs['value'])"),
]:
    register(OpDef(name=_name, kind="source", infer=_no_rule, numpy_impl=_no_impl, doc=_doc))

SOURCE_OPS = frozenset({"placeholder", "parameter", "constant"})
