"""Write the generated module: fast-math helpers, deduplicated kernels, and one driver.

The driver ``step`` receives the inputs, parameters, array constants, one flat arena per dtype
with the slot offsets for the current binding, the bound dims and a scratch vector. It carves
every buffer out of the arenas (views, no allocation), calls the kernels in schedule order and
finally copies new parameter values into the parameters' storage, so that every read during the
step saw the old values.
"""

from __future__ import annotations

import ast
import dataclasses
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphcomp.backends.numba import kernels as K
from graphcomp.backends.numba import lanes as L
from graphcomp.backends.numba import rows as R
from graphcomp.backends.numba.blas import BlasLibrary, numpy_blas
from graphcomp.backends.numba.expressions import DTYPE_SUFFIX, literal
from graphcomp.errors import CompileError
from graphcomp.passes.fusion import FusionPlan, Kernel, loop_shape, slice_offset
from graphcomp.passes.lowered import LoweredProgram, size_key
from graphcomp.passes.memory import MemoryPlan

FASTMATH_FILE = Path(__file__).with_name("fastmath.py")
# Never "nnan"/"ninf": graphcomp keeps IEEE semantics for NaN and infinity even when opted in.
FASTMATH_FLAGS = ("nsz", "arcp", "contract", "afn", "reassoc")

# Larger programs get a Python driver: compiling an njit driver re-optimises every kernel it
# calls, which costs more than the per-call dispatch saves once kernels are big (measured in
# docs/performance.md).
JIT_DRIVER_MAX_KERNELS = 32
# An njit driver also costs ~3 s more compile than a Python one (mlp with one hidden layer,
# 29 kernels: 6.6 s against 3.2 s), and saves ~1 us per kernel call: worth it only when a
# step is short. Steps with more known work than this (matmul flops plus elements written,
# symbols counted as 1) get a Python driver: ~30 us of calls is then 1-2 % of the step.
JIT_DRIVER_MAX_WORK = 20_000_000

_WRITERS = {
    "elementwise": K.elementwise_kernel,
    "reduction": K.reduction_kernel,
    "pad": K.pad_kernel,
    "concatenate": K.concatenate_kernel,
    "take": K.take_kernel,
    "scatter_add": K.scatter_add_kernel,
}


@dataclass
class DriverArgument:
    """One parameter of ``step``: what the runtime passes for it."""

    # "input", "parameter", "lanes", "constant", "arena", "offsets", "dims", "scratch"
    kind: str
    value: int | None = None  # value id (input/parameter/constant)
    dtype: np.dtype | None = None
    ndim: int = 1


@dataclass
class GeneratedModule:
    """The module text and what the runtime needs to call its driver."""

    source: str
    arguments: list[DriverArgument]
    arena_dtypes: list[np.dtype]
    kernel_count: int = 0
    kernel_calls: int = 0
    driver_jit: bool = True
    # Argument types of every kernel call, for eager compilation when the driver is Python:
    # kernel name -> {((dtype name, ndim, layout) or "int64", ...)}.
    kernel_signatures: dict[str, set[tuple]] = field(default_factory=dict)
    uses_lanes: bool = False  # the driver takes a lanes array (lanes.py) after the parameters


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = "_" + name
    return name


def fastmath_source() -> str:
    """fastmath.py's text without its docstring, made cacheable, for inlining."""
    text = FASTMATH_FILE.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        lines = lines[first.end_lineno:]
    body = "\n".join(lines).strip("\n")
    return body.replace("cache=False", "cache=True")


class _Names:
    """Python names of values in the driver."""

    def __init__(self, lp: LoweredProgram) -> None:
        self.lp = lp
        self.names: dict[int, str] = {}
        taken: set[str] = set()
        for op in lp.ops.values():
            prefix = {"placeholder": "x", "parameter": "p", "constant": "c"}.get(op.op, "v")
            node_name = op.labels[0].split('"')[1] if '"' in op.labels[0] else ""
            if node_name and prefix != "v":
                name = f"{prefix}_{_identifier(node_name)}"
            else:
                name = f"{prefix}{op.id}"
            while name in taken:
                name += "_"
            taken.add(name)
            self.names[op.id] = name
        self.dims = {s: f"d_{_identifier(s)}" for s in lp.symbols}

    def dim(self, d: object) -> str:
        return str(d) if isinstance(d, int) else self.dims[d]

    def shape(self, shape: tuple) -> str:
        parts = [self.dim(d) for d in shape]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def size(self, shape: tuple) -> str:
        known = 1
        symbolic = []
        for d in shape:
            if isinstance(d, int):
                known *= d
            else:
                symbolic.append(self.dims[d])
        parts = symbolic + ([str(known)] if known != 1 or not symbolic else [])
        return " * ".join(parts)


