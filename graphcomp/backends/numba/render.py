"""Stage 4 of code generation: the module text of a ``StepProgram``.

This is the only stage that writes Python/Numba syntax (with the kernel writers of
``kernels.py``, which it renders through): the records say what runs, this module says how it
reads. ``render_modules`` writes what runs: the driver's module, which imports each distinct
kernel, the copy and BLAS helpers, the fast-math library and the lanes from library modules
of their own (each named by the hash of its text, so identical pieces of two programs are one
cached module). ``render_module`` writes the same program as one text for reading
(``f.source``): the kernels, the helpers, the lanes' code and row segments when used, the
driver, and the fast-math library last (so it opens with the program itself).

>>> row_template("k3", 2, (), element_count=True)
'k3({0}, {1}, {n})'
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphcomp.backends.numba import helpers
from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba.blas import BlasLibrary
from graphcomp.backends.numba.cache import module_name
from graphcomp.backends.numba.expressions import DTYPE_SUFFIX, literal
from graphcomp.backends.numba.inlined import source_without_docstring
from graphcomp.backends.numba.names import Names
from graphcomp.backends.numba.program import Arg, Buffer, Call, KernelDef, Segment, StepProgram
from graphcomp.backends.numba.random_kernels import (
    PHILOX_CONSTANTS,
    PHILOX_FUNCTIONS,
    philox_source,
)
from graphcomp.backends.numba.rows import RowArg, RowCall, Run, segment_source

FASTMATH_FILE = Path(__file__).with_name("fastmath.py")
PREFETCH_FILE = Path(__file__).with_name("prefetch.py")
# What kernels call from prefetch.py.
PREFETCH_FUNCTIONS = frozenset({"prefetch"})
# Never "nnan"/"ninf": graphcomp keeps IEEE semantics for NaN and infinity even when opted in.
FASTMATH_FLAGS = ("nsz", "arcp", "contract", "afn", "reassoc")

_IMPORTS = [
    "import math  # noqa: F401",
    "",
    "import numpy as np",
    "from numba import config as numba_config  # noqa: F401",
    "from numba import njit, prange  # noqa: F401",
    "",
    "from graphcomp.backends.numba.blas import (  # noqa: F401",
    "    BlasLibrary,",
    "    gemm_externals,",
    "    load_numpy_blas,",
    ")",
    "from graphcomp.errors import InputError  # noqa: F401",
    "",
]
_SEGMENT_IMPORTS = [
    "from numba import carray, cfunc, types  # noqa: E402",
    "",
    "from graphcomp.backends.numba.rows import (  # noqa: E402",
    "    rows_safe,", "    rows_table,", "    segment_entry,", ")",
]


def row_template(function: str, arrays: int, scalars: Sequence[Arg],
                 element_count: bool = False) -> str:
    """A row-wise call as a template: ``{0}``, ``{1}``… for its arrays, ``{n}`` for the
    element count of the rows (flat loops), then typed scalars (rows.RowCall)."""
    parts = [f"{{{k}}}" for k in range(arrays)]
    if element_count:
        parts.append("{n}")
    parts += [literal(s.number, _dtype(s)) for s in scalars]
    return f"{function}({', '.join(parts)})"


def render_module(program: StepProgram, names: Names, blas: BlasLibrary | None) -> str:
    """The whole program as one self-contained text: each kernel and helper written out
    where the driver's module imports it (``f.source``; ``render_modules`` makes what runs)."""
    decorator = kernel_decorator(program.fastmath)
    lines = [*_docstring(program), "", *_IMPORTS, "", "# ---- kernels", ""]
    for kernel in program.kernels:
        lines += ["", render_kernel(kernel, decorator), ""]
    lines += ["", helpers.copy_kernel(decorator.format(parallel="")), ""]
    lines += helpers.gemm_helpers(blas, program.blas_dtypes)
    if program.uses_lanes:
        assert blas is not None
        lines += helpers.split_gemm_helpers(blas)
    segments, driver, natives = _driver_sections(program, names)
    lines += [*segments, *driver]
    if _fastmath_names(program.functions):
        # Last, so a reader meets the kernels and the driver first; numba resolves these
        # globals when it compiles the kernels, after the whole module has run.
        banner = "# ---- vectorisable transcendentals (graphcomp/backends/numba/fastmath.py)"
        lines += ["", "", banner, "", fastmath_source(), ""]
    if program.functions & PHILOX_FUNCTIONS:
        lines += ["", "", "# ---- the random generator (graphcomp/ops/philox.py)", "",
                  philox_source(), ""]
    if program.functions & PREFETCH_FUNCTIONS:
        lines += ["", "", "# ---- the prefetch hint (graphcomp/backends/numba/prefetch.py)", "",
                  prefetch_source(), ""]
    lines += natives
    return _tidy(lines)


