"""The immutable node of a graph, and where in the user's code it was made."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from graphcomp.ir.dims import Shape

if TYPE_CHECKING:
    from graphcomp.ir.graph import Graph

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_source_line() -> str:
    """``file:line`` of the innermost stack frame outside the graphcomp package."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR + os.sep):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


# Which pass made a node: the user's forward computation, or an adjoint (VJP) rule.
NodeRole = Literal["forward", "adjoint"]


@dataclass(frozen=True, eq=False)
class Node:
    """One operation in a graph. Compared and hashed by identity.

    ``role`` is ``"forward"`` or ``"adjoint"``; an adjoint node's ``forward_of`` is the id of the
    forward node whose VJP rule made it.
    """

    id: int
    op: str
    inputs: tuple[Node, ...]
    attrs: MappingProxyType
    shape: Shape
    dtype: np.dtype
    graph: Graph = field(repr=False)
    name: str | None = None
    source: str = "<unknown>"
    role: NodeRole = "forward"
    forward_of: int | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def label(self) -> str:
        """``%7`` or ``%7 "loss"``: how listings and error messages refer to the node."""
        return f'%{self.id} "{self.name}"' if self.name else f"%{self.id}"

    def describe(self) -> str:
        """A one-phrase description for error messages: op, label and source line."""
        return f"{self.op} {self.label()} (created at {self.source})"


def freeze_attrs(attrs: dict[str, Any]) -> MappingProxyType:
    """A read-only view of an op's attributes; numpy arrays among them are made read-only."""
    frozen = {}
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.setflags(write=False)
        elif isinstance(value, list):
            value = tuple(value)
        frozen[key] = value
    return MappingProxyType(frozen)