def generate(lp: LoweredProgram, plan: FusionPlan, memory: MemoryPlan, *,
             fastmath: bool = False, driver_jit: bool | None = None) -> GeneratedModule:
    """The module text for a planned program.

    >>> # module = generate(lp, plan_kernels(lp), plan_memory(lp, plan))
    """
    names = _Names(lp)
    position = {value: index for index, value in enumerate(lp.ops)}  # schedule order
    decorator = _decorator(fastmath)
    if driver_jit is None:
        driver_jit = (len(plan.kernels) <= JIT_DRIVER_MAX_KERNELS
                      and known_work(lp, plan) <= JIT_DRIVER_MAX_WORK)
    # Compiled code calls numpy's BLAS through one small function per dtype (blas.py: one
    # thread pool for numpy and graphcomp; an inline np.dot would also add its layout checks to
    # the driver's compile). A Python driver calls numpy's np.dot, the same library.
    blas = numpy_blas()
    gemm_dtypes: set[str] = set()
    # Products of at least L.LANE_MIN_WORK multiply-adds (symbols counted as 1) are split
    # between this thread and the lane helper (lanes.py); the others stay whole.
    uses_lanes = blas is not None and L.SUPPORTED and any(
        _gemm_work(lp, kernel) >= L.LANE_MIN_WORK for kernel in plan.kernels
        if kernel.kind == "matmul_acc" or (kernel.kind == "matmul"
                                           and _direct_matmul(lp, plan, kernel)))

    def split(kernel: Kernel) -> bool:
        return uses_lanes and (_gemm_work(lp, kernel) >= L.LANE_MIN_WORK
                               or any(not isinstance(d, int) for d in lp.ops[kernel.root].shape))

    def split_call(kernel: Kernel, alpha: str, beta: str) -> str:
        """``gemm_split_<sfx>(a, ta, b, tb, out, alpha, beta, lanes)``: a transposed operand
        is passed as its base with flag 1, an operand of more than 2 axes as its rows."""
        op = lp.ops[kernel.root]
        gemm(op.dtype)
        helper = f"gemm_split_{DTYPE_SUFFIX[op.dtype.name]}"
        operands = []
        for value in op.inputs[:2]:
            operand = lp.ops[value]
            if value in plan.transposed_views:
                operands.append(f"{ref(operand.inputs[0])}, 1")
            elif operand.ndim > 2:
                rows = names.size(operand.shape[:-1])
                operands.append(f"{ref(value)}.reshape(({rows}, "
                                f"{names.dim(operand.shape[-1])})), 0")
            else:
                operands.append(f"{ref(value)}, 0")
        out = names.names[kernel.root]
        if op.ndim > 2:
            out = (f"{out}.reshape(({names.size(op.shape[:-1])}, "
                   f"{names.dim(op.shape[-1])}))")
        matrix = (op.dtype.name, 2, "C")
        signatures.setdefault(helper, set()).add((
            matrix, "int64", matrix, "int64", matrix, op.dtype.name, op.dtype.name,
            ("int64", 2, "C")))
        return f"{helper}({operands[0]}, {operands[1]}, {out}, {alpha}, {beta}, lanes)"

    def gemm(dtype: np.dtype, accumulate: bool = False) -> str:
        if blas is None:
            if accumulate:
                raise CompileError("matmul_acc needs numpy's BLAS (see blas.py)")
            gemm_dtypes.add("any")
            return "matmul_2d"
        gemm_dtypes.add(dtype.name)
        return f"gemm{'_acc' if accumulate else ''}_{DTYPE_SUFFIX[dtype.name]}"
    kernel_defs: dict[str, str] = {}  # code key -> kernel name
    kernel_texts: list[str] = []
    used_functions: set[str] = set()
    calls: list[str] = []
    signatures: dict[str, set[tuple]] = {"copy_flat": set()}

    def array_type(value: int, flat: bool) -> tuple:
        op = lp.ops[value]
        layout = "F" if value in plan.transposed_views else "C"
        return (op.dtype.name, 1 if flat else op.ndim, layout)

    arena_dtypes = sorted({s.dtype for s in memory.slots}, key=lambda d: d.str)
    arena_name = {d: f"arena_{d.name}" for d in arena_dtypes}

    def ref(value: int) -> str:
        """How the driver reads a value (transposed views become ``.T``)."""
        if value in plan.transposed_views:
            return f"{ref(lp.ops[value].inputs[0])}.T"
        return names.names[value]

    def flat(value: int) -> str:
        op = lp.ops[value]
        return f"{ref(value)}.reshape({names.size(op.shape)})"

    # Calls that work row by row, by their index in ``calls`` (see rows.py); only a Python
    # driver with lanes runs them as row segments.
    row_of: dict[int, R.RowCall] = {}
    rows_wanted = uses_lanes and not driver_jit

    def row_arg(value: int, role: str, rows: int, written: bool = False,
                shape: tuple | None = None) -> R.RowArg | None:
        """``value`` as an argument of a call over ``rows`` rows (None: not row-wise)."""
        op = lp.ops[value]
        shape = tuple(op.shape) if shape is None else shape
        if value in plan.transposed_views or not all(isinstance(d, int) for d in shape):
            return None
        if role != "whole" and (not shape or shape[0] != rows):
            return None
        base = memory.base(value)
        arena = (arena_name[memory.slots[memory.slot_of[base]].dtype]
                 if base in memory.slot_of else None)
        return R.RowArg(names.names[value], value, op.dtype.name, shape, role, written, arena,
                        view_shape=tuple(op.shape))

    def gemm_row_call(kernel: Kernel, alpha: str, beta: str, comment: str
                      ) -> R.RowCall | None:
        """A split product as row-wise work: rows of ``a`` and of the output, ``b`` whole."""
        op = lp.ops[kernel.root]
        a, b = op.inputs[:2]
        if lp.ops[a].ndim != 2 or op.ndim != 2 or not isinstance(op.shape[0], int):
            return None
        rows = op.shape[0]
        if b in plan.transposed_views:
            base = lp.ops[b].inputs[0]
            b_arg = row_arg(base, "whole", rows)
            b_arg = None if b_arg is None else dataclasses.replace(b_arg, transposed=True)
        else:
            b_arg = row_arg(b, "whole", rows)
        args = (row_arg(a, "rows", rows), b_arg, row_arg(kernel.root, "rows", rows, True))
        if any(arg is None for arg in args):
            return None
        helper = f"gemm_acc_{DTYPE_SUFFIX[op.dtype.name]}"
        return R.RowCall(f"{helper}({{0}}, {{1}}, {{2}}, {alpha}, {beta})", args, rows, comment)

    def kernel_row_call(kernel: Kernel, name: str, text: K.KernelText, writes: list[int],
                        comment: str) -> R.RowCall | None:
        """An elementwise or flat-loop kernel as row-wise work (see ``KernelText.row_roles``)."""
        if (kernel.kind not in ("elementwise", "loop") or text.parallel or text.uses_scratch
                or text.uses_dims):
            return None
        if kernel.kind == "elementwise" and (text.row_roles is None or None in text.row_roles):
            return None
        shape = tuple(loop_shape(lp, kernel) if kernel.kind == "loop"
                      else lp.ops[kernel.root].shape)
        if not shape or not all(isinstance(d, int) for d in shape):
            return None
        rows = shape[0]
        if kernel.kind == "loop":
            if text.extents != [shape]:
                return None
            args = [row_arg(v, "flat_rows", rows, v in writes, shape)
                    for v in [*text.reads, *writes]]
            template = f"{name}({', '.join(f'{{{k}}}' for k in range(len(args)))}, {{n}})"
        else:
            if text.extents:
                return None
            args = [row_arg(v, role, rows)
                    for v, role in zip(text.reads, text.row_roles, strict=True)]
            args += [row_arg(v, "rows", rows, True) for v in writes]
            template = f"{name}({', '.join(f'{{{k}}}' for k in range(len(args)))})"
        if any(arg is None for arg in args):
            return None
        return R.RowCall(template, tuple(args), rows, comment)

    for kernel in plan.kernels:
        op = lp.ops[kernel.root]
        for member in kernel.computed:
            K.check_kernel_available(lp.ops[member].op, lp.ops[member].describe())
        target = names.names[kernel.root]
        comment = ", ".join(lp.ops[i].describe() for i in sorted(kernel.computed, key=position.get))
        if kernel.kind == "alias" and op.op == "slice":
            source = lp.ops[op.inputs[0]]
            terms = [names.size((start, *rest)) for start, rest in slice_offset(lp, op.id)]
            offset = " + ".join(terms) or "0"
            calls.append(
                f"{target} = {ref(source.id)}.reshape({names.size(source.shape)})"
                f"[{offset}:{offset} + {names.size(op.shape)}].reshape({names.shape(op.shape)})"
                f"  # {op.describe()}"
            )
            continue
        if kernel.kind == "alias":
            calls.append(f"{target} = {ref(op.inputs[0])}.reshape({names.shape(op.shape)})"
                         f"  # {op.describe()}")
            continue
        for value in kernel.results:
            result = lp.ops[value]
            if value in memory.in_place:
                param = memory.in_place[value]
                calls.append(f"{names.names[value]} = {ref(param)}"
                             "  # written in place: no later step reads it")
            else:
                slot = memory.slots[memory.slot_of[value]]
                calls.append(
                    f"{names.names[value]} = {arena_name[slot.dtype]}[offsets[{slot.index}]:"
                    f"offsets[{slot.index}] + {names.size(result.shape)}]"
                    f".reshape({names.shape(result.shape)})"
                )
        if kernel.root in memory.placed:
            calls[-1] += f"  # {comment}: its parts were written in place"
            continue
        if kernel.kind == "matmul" and _direct_matmul(lp, plan, kernel):
            if split(kernel):
                one, zero = literal(1.0, op.dtype), literal(0.0, op.dtype)
                calls.append(split_call(kernel, one, zero) + f"  # {comment}")
                row_call = gemm_row_call(kernel, one, zero, comment) if rows_wanted else None
                if row_call is not None:
                    row_of[len(calls) - 1] = row_call
                continue
            dot = gemm(op.dtype) if driver_jit else "np.dot"
            calls.append(_matmul_call(lp, kernel, ref, names, dot) + f"  # {comment}")
            continue
        if kernel.kind == "matmul_acc":
            a, b, c = op.inputs
            if kernel.root not in memory.in_place:
                signatures["copy_flat"].add((array_type(c, True), array_type(kernel.root, True)))
                calls.append(f"copy_flat({flat(c)}, {flat(kernel.root)})  # {comment}")
            alpha = literal(op.attrs["alpha"], op.dtype)
            if split(kernel):
                calls.append(split_call(kernel, alpha, literal(1.0, op.dtype))
                             + f"  # {comment}")
                continue
            helper = gemm(op.dtype, accumulate=True)
            calls.append(f"{helper}({ref(a)}, {ref(b)}, {target}, "
                         f"{alpha}, {literal(1.0, op.dtype)})  # {comment}")
            # Compiled eagerly like the kernels (a Python driver calls it directly).
            signatures.setdefault(helper, set()).add((
                array_type(a, False), array_type(b, False), array_type(kernel.root, False),
                op.dtype.name, op.dtype.name))
            continue
        if kernel.kind == "loop":
            text = K.loop_kernel(lp, kernel, memory.in_place)
        else:
            writer = _WRITERS.get(kernel.kind)
            if kernel.kind == "matmul":
                text = K.batched_matmul_kernel(lp, kernel, gemm(op.dtype))
            elif writer is None:
                raise CompileError(f"the numba backend cannot compile {op.describe()} ({op.op})")
            else:
                text = writer(lp, kernel)
        used_functions |= text.functions
        key = text.code_key()
        if key not in kernel_defs:
            kernel_name = f"k{len(kernel_defs)}"
            kernel_defs[key] = kernel_name
            kernel_texts.append(_kernel_source(kernel_name, text, decorator, comment))
        kernel_name = kernel_defs[key]
        writes = [kernel.root] if text.writes is None else text.writes
        args = [flat(v) if text.flat else ref(v) for v in [*text.reads, *writes]]
        types = [array_type(v, text.flat) for v in [*text.reads, *writes]]
        if text.uses_scratch:
            args.append("scratch")
            types.append(("float64", 1, "C"))
        args += [names.size(extent) for extent in text.extents]
        types += ["int64"] * len(text.extents)
        if text.uses_dims:
            args.append("dims")
            types.append(("int64", 1, "C"))
        signatures.setdefault(kernel_name, set()).add(tuple(types))
        calls.append(f"{kernel_name}({', '.join(args)})  # {comment}")
        if rows_wanted:
            row_call = kernel_row_call(kernel, kernel_name, text, writes, comment)
            if row_call is not None:
                row_of[len(calls) - 1] = row_call

    # New parameter values land last: every kernel above read the old ones.
    copies = []
    for param, value in lp.updates:
        if lp.ops[memory.base(value)].op == "parameter":
            continue  # written in place, or a parameter's old value the runtime copies
        signatures["copy_flat"].add((array_type(value, True), array_type(param, True)))
        copies.append(f"copy_flat({flat(value)}, {flat(param)})"
                      f"  # update {lp.ops[param].describe()}")

    arguments: list[DriverArgument] = []
    for kind, values in (("input", lp.inputs), ("parameter", lp.parameters()),
                         ("constant", lp.constants())):
        if kind == "constant" and uses_lanes:
            arguments.append(DriverArgument("lanes", None, np.dtype("int64"), 2))
        for value in values:
            op = lp.ops[value]
            arguments.append(DriverArgument(kind, value, op.dtype, op.ndim))
    for dtype in arena_dtypes:
        arguments.append(DriverArgument("arena", None, dtype, 1))
    arguments.append(DriverArgument("offsets", None, np.dtype("int64"), 1))
    arguments.append(DriverArgument("dims", None, np.dtype("int64"), 1))
    arguments.append(DriverArgument("scratch", None, np.dtype("float64"), 1))
    params = []
    for arg in arguments:
        if arg.value is not None:
            params.append(names.names[arg.value])
        elif arg.kind == "arena":
            params.append(arena_name[arg.dtype])
        else:
            params.append(arg.kind)

    lines = [
        # No graph name here: the cache is keyed by this text, and graphs that differ only in
        # their (often automatic) names share one compiled module.
        f'"""Generated by graphcomp: {len(lp.ops)} values, '
        f"{len(plan.kernels)} kernels ({len(kernel_texts)} distinct).",
        "",
        "Each kernel line names the graph node it computes; the driver `step` runs the schedule.",
        '"""',
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
    lines += ["", "# ---- kernels", ""]
    for text in kernel_texts:
        lines += ["", text, ""]
    lines += ["", _copy_kernel(decorator), ""]
    lines += _gemm_kernels(blas, gemm_dtypes)
    if uses_lanes:
        assert blas is not None
        lines += _split_gemm_kernels(blas, gemm_dtypes - {"any"})
    dim_lines = [f"{names.dims[symbol]} = dims[{k}]" for k, symbol in enumerate(lp.symbols)]
    if not driver_jit:
        step_count = sum(1 for a in arguments if a.kind in ("input", "parameter", "lanes"))
        # Row segments: njit with the kernels' flags, nogil (the lane helper runs them too).
        segment_decorator = decorator.format(parallel="")[:-1] + ", nogil=True)"
        driver_lines, segments = _python_driver(params[:step_count], params[step_count:],
                                                dim_lines, calls + copies, row_of,
                                                segment_decorator)
        if segments:
            lines += ["", "# ---- row segments (graphcomp/backends/numba/rows.py)", "",
                      "from numba import carray, cfunc, types  # noqa: E402",
                      "",
                      "from graphcomp.backends.numba.rows import (  # noqa: E402",
                      "    rows_safe,", "    rows_table,", "    segment_entry,", ")",
                      L.rows_source()]
        for _, (text, _) in segments:
            lines += ["", text, ""]
    lines += ["", "# ---- driver", ""]
    if driver_jit:
        # nogil: the lane helper (lanes.py) needs the GIL for a moment when it wakes up.
        lines.append('@njit(cache=True, error_model="numpy", nogil=True)')
        lines.append(f"def step({', '.join(params)}):")
        lines.append('    """One call runs the whole program; outputs stay in the arenas."""')
        lines += ["    " + line for line in dim_lines + calls + copies]
        lines.append("    return 0")
    else:
        lines += driver_lines
    if used_functions:
        # Last, so a reader meets the kernels and the driver first; numba resolves these
        # globals when it compiles the kernels, after the whole module has run.
        banner = "# ---- vectorisable transcendentals (graphcomp/backends/numba/fastmath.py)"
        lines += ["", "", banner, "", fastmath_source(), ""]
    if not driver_jit and segments:
        # Compiled as the module runs (cfuncs): last, after every function they call.
        lines += ["", "", "# ---- row segments as C functions for the lane helper", ""]
        for _, (_, native) in segments:
            lines += ["", native, ""]
    source = "\n".join(lines).replace("\n\n\n\n", "\n\n\n") + "\n"
    source = re.sub(r"\n{4,}", "\n\n\n", source)
    module = GeneratedModule(source, arguments, arena_dtypes, len(kernel_texts),
                             len(plan.kernels), driver_jit, signatures, uses_lanes)
    return module


def known_work(lp: LoweredProgram, plan: FusionPlan) -> int:
    """A step's work as matmul flops plus elements its kernels write, symbols counted as 1.

    >>> # known_work(lp, plan) > JIT_DRIVER_MAX_WORK  # a long step: a Python driver
    """
    def count(shape: tuple) -> int:
        return size_key(shape)[0]

    work = 0
    for kernel in plan.kernels:
        if kernel.kind in ("matmul", "matmul_acc"):
            work += 2 * _gemm_work(lp, kernel)
        elif kernel.kind != "alias":
            work += sum(count(lp.ops[v].shape) for v in kernel.results)
            if kernel.kind == "loop":  # a sum's loop runs over its operand, not its result
                work += sum(count(lp.ops[lp.ops[m.root].inputs[0]].shape)
                            for m in kernel.members if lp.ops[m.root].op == "reduce_sum")
    return work


def _python_driver(step_params: list[str], bind_params: list[str], dim_lines: list[str],
                   statements: list[str], row_of: dict[int, R.RowCall], decorator: str
                   ) -> tuple[list[str], list[tuple[str, tuple[str, str]]]]:
    """``bind(...)`` makes every view that depends only on the arenas once per binding (and
    every flat view a kernel call needs) and returns the ``step`` closure that runs the rest:
    a step then does no slicing or reshaping of its buffers in Python.

    Periodic runs of row-wise calls (``row_of``: statement index -> call) become row
    segments (rows.py, compiled with ``decorator``); returns the driver's lines and each
    segment's (name, (source, native source))."""
    bound = set(bind_params) | {line.split(" = ")[0] for line in dim_lines}
    bind_lines = list(dim_lines)
    step_lines: list[str] = []
    step_rows: list[R.RowCall | None] = []
    flat_views: dict[str, str] = {}

    def hoist(match: re.Match) -> str:
        name, size = match.group(1), match.group(2)
        if name not in bound:
            return match.group(0)
        key = f"{name}.reshape({size})"
        if key not in flat_views:
            flat_views[key] = f"{name}_flat"
            while flat_views[key] in bound:
                flat_views[key] += "_"
            bound.add(flat_views[key])
            bind_lines.append(f"{flat_views[key]} = {key}")
        return flat_views[key]

    for index, statement in enumerate(statements):
        code, _, comment = statement.partition("  # ")
        tree = ast.parse(code)
        target = None
        if isinstance(tree.body[0], ast.Assign):
            target = tree.body[0].targets[0].id
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - {target, "np"}
        if target is not None and used <= bound:
            bound.add(target)
            bind_lines.append(statement)
            continue
        if target is None:  # a call: its flat views of bound buffers are made once, in bind
            code = re.sub(r"\b(\w+)\.reshape\(([^()]*)\)", hoist, code)
            statement = code + (f"  # {comment}" if comment else "")
        step_lines.append(statement)
        step_rows.append(row_of.get(index))
    segments: list[tuple[str, tuple[str, str]]] = []
    if any(step_rows):
        step_lines, extra_bind, segments = _row_segments(step_lines, step_rows, bound,
                                                         decorator)
        bind_lines += extra_bind
    return [
        "# A Python driver: an njit one would re-optimise every kernel it links.",
        f"def bind({', '.join(bind_params)}):",
        '    """Views of every buffer for one binding of the dims; returns the step."""',
        *["    " + line for line in bind_lines],
        "",
        f"    def step({', '.join(step_params)}):",
        '        """One call runs the whole program; outputs stay in the arenas."""',
        *["        " + line for line in step_lines],
        "        return 0",
        "",
        "    return step",
    ], segments


def _row_segments(step_lines: list[str], step_rows: list[R.RowCall | None], bound: set[str],
                  decorator: str
                  ) -> tuple[list[str], list[str], list[tuple[str, tuple[str, str]]]]:
    """Replace each periodic run of row-wise calls in the step by a row segment: its offsets
    table, safety check and entry (rows.segment_entry) go to bind(), the calls become one
    call of the entry."""
    new_lines: list[str] = []
    bind_lines: list[str] = []
    segments: list[tuple[str, tuple[str, str]]] = []
    position = 0
    for run in R.find_runs(step_rows):
        new_lines += step_lines[position:run.start]
        position = run.start + run.period * run.repeats
        columns = R.segment_columns(step_rows, run)
        assert columns is not None  # find_runs keeps only runs that have columns
        name = f"seg{len(segments)}"
        period = [c for c in step_rows[run.start:run.start + run.period] if c is not None]
        views = [[_arg_of(step_rows, run, values, r).text for values in columns.varying]
                 for r in range(run.repeats)]
        arenas = ", ".join(columns.arena_of)
        bind_lines.append(f"{name}_table = rows_table([{arenas}], "
                          f"[{', '.join('[' + ', '.join(row) + ']' for row in views)}])")
        uses: dict[tuple[str, int], list[R.RowArg]] = {}
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
        bind_lines.append(f"{name}_safe = rows_safe([{', '.join(spans)}])")
        arrays = [*columns.arenas, f"{name}_table",
                  *[text if text in bound else "None" for text in columns.invariant]]
        late = [text for text in columns.invariant if text not in bound]
        bind_lines.append(f"{name}_enter = segment_entry({name}_native, {name}, "
                          f"[{', '.join(arrays)}], {name}_safe, {len(columns.arenas)})")
        comment = f"{run.repeats} repeats of: " + "; ".join(c.comment for c in period)
        new_lines.append(f"{name}_enter({', '.join(['lanes', *late])})  # {comment}")
        segments.append((name, R.segment_source(name, step_rows, run, columns, decorator)))
    new_lines += step_lines[position:]
    return new_lines, bind_lines, segments


def _arg_of(step_rows: list[R.RowCall | None], run: R.Run, values: tuple[int, ...],
            repeat: int) -> R.RowArg:
    """The argument of repeat ``repeat`` that holds ``values[repeat]`` (a table column)."""
    for j in range(run.period):
        call = step_rows[run.start + repeat * run.period + j]
        assert call is not None
        for arg in call.args:
            if arg.value == values[repeat]:
                return arg
    raise AssertionError("a table column without its argument")


def _decorator(fastmath: bool) -> str:
    if fastmath:
        flags = ", ".join(f'"{f}"' for f in FASTMATH_FLAGS)
        return '@njit(cache=True, error_model="numpy", fastmath={{' + flags + "}}{parallel})"
    return '@njit(cache=True, error_model="numpy"{parallel})'


def _kernel_source(name: str, text: K.KernelText, decorator: str, comment: str) -> str:
    head = decorator.format(parallel=", parallel=True" if text.parallel else "")
    lines = [f"# {comment}", head, f"def {name}({', '.join(text.params)}):"]
    width = max((len(line) for line, note in text.body if note), default=0)
    for line, note in text.body:
        if note:
            lines.append(f"    {line.ljust(width)}  # {note}")
        else:
            lines.append(f"    {line}")
    return "\n".join(lines)


def _copy_kernel(decorator: str) -> str:
    head = decorator.format(parallel="")
    return "\n".join([
        head,
        "def copy_flat(source, target):",
        '    """target[:] = source, for 1-D views."""',
        "    for i in range(target.shape[0]):",
        "        target[i] = source[i]",
    ])


def _gemm_kernels(blas: BlasLibrary | None, dtypes: set[str]) -> list[str]:
    """The matrix-product helpers the kernels and the driver call."""
    if not dtypes:
        return []
    if blas is None:
        return ["", "\n".join([
            '@njit(cache=True, error_model="numpy")',
            "def matmul_2d(a, b, out):",
            '    """out = a @ b (Numba\'s np.dot: numpy\'s BLAS was not found; see blas.py)."""',
            "    np.dot(a, b, out)",
        ]), ""]
    lines = [
        "",
        f"# numpy's BLAS, called by symbol (graphcomp/backends/numba/blas.py): {blas.path}",
        f"_BLAS = BlasLibrary({blas.path!r}, {blas.sgemm!r}, {blas.dgemm!r}, {blas.int_bits})",
        "load_numpy_blas(_BLAS.path)",
        "_GEMM = gemm_externals(_BLAS)",
    ]
    blas_int = f"np.int{blas.int_bits}"  # the library's integer width (ILP64 or LP64)
    for dtype in sorted(dtypes):
        suffix = DTYPE_SUFFIX[dtype]
        cblas = "cblas_sgemm" if dtype == "float32" else "cblas_dgemm"
        one, zero = literal(1.0, np.dtype(dtype)), literal(0.0, np.dtype(dtype))
        lines += ["", f"{cblas} = _GEMM[{cblas!r}]", "", "", "\n".join([
            '@njit(cache=True, error_model="numpy")',
            f"def gemm_acc_{suffix}(a, b, out, alpha, beta):",
            f'    """out = alpha * a @ b + beta * out for 2-D {dtype} arrays, C-ordered or',
            '    transposed (F-ordered)."""',
            "    m, k = a.shape",
            "    n = b.shape[1]",
            "    if m == 0 or n == 0:",
            "        return",
            "    if k == 0:",
            "        for i in range(m):",
            "            for j in range(n):",
            "                out[i, j] = beta * out[i, j] if beta != 0 else 0",
            "        return",
            f"    size = {np.dtype(dtype).itemsize}",
            "    # Row-major BLAS: an operand with contiguous rows is passed as is, a transposed",
            "    # view as its base with the transpose flag; a leading dimension of one is free.",
            "    if a.strides[1] == size or k == 1:",
            "        trans_a, lda = 111, (a.strides[0] // size if m > 1 else k)",
            "    else:",
            "        trans_a, lda = 112, (a.strides[1] // size if k > 1 else m)",
            "    if b.strides[1] == size or n == 1:",
            "        trans_b, ldb = 111, (b.strides[0] // size if k > 1 else n)",
            "    else:",
            "        trans_b, ldb = 112, (b.strides[1] // size if n > 1 else k)",
            f"    {cblas}(101, trans_a, trans_b, {blas_int}(m), {blas_int}(n), {blas_int}(k),",
            f"                np.{dtype}(alpha), a.ctypes, {blas_int}(lda), b.ctypes,",
            f"                {blas_int}(ldb), np.{dtype}(beta), out.ctypes, {blas_int}(n))",
        ]), "", "", "\n".join([
            '@njit(cache=True, error_model="numpy")',
            f"def gemm_{suffix}(a, b, out):",
            '    """out = a @ b."""',
            f"    gemm_acc_{suffix}(a, b, out, {one}, {zero})",
        ]), "", "", "\n".join([
            "if numba_config.DISABLE_JIT:",
            "    # Plain Python (for pdb) cannot call BLAS by symbol; np.dot is the same library.",
            f"    def gemm_acc_{suffix}(a, b, out, alpha, beta):  # noqa: F811",
            "        out *= beta",
            "        out += alpha * np.dot(a, b)",
        ]), ""]
    return lines


def _direct_matmul(lp: LoweredProgram, plan: FusionPlan, kernel: Kernel) -> bool:
    op = lp.ops[kernel.root]
    a, b = (lp.ops[i] for i in op.inputs)
    if a.ndim == 2 and b.ndim == 2:
        return True
    return b.ndim == 2 and a.id not in plan.transposed_views


def _matmul_call(lp: LoweredProgram, kernel: Kernel, ref, names: _Names, dot: str) -> str:
    op = lp.ops[kernel.root]
    a, b = (lp.ops[i] for i in op.inputs)
    target = names.names[kernel.root]
    if a.ndim == 2:
        return f"{dot}({ref(a.id)}, {ref(b.id)}, {target})"
    rows = names.size(a.shape[:-1])
    a2 = f"{ref(a.id)}.reshape(({rows}, {names.dim(a.shape[-1])}))"
    out2 = f"{target}.reshape(({rows}, {names.dim(op.shape[-1])}))"
    return f"{dot}({a2}, {ref(b.id)}, {out2})"


def _gemm_work(lp: LoweredProgram, kernel: Kernel) -> int:
    """Multiply-adds of a product kernel, symbols counted as 1."""
    op = lp.ops[kernel.root]
    a = lp.ops[op.inputs[0]]
    return size_key(op.shape)[0] * size_key(a.shape[-1:])[0]


def _split_gemm_kernels(blas: BlasLibrary, dtypes: set[str]) -> list[str]:
    """The lane-splitting products (lanes.py) for each dtype the program multiplies."""
    int_type = f"np.int{blas.int_bits}"
    lines = ["", "# Products split between two threads (graphcomp/backends/numba/lanes.py).",
             L.module_prelude(), L.claim_source(int_type)]
    for dtype in sorted(dtypes):
        suffix = DTYPE_SUFFIX[dtype]
        lines += [L.split_gemm_source(dtype, int_type), "", "\n".join([
            "if numba_config.DISABLE_JIT:",
            f"    def gemm_split_{suffix}(a, ta, b, tb, out, alpha, beta, lanes):  # noqa: F811",
            f"        gemm_acc_{suffix}(a.T if ta else a, b.T if tb else b, out, alpha, beta)",
        ]), ""]
    return lines