@dataclass(frozen=True)
class RenderedModules:
    """What runs: the driver's module ``source`` and the library modules it imports
    (``libraries``, each after every module it imports itself); ``display`` is the same
    program as one text, for reading (``f.source``)."""

    source: str
    libraries: tuple[str, ...]
    display: str


def render_modules(program: StepProgram, names: Names, blas: BlasLibrary | None
                   ) -> RenderedModules:
    """The driver's module and its libraries (helpers.py, "library modules"): every kernel,
    the copy and BLAS helpers, the fast-math library, the random generator and the lanes in
    a cached module of its own, named by the hash of its text."""
    decorator = kernel_decorator(program.fastmath)
    libraries = _Libraries(program, blas, decorator)
    lines = [*_docstring(program), "", *_IMPORTS, "",
             "# ---- kernels: each a cached module of its own, named by its text's hash", ""]
    for kernel in program.kernels:
        module = libraries.kernel(kernel, decorator)
        lines.append(f"from {module} import kernel as {kernel.name}  # {kernel.comment}")
    lines += ["", "# ---- helpers", "", *libraries.driver_imports()]
    segments, driver, natives = _driver_sections(program, names)
    lines += [*segments, *driver, *natives]
    return RenderedModules(_tidy(lines), tuple(libraries.texts.values()),
                           render_module(program, names, blas))


class _Libraries:
    """The library modules of one program, in load order (a module after those it imports),
    made when something imports from them."""

    def __init__(self, program: StepProgram, blas: BlasLibrary | None, decorator: str) -> None:
        self.texts: dict[str, str] = {}  # module name -> text
        self._modules: dict[str, str] = {}  # function name -> module name
        self._makers: dict[str, Callable[[], str]] = {}  # function name -> its module's text
        self.program = program
        fastmath = _fastmath_names(program.functions)
        self._offer(fastmath, lambda: helpers.library_text(
            "vectorisable transcendentals",
            ["# graphcomp/backends/numba/fastmath.py", "", fastmath_source()]))
        self._offer(PHILOX_FUNCTIONS | set(PHILOX_CONSTANTS), lambda: helpers.library_text(
            "the random generator", ["# graphcomp/ops/philox.py", "", philox_source()]))
        self._offer(PREFETCH_FUNCTIONS, lambda: helpers.library_text(
            "the prefetch hint", ["# graphcomp/backends/numba/prefetch.py", "",
                                  prefetch_source()]))
        if blas is None:
            self._offer(["matmul_2d"], lambda: helpers.gemm_library(None, "any"))
        else:
            for dtype, suffix in DTYPE_SUFFIX.items():
                self._offer([f"gemm_{suffix}", f"gemm_acc_{suffix}"],
                            functools.partial(helpers.gemm_library, blas, dtype))
        copy_head = decorator.format(parallel="")
        self._offer(["copy_flat"], lambda: helpers.copy_library(copy_head))
        if blas is not None:
            self._offer(_LANE_FUNCTIONS, lambda: L.helper_text(blas))

    def _offer(self, functions: Iterable[str], make: Callable[[], str]) -> None:
        for function in functions:
            self._makers[function] = make

    def _add(self, text: str) -> str:
        name = module_name(text)
        self.texts.setdefault(name, text)
        return name

    def imports(self, functions: Iterable[str]) -> list[str]:
        """Lines importing ``functions`` from the modules that provide them."""
        by_module: dict[str, list[str]] = {}
        for function in sorted(functions):
            if function not in self._modules:
                self._modules[function] = self._add(self._makers[function]())
            by_module.setdefault(self._modules[function], []).append(function)
        return [helpers.import_line(m, f) for m, f in sorted(by_module.items())]

    def kernel(self, kernel: KernelDef, decorator: str) -> str:
        """The module of one kernel: its code as ``kernel``, without the notes naming the
        nodes (the same code in another program is the same module)."""
        text = kernel.text
        head = decorator.format(parallel=", parallel=True" if text.parallel else "")
        functions = set(text.functions)
        if functions & PHILOX_FUNCTIONS:
            functions |= set(PHILOX_CONSTANTS)
        imports = self.imports(functions)
        body = [head, f"def kernel({', '.join(text.params)}):",
                *[f"    {line}" for line, _ in text.body]]
        return self._add(helpers.library_text("a kernel", body, imports))

    def driver_imports(self) -> list[str]:
        """What the driver and its row segments call besides the kernels."""
        functions = {call.function for call in self.program.calls
                     if call.target in ("gemm", "gemm_acc", "gemm_split", "copy")}
        if self.program.segments:
            functions |= set(_LANE_FUNCTIONS)
            # A segment runs its share of a split product's rows with gemm_acc
            # (calls._gemm_row_call).
            functions |= {f"gemm_acc_{DTYPE_SUFFIX[d]}" for d in self.program.blas_dtypes
                          if d in DTYPE_SUFFIX}
        return self.imports(functions)


