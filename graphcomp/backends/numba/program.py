"""The program description: what a compiled step does, as records, before any text is written.

The stages of the numba backend fill these records in turn:

1. ``buffers.place_buffers``: every value's buffer (an arena slot, an input, a parameter, an
   alias of another buffer) as a ``Buffer``;
2. ``calls.choose_calls``: every kernel of the fusion plan as a ``Call`` of a deduplicated
   kernel (``KernelDef``) or of a BLAS helper, with typed ``Arg``s;
3. ``placement``: whether the driver is njit or Python, which buffers a Python
   driver makes once per binding, and which periodic runs of row-wise calls become row
   segments (``rows.py``);
4. ``render.render_module``: the module text. Only the renderer (and the kernel writers it
   calls) knows Python/Numba syntax, so another target can render the same records.

>>> Arg.array(7, "flat").view, Arg.size(("N", 4)).shape
('flat', ('N', 4))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from graphcomp.backends.numba.kernels import KernelText
from graphcomp.backends.numba.rows import Columns, RowCall, Run
from graphcomp.passes.lowered import Dim

# Where a buffer's memory comes from.
Home = Literal["input", "parameter", "constant", "slot", "in_place", "alias", "slice"]
# How a call receives an argument.
ArgKind = Literal["array", "size", "scalar", "special"]
# How an array argument is viewed: as declared, transposed (``.T`` of its base), flattened
# to 1-D, or with its leading axes merged into rows (an N-d operand of a 2-D product).
View = Literal["whole", "transposed", "flat", "matrix"]
# What a call runs.
Target = Literal["kernel", "gemm", "gemm_acc", "gemm_split", "copy", "dot"]
# The driver's form: one njit function, or Python calling the compiled kernels.
DriverKind = Literal["njit", "python"]
# What the runtime passes for each driver parameter.
ArgumentKind = Literal["input", "parameter", "lanes", "constant", "arena", "offsets", "dims",
                       "scratch"]
# An array's type for eager compilation: (dtype name, ndim, layout), or a scalar dtype name.
ArrayType = tuple[str, int, str]
ValueType = ArrayType | str


@dataclass(frozen=True)
class Buffer:
    """Where one value lives during a step.

    ``slot``: an arena slot (``home`` "slot"); ``source``: the value an alias views
    (reshaped), the parameter a value is written into (``in_place``), or the value a
    contiguous slice starts ``offset`` elements into (``slice``: (start, shape after its
    axis) terms)."""

    value: int
    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]
    home: Home
    slot: int | None = None
    source: int | None = None
    offset: tuple[tuple[int, tuple[Dim, ...]], ...] = ()
    comment: str = ""


@dataclass(frozen=True)
class Arg:
    """One argument of a call: an array value seen through a ``view``, an element count, a
    typed scalar, or one of the driver's own arrays (``special``: scratch, dims, lanes)."""

    kind: ArgKind
    value: int | None = None
    view: View = "whole"
    shape: tuple[Dim, ...] = ()  # "size": the shape whose element count is passed
    number: float = 0.0  # "scalar"
    dtype: str = ""  # "scalar"
    name: str = ""  # "special"
    flag: int | None = None  # gemm_split: the operand's transpose flag follows it

    @staticmethod
    def array(value: int, view: View = "whole") -> Arg:
        return Arg("array", value, view)

    @staticmethod
    def size(shape: tuple[Dim, ...]) -> Arg:
        return Arg("size", shape=tuple(shape))

    @staticmethod
    def scalar(number: float, dtype: np.dtype) -> Arg:
        return Arg("scalar", number=float(number), dtype=dtype.name)

    @staticmethod
    def special(name: str) -> Arg:
        return Arg("special", name=name)


@dataclass(frozen=True)
class Call:
    """One call of the step: ``function`` (a kernel or helper name) on ``args``.

    ``nodes`` are the value ids it computes (the listing joins them to the graph); ``row``
    describes it as row-wise work when it is (``rows.py``); ``types`` are its arguments'
    types, for the eager compilation a Python driver needs."""

    target: Target
    function: str
    args: tuple[Arg, ...]
    nodes: tuple[int, ...]
    comment: str
    types: tuple[ValueType, ...] = ()
    row: RowCall | None = None


@dataclass(frozen=True)
class KernelDef:
    """A distinct kernel: its generated name, text and the nodes of its first use."""

    name: str
    text: KernelText
    comment: str


@dataclass(frozen=True)
class DriverArgument:
    """One parameter of the driver: what the runtime passes for it."""

    kind: ArgumentKind
    value: int | None = None  # value id (input/parameter/constant)
    dtype: np.dtype | None = None
    ndim: int = 1


@dataclass(frozen=True)
class Segment:
    """A row segment (``rows.py``): a periodic run of row-wise calls of the step, replaced by
    one call of the segment's entry."""

    name: str
    calls: tuple[RowCall, ...]  # every call of the run, in order
    run: Run
    columns: Columns


@dataclass
class StepProgram:
    """Every record of one generated module."""

    value_count: int
    symbols: list[str]
    buffers: dict[int, Buffer]
    # The driver's statements in schedule order: make a buffer (its view), or run a call.
    # The parameter copies come last.
    statements: list[Buffer | Call]
    transposed: dict[int, int]  # a 2-D transpose read as a free ``.T`` view -> its base
    shapes: dict[int, tuple[Dim, ...]]  # of every value
    kernels: list[KernelDef]
    arguments: list[DriverArgument]
    arena_dtypes: list[np.dtype]
    fastmath: bool = False
    blas_dtypes: set[str] = field(default_factory=set)  # dtypes with gemm helpers; "any": np.dot
    uses_blas: bool = True  # numpy's BLAS was found (else np.dot)
    uses_lanes: bool = False
    functions: set[str] = field(default_factory=set)  # fast-math helpers the kernels call
    kernel_calls: int = 0  # kernels of the fusion plan
    driver: DriverKind = "njit"
    # A Python driver: what bind() makes once per binding of the dims (buffers, and flat or
    # row views of them: (variable, value, view)), and what each step runs.
    bind_statements: list[Buffer] = field(default_factory=list)
    bound_views: dict[tuple[int, str], str] = field(default_factory=dict)
    step_statements: list[Buffer | Call | Segment] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return [s for s in self.statements if isinstance(s, Call)]

    def signatures(self) -> dict[str, set[tuple[ValueType, ...]]]:
        """Argument types of every compiled function the step calls (eager compilation)."""
        found: dict[str, set[tuple[ValueType, ...]]] = {"copy_flat": set()}
        for call in self.calls:
            if call.types:
                found.setdefault(call.function, set()).add(call.types)
        return found