# What generated drivers and row segments call in the lanes' module (lanes/code.py).
_LANE_FUNCTIONS = ("address_pointer", "gemm_split", "rows_first", "rows_next")


def _fastmath_names(functions: set[str]) -> set[str]:
    """The fast-math helpers among the functions kernels call."""
    return {f for f in functions if f not in PHILOX_FUNCTIONS and f not in PREFETCH_FUNCTIONS
            and not f.startswith(("gemm_", "matmul"))}


def _driver_sections(program: StepProgram, names: Names
                     ) -> tuple[list[str], list[str], list[str]]:
    """The row segments, the driver, and the segments' C entries (compiled as the module
    runs: they go last, after every function they call)."""
    writer = _Writer(program, names)
    if program.driver != "python":
        return [], ["", "# ---- driver", "", *writer.njit_driver()], []
    decorator = kernel_decorator(program.fastmath)
    segment_decorator = decorator.format(parallel="")[:-1] + ", nogil=True)"
    segments: list[str] = []
    natives: list[str] = []
    if program.segments:
        segments += ["", "# ---- row segments (graphcomp/backends/numba/rows.py)", "",
                     *_SEGMENT_IMPORTS]
        natives += ["", "", "# ---- row segments as C functions for the lane helper", ""]
    for segment in program.segments:
        source, native = segment_source(segment.name, list(segment.calls), segment.run,
                                        segment.columns, segment_decorator)
        segments += ["", source, ""]
        natives += ["", native, ""]
    return segments, ["", "# ---- driver", "", *writer.python_driver()], natives


def _tidy(lines: list[str]) -> str:
    source = "\n".join(lines) + "\n"
    return re.sub(r"\n{4,}", "\n\n\n", source)


def call_text(program: StepProgram, names: Names, call: Call) -> str:
    """One call as an njit driver writes it, without its comment (for listings)."""
    return _Writer(program, names).call_expression(call)


def kernel_decorator(fastmath: bool) -> str:
    """The kernels' decorator, with a ``{parallel}`` field. ``no_cfunc_wrapper``: numba
    otherwise lowers, optimises and emits a C-callable wrapper beside every function, used
    only where a jitted function is passed as a first-class function value, which generated
    code never does (docs/performance.md, "Cold compile: where the seconds go")."""
    if fastmath:
        flags = ", ".join(f'"{f}"' for f in FASTMATH_FLAGS)
        return ('@njit(cache=True, error_model="numpy", no_cfunc_wrapper=True, fastmath={{'
                + flags + "}}{parallel})")
    return '@njit(cache=True, error_model="numpy", no_cfunc_wrapper=True{parallel})'


def render_kernel(kernel: KernelDef, decorator: str) -> str:
    """One kernel function, its lines commented with the nodes they compute."""
    text = kernel.text
    head = decorator.format(parallel=", parallel=True" if text.parallel else "")
    lines = [f"# {kernel.comment}", head, f"def {kernel.name}({', '.join(text.params)}):"]
    width = max((len(line) for line, note in text.body if note), default=0)
    for line, note in text.body:
        lines.append(f"    {line.ljust(width)}  # {note}" if note else f"    {line}")
    return "\n".join(lines)


def fastmath_source() -> str:
    """fastmath.py's text without its docstring, made cacheable, for inlining."""
    return source_without_docstring(FASTMATH_FILE).replace("cache=False", "cache=True")


def prefetch_source() -> str:
    """prefetch.py's text without its docstring, for inlining."""
    return source_without_docstring(PREFETCH_FILE)


def _docstring(program: StepProgram) -> list[str]:
    # No graph name here: the cache is keyed by this text, and graphs that differ only in
    # their (often automatic) names share one compiled module. The argument types are: two
    # programs may differ only in them (a bool or an int32 input cast alike), and a module's
    # entry points are compiled once, for its own types.
    arguments = ", ".join(f"{np.dtype(a.dtype).name}[{a.ndim}d]" for a in program.arguments)
    kernel_types = hashlib.sha256(repr(sorted(
        (name, sorted(types, key=repr)) for name, types in program.signatures().items()
    )).encode()).hexdigest()[:16]
    return [
        f'"""Generated by graphcomp: {program.value_count} values, '
        f"{program.kernel_calls} kernels ({len(program.kernels)} distinct).",
        "",
        "Each kernel line names the graph node it computes; the driver `step` runs the schedule.",
        f"Driver arguments: {arguments}. Kernel argument types: {kernel_types}.",
        '"""',
    ]


def _dtype(arg: Arg) -> np.dtype:
    return np.dtype(arg.dtype)


class _Writer:
    """Expressions and statements of the driver."""

    def __init__(self, program: StepProgram, names: Names) -> None:
        self.program = program
        self.names = names
        self.bound_views: dict[tuple[int, str], str] = {}  # in the step: made by bind()

    # ---- expressions

    def ref(self, value: int) -> str:
        """How the driver reads a value: its buffer, a ``.T`` view, or the parameter it is
        written into."""
        base = self.program.transposed.get(value)
        if base is not None:
            return f"{self.ref(base)}.T"
        buffer = self.program.buffers.get(value)
        if buffer is not None and buffer.home == "in_place" and buffer.source is not None:
            return self.ref(buffer.source)
        return self.names[value]

    def view(self, value: int, view: str) -> str:
        bound = self.bound_views.get((value, view))
        if bound is not None:
            return bound
        return self._view_text(value, view)

    def _view_text(self, value: int, view: str) -> str:
        shape = self.program.shapes[value]
        if view == "flat":
            return f"{self.ref(value)}.reshape({self.names.size(shape)})"
        if view == "matrix":
            rows = self.names.size(shape[:-1])
            return f"{self.ref(value)}.reshape(({rows}, {self.names.dim(shape[-1])}))"
        return self.ref(value)

    def arg(self, arg: Arg) -> str:
        if arg.kind == "array":
            assert arg.value is not None
            text = self.view(arg.value, arg.view)
            return text if arg.flag is None else f"{text}, {arg.flag}"
        if arg.kind == "size":
            return self.names.size(arg.shape)
        if arg.kind == "scalar":
            return literal(arg.number, _dtype(arg))
        return arg.name

    def call_expression(self, call: Call) -> str:
        return f"{call.function}({', '.join(self.arg(a) for a in call.args)})"

    def call(self, call: Call) -> str:
        return f"{self.call_expression(call)}  # {call.comment}"

    def define(self, buffer: Buffer) -> str | None:
        """The statement that makes ``buffer`` (None: it needs no name of its own)."""
        names = self.names
        note = f"  # {buffer.comment}" if buffer.comment else ""
        if buffer.home == "in_place":
            return None  # calls write the parameter's storage directly
        if buffer.home == "slot":
            arena = f"arena_{buffer.dtype.name}"
            start = f"offsets[{buffer.slot}]"
            return (f"{buffer.name} = {arena}[{start}:{start} + {names.size(buffer.shape)}]"
                    f".reshape({names.shape(buffer.shape)}){note}")
        assert buffer.source is not None
        source = self.ref(buffer.source)
        if buffer.home == "alias":
            return f"{buffer.name} = {source}.reshape({names.shape(buffer.shape)}){note}"
        source_shape = self.program.buffers[buffer.source].shape
        start = " + ".join(names.size((first, *rest)) for first, rest in buffer.offset)
        size = names.size(buffer.shape)
        span = _span(start, size)
        return (f"{buffer.name} = {source}.reshape({names.size(source_shape)})[{span}]"
                f".reshape({names.shape(buffer.shape)}){note}")

    def dim_lines(self) -> list[str]:
        return [f"{self.names.dims[s]} = dims[{k}]" for k, s in enumerate(self.program.symbols)]

    def parameters(self, kinds: Sequence[str]) -> list[str]:
        params = []
        for argument in self.program.arguments:
            if argument.kind not in kinds:
                continue
            if argument.value is not None:
                params.append(self.names[argument.value])
            elif argument.kind == "arena":
                assert argument.dtype is not None
                params.append(f"arena_{argument.dtype.name}")
            else:
                params.append(argument.kind)
        return params

    # ---- drivers

    def njit_driver(self) -> list[str]:
        body = self.dim_lines()
        for statement in self.program.statements:
            text = self.define(statement) if isinstance(statement, Buffer) else \
                self.call(statement)
            if text is not None:
                body.append(text)
        params = self.parameters([a.kind for a in self.program.arguments])
        return [
            # nogil: the lane helper (lanes.py) needs the GIL for a moment when it wakes up.
            '@njit(cache=True, error_model="numpy", no_cfunc_wrapper=True, nogil=True)',
            f"def step({', '.join(params)}):",
            '    """One call runs the whole program; outputs stay in the arenas."""',
            *["    " + line for line in [*body, "return 0"]],
        ]

    def python_driver(self) -> list[str]:
        """``bind(...)`` makes every view that depends only on the arenas once per binding
        (and every flat view a call needs) and returns the ``step`` closure, which then only
        calls kernels: a step does no slicing or reshaping in Python."""
        program = self.program
        bind = self.dim_lines()
        for buffer in program.bind_statements:
            text = self.define(buffer)
            if text is not None:
                bind.append(text)
        for (value, view), name in program.bound_views.items():
            bind.append(f"{name} = {self._view_text(value, view)}")
            self.bound_views[(value, view)] = name
        bound = {*self.parameters(["constant", "arena", "offsets", "dims", "scratch"]),
                 *(b.name for b in program.bind_statements)}
        step = []
        for statement in program.step_statements:
            if isinstance(statement, Segment):
                extra, line = _segment_lines(statement, bound)
                bind += extra
                step.append(line)
                continue
            text = self.define(statement) if isinstance(statement, Buffer) else \
                self.call(statement)
            if text is not None:
                step.append(text)
        bind_params = self.parameters(["constant", "arena", "offsets", "dims", "scratch"])
        step_params = self.parameters(["input", "parameter", "lanes"])
        return [
            "# A Python driver: an njit one would re-optimise every kernel it links.",
            f"def bind({', '.join(bind_params)}):",
            '    """Views of every buffer for one binding of the dims; returns the step."""',
            *["    " + line for line in bind],
            "",
            f"    def step({', '.join(step_params)}):",
            '        """One call runs the whole program; outputs stay in the arenas."""',
            *["        " + line for line in [*step, "return 0"]],
            "",
            "    return step",
        ]


def _span(start: str, size: str) -> str:
    """A slice ``start:start + size`` written the way a person would."""
    if not start:
        return f":{size}"
    if start.isdigit() and size.isdigit():
        return f"{start}:{int(start) + int(size)}"
    return f"{start}:{start} + {size}"


def _segment_lines(segment: Segment, bound: set[str]) -> tuple[list[str], str]:
    """bind()'s lines for a row segment (its offsets table, safety check and entry) and the
    step's call of its entry."""
    calls, run, columns, name = list(segment.calls), segment.run, segment.columns, segment.name
    views = [[_arg_of(calls, run, values, r).text for values in columns.varying]
             for r in range(run.repeats)]
    arenas = ", ".join(columns.arena_of)
    lines = [f"{name}_table = rows_table([{arenas}], "
             f"[{', '.join('[' + ', '.join(row) + ']' for row in views)}])"]
    period = calls[:run.period]
    uses: dict[tuple[str, int], list[RowArg]] = {}
    for (j, a), where in columns.where.items():
        uses.setdefault(where, []).append(period[j].args[a])
    spans = []
    for k in range(len(columns.varying)):
        rows = all(arg.role != "whole" for arg in uses[("c", k)])
        written = any(arg.written for arg in uses[("c", k)])
        spans += [f"({views[r][k]}, {rows}, {written})" for r in range(run.repeats)]
    for w, text in enumerate(columns.invariant):
        if uses[("w", w)][0].arena is not None:  # a buffer of the arenas, read only
            rows = all(arg.role != "whole" for arg in uses[("w", w)])
            spans.append(f"({text}, {rows}, False)")
    lines.append(f"{name}_safe = rows_safe([{', '.join(spans)}])")
    arrays = [*columns.arenas, f"{name}_table",
              *[text if text in bound else "None" for text in columns.invariant]]
    late = [text for text in columns.invariant if text not in bound]
    lines.append(f"{name}_enter = segment_entry({name}_native, {name}, "
                 f"[{', '.join(arrays)}], {name}_safe, {len(columns.arenas)})")
    comment = f"{run.repeats} repeats of: " + "; ".join(c.comment for c in period)
    return lines, f"{name}_enter({', '.join(['lanes', *late])})  # {comment}"


def _arg_of(calls: Sequence[RowCall], run: Run, values: tuple[int, ...], repeat: int) -> RowArg:
    """The argument of repeat ``repeat`` that holds ``values[repeat]`` (a table column)."""
    for j in range(run.period):
        for arg in calls[repeat * run.period + j].args:
            if arg.value == values[repeat]:
                return arg
    raise AssertionError("a table column without its argument")
