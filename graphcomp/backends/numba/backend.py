"""``compile_numba``: passes, code generation, the disk cache, eager compilation, and the
``NumbaExecutable`` that runs the driver with buffers planned once per binding."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp.backends.numba import kernels as K
from graphcomp.backends.numba.blas import numpy_blas
from graphcomp.backends.numba.codegen import GeneratedModule, generate
from graphcomp.backends.numba.compile_job import (
    CompileJob,
    compile_job,
    driver_signature,
    kernel_signature,
)
from graphcomp.backends.numba.lanes import LaneWorker, lanes_array
from graphcomp.backends.numba.parallel import note_compile_start
from graphcomp.backends.numba.release import release_dropped, track
from graphcomp.backends.numba.stages import compile_staged, has_loops
from graphcomp.errors import CompileError, ForkedProcessError, InputError
from graphcomp.ir import dim_value
from graphcomp.loops import LOOP_OPS
from graphcomp.ops.indexing import (
    INDEX_OPERAND,
    index_error_message,
    index_problem,
    index_source,
    indexed_size,
)
from graphcomp.ops.reductions import NO_IDENTITY, empty_reduction_problem
from graphcomp.passes.batching import batch_matmuls
from graphcomp.passes.convolution import CONV_CHOICES, ConvChoice, lower_convolutions
from graphcomp.passes.fusion import FusionPlan, plan_kernels
from graphcomp.passes.lowered import LoweredProgram, concrete_size
from graphcomp.passes.lowering import lower
from graphcomp.passes.memory import MemoryPlan, plan_memory
from graphcomp.passes.simplify import (
    accumulate_products,
    eliminate_common,
    eliminate_dead,
    fold_constants,
    isolate_outputs,
    join_pads,
    simplify_powers,
)
from graphcomp.runtime.binding import resolve_shape
from graphcomp.runtime.locks import hold_during_fork
from graphcomp.runtime.program import Program

ALIGN_BYTES = 64  # every slot starts on a cache line
_LOAD_LOCK = threading.RLock()  # compile_generated's loads (background.py runs them in threads)
# The drivers of a program with scans (backends/numba/stages.py) unless driver_jit says:
# Python drivers and a Python loop. An njit body driver with an njit loop (scan_loop) compiled
# 4.7x longer for a 7% shorter step (rnn_scan, docs/loops.md "Choosing the loop").
SEGMENT_DRIVER_JIT = False
BODY_DRIVER_JIT = False
BODY_LANES = True  # a body's products split in two lanes while its loop holds them

# Set in a forked child whose parent had started GNU OpenMP's threads (numba's 'omp'
# threading layer): numba kills such a child (SIGTERM) at its first parallel loop.
_openmp_inherited = False


def _note_fork_in_child() -> None:
    global _openmp_inherited
    if "numba" not in sys.modules:
        return
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel loop ran yet: the child starts its own threads
        return
    omppool = sys.modules.get("numba.np.ufunc.omppool")  # loaded with the 'omp' layer
    if layer == "omp" and omppool is not None:
        _openmp_inherited = getattr(omppool, "openmp_vendor", "GNU") == "GNU"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork_in_child)


def check_parallel_loops_usable() -> None:
    """Raise ``ForkedProcessError`` where a parallel loop would kill the process."""
    if _openmp_inherited:
        raise ForkedProcessError(
            "this process was forked from one that ran parallel loops on GNU OpenMP (numba's "
            "'omp' threading layer), which cannot run them in a forked child: start worker "
            "processes with multiprocessing's 'spawn' or 'forkserver' start method (or set "
            "NUMBA_THREADING_LAYER=workqueue before numba starts)")


def prepare(program: Program, conv: ConvChoice = "auto"
            ) -> tuple[LoweredProgram, FusionPlan, MemoryPlan]:
    """Run the passes: lower, fold constants, convolutions (im2col where it pays), CSE,
    constant powers, DCE, fusion, memory plan.

    >>> # lp, plan, memory = prepare(build_program([x], [y]))
    """
    return prepare_lowered(lower(program), conv)


def prepare_lowered(lp: LoweredProgram, conv: ConvChoice = "auto"
                    ) -> tuple[LoweredProgram, FusionPlan, MemoryPlan]:
    """``prepare`` after lowering (a staged program's segments are lowered already)."""
    lp = lower_convolutions(fold_constants(lp), conv)
    lp = batch_matmuls(eliminate_common(lp))
    lp = isolate_outputs(eliminate_dead(join_pads(simplify_powers(lp))))
    if numpy_blas() is not None:  # BLAS accumulates alpha * a @ b into a parameter
        lp = accumulate_products(lp)
    for op in lp.ops.values():
        if not op.is_source:
            K.check_kernel_available(op.op, op.describe())
    plan = plan_kernels(lp)
    return lp, plan, plan_memory(lp, plan)


@dataclass
class _BoundState:
    """Everything that depends on the bound dims: arenas, offsets and output views."""

    arenas: list[np.ndarray]
    offsets: np.ndarray
    dims: np.ndarray
    outputs: list[Any]  # an array view, or ("input", position, shape) to read at call time
    tail: tuple = ()  # the driver's trailing arguments: constants, arenas, offsets, dims, scratch
    views_only: bool = False  # every output is an arena view (no late lookups)
    step: Any = None  # a Python driver's step, bound to these buffers


class NumbaExecutable:
    """Runs a generated driver. Buffers are allocated once per binding and reused."""

    def __init__(self, program: Program, lp: LoweredProgram, memory: MemoryPlan,
                 module: GeneratedModule, driver: Any, compile_seconds: float,
                 cache_hit: bool) -> None:
        self.program = program
        self.lp = lp
        self.memory = memory
        self.module = module
        self.source = module.display or module.source
        self.compile_seconds = compile_seconds
        self.cache_hit = cache_hit
        self._driver = driver
        self._states: dict[tuple, _BoundState] = {}
        storage = program.graph.parameter_values
        given = [(a.kind, a.value) for a in module.arguments if a.value is not None]
        self._param_ids = [lp.ops[v].attrs["storage_id"] for kind, v in given
                           if kind == "parameter"]
        self._storage = storage
        self._constants = [_writable(lp.ops[v].attrs["value"]) for kind, v in given
                           if kind == "constant"]
        self._scratch = np.zeros(K.SCRATCH_SIZE, dtype=np.float64)
        # A step that cannot take the lane helper (none here, or another thread's step has
        # it) passes this disabled array, and its products run whole.
        self._lanes_off = lanes_array(enabled=False)
        self._lane_worker = LaneWorker.shared() if module.uses_lanes else None
        self._parallel_loops = module.program is not None and any(
            kernel.text.parallel for kernel in module.program.kernels)
        # New values that are parameters' old values are returned as such (the Function copies
        # them, swaps included); the driver wrote every other new value in place already.
        self._update_sources = []
        for param, value in lp.updates:
            base = lp.ops[memory.base(value)]
            source = base if base.op == "parameter" else lp.ops[param]
            same = source.shape == lp.ops[param].shape
            # A parameter's shape is concrete: it has a value.
            shape = None if same else tuple(int(d) for d in lp.ops[param].shape)
            self._update_sources.append((source.attrs["storage_id"], shape))
        own = [lp.ops[param].attrs["storage_id"] for param, _ in lp.updates]
        self._updates_in_place = self._update_sources == [(i, None) for i in own]

    def _index_error(self, exc: InputError, inputs: Sequence[np.ndarray],
                     binding: dict[str, int]) -> InputError:
        """The error for an index a kernel refused, as the numpy backend words it.

        Kernels raise one fixed message; the culprit is found here, on the cold path: the first
        index node (in schedule order) whose indices are a placeholder's values that are out of
        range. Failing that, the nodes whose indices are computed are named."""
        program = self.program
        given = {node.id: array for node, array in zip(program.inputs, inputs, strict=True)}
        computed = []
        for node in program.schedule:
            if node.op not in INDEX_OPERAND:
                continue
            source = index_source(node)
            if source is None or source.id not in given:
                computed.append(node.id)
                continue
            size = indexed_size(node, lambda n: resolve_shape(n, binding, program.dims))
            problem = index_problem(given[source.id], size, node.op)
            if problem is not None:
                return InputError(index_error_message(node, problem))
        ids = computed or [op.id for op in self.lp.ops.values() if op.op in INDEX_OPERAND]
        return InputError(f"{_describe_nodes(program, ids) if ids else 'index check'}: {exc}")

    def _check_reductions(self, binding: dict[str, int]) -> None:
        """InputError for a max or argmax over an axis bound to size 0 (numpy backend: same)."""
        program = self.program
        for node in program.schedule:
            if node.op in NO_IDENTITY:
                shape = resolve_shape(node.inputs[0], binding, program.dims)
                problem = empty_reduction_problem(node.op, node.attrs, shape)
                if problem is not None:
                    raise InputError(f"{node.describe()}: {problem}")

    def _bind(self, key: tuple) -> _BoundState:
        binding = dict(zip(self.lp.symbols, key, strict=True))
        self._check_reductions(binding)
        per_dtype: dict[str, int] = {}
        offsets = np.zeros(max(len(self.memory.slots), 1), dtype=np.int64)
        for slot in self.memory.slots:
            if slot.parent is not None:  # a placed part: a block of its stack's slot
                offsets[slot.index] = offsets[slot.parent] + slot.offset
                continue
            align = max(1, ALIGN_BYTES // slot.dtype.itemsize)
            start = -(-per_dtype.get(slot.dtype.str, 0) // align) * align
            offsets[slot.index] = start
            per_dtype[slot.dtype.str] = start + concrete_size(slot.size, binding)
        arenas = [np.zeros(max(per_dtype.get(d.str, 0), 1), dtype=d)
                  for d in self.module.arena_dtypes]
        arena_of = {d.str: a for d, a in zip(self.module.arena_dtypes, arenas, strict=True)}
        outputs: list[Any] = []
        for value in self.lp.outputs:
            shape = tuple(dim_value(d, binding) for d in self.lp.ops[value].shape)
            base = self.memory.base(value)
            op = self.lp.ops[base]
            if base in self.memory.slot_of:
                slot = self.memory.slots[self.memory.slot_of[base]]
                start = int(offsets[slot.index])
                size = int(np.prod(shape, dtype=np.int64))
                outputs.append(arena_of[slot.dtype.str][start:start + size].reshape(shape))
            elif op.op == "placeholder":
                outputs.append(("input", self.lp.inputs.index(base), shape))
            elif op.op == "parameter":
                outputs.append(("parameter", op.attrs["storage_id"], shape))
            else:
                outputs.append(np.asarray(op.attrs["value"]).reshape(shape))
        dims = np.array(key, dtype=np.int64) if key else np.zeros(1, dtype=np.int64)
        state = _BoundState(arenas, offsets, dims, outputs)
        state.tail = (*self._constants, *arenas, offsets, dims, self._scratch)
        state.views_only = all(isinstance(o, np.ndarray) for o in outputs)
        if not self.module.driver_jit:
            state.step = self._driver(*state.tail)  # bind(): views made once per binding
        self._states[key] = state
        return state

    def bound_buffers(self, binding: dict[str, int]) -> tuple[list[Any], tuple]:
        """The output views and the driver's trailing arguments for ``binding`` (a scan's
        loop calls the driver itself, see stages.py)."""
        key = tuple([binding[s] for s in self.lp.symbols])
        state = self._states.get(key) or self._bind(key)
        return state.outputs, state.tail

    def module_function(self, name: str) -> Any:
        """A function of the loaded module, by name (``scan_loop``)."""
        driver = getattr(self._driver, "py_func", self._driver)
        return driver.__globals__[name]

    def step_calls(self) -> list[tuple[str, list[tuple[int | None, str]]]]:
        """Each call of the step as the driver writes it, with the values it computes: (graph
        node id or None for a value a pass made, its description). See gc.kernel_listing."""
        from graphcomp.backends.numba.render import call_text

        module = self.module
        assert module.program is not None and module.names is not None
        graph = self.program.graph
        listed = []
        for call in module.program.calls:
            values = []
            for value in call.nodes:
                op = self.lp.ops[value]
                own = bool(op.labels) and op.labels[0].split(" ")[0] == f"%{value}"
                node = own and graph.nx.has_node(value) and graph.node(value).op == op.op
                values.append((value if node else None, op.describe()))
            listed.append((call_text(module.program, module.names, call), values))
        return listed

    def runner(self, binding: dict[str, int]) -> Callable[[Sequence[np.ndarray]], list] | None:
        """A call for writeable C-contiguous inputs under ``binding`` that runs the step and
        returns its outputs, when every update is written into the parameters' storage by the
        step itself and every output is a buffer view (None otherwise: use ``run``).

        It binds the parameters' storage and the driver's trailing arguments once, so a
        step pays the driver call and little else (tiny_mlp: see docs/performance.md)."""
        key = tuple([binding[s] for s in self.lp.symbols])
        state = self._states.get(key) or self._bind(key)
        if not (self._updates_in_place and state.views_only):
            return None
        outputs = state.outputs
        if self.module.uses_lanes:
            def run_with_lanes(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
                return self.run(inputs, binding)[0]
            run_with_lanes.outputs_share_parameters = False  # type: ignore[attr-defined]
            return run_with_lanes
        params = [self._storage[i] for i in self._param_ids]
        if state.step is not None:
            step, bound = state.step, tuple(params)
        else:
            step, bound = self._driver, (*params, *state.tail)

        storage = self._storage

        def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
            if storage.pending:  # a device (backend="cuda") holds newer parameter values
                storage.fetch_all()
            try:
                step(*inputs, *bound)
            except InputError as exc:  # an index out of range: name the node and placeholder
                raise self._index_error(exc, inputs, binding) from None
            return outputs

        if self._parallel_loops:
            unchecked = run

            def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
                check_parallel_loops_usable()
                return unchecked(inputs)

        run.outputs_share_parameters = False  # type: ignore[attr-defined]
        return run

    def lane_runner(self, binding: dict[str, int]
                    ) -> Callable[[Sequence[np.ndarray], np.ndarray], list] | None:
        """``runner`` for a driver that takes the lanes from its caller, which holds them (a
        scan's loop: stages.py) and passes their array, or a disabled one; None when the
        driver takes no lanes or ``runner`` would be None."""
        key = tuple([binding[s] for s in self.lp.symbols])
        state = self._states.get(key) or self._bind(key)
        if not (self.module.uses_lanes and self._updates_in_place and state.views_only):
            return None
        outputs, params = state.outputs, tuple(self._storage[i] for i in self._param_ids)
        step, tail = state.step, state.tail

        def run(inputs: Sequence[np.ndarray], lanes: np.ndarray) -> list[np.ndarray]:
            try:
                if step is not None:
                    step(*inputs, *params, lanes)
                else:
                    self._driver(*inputs, *params, lanes, *tail)
            except InputError as exc:
                raise self._index_error(exc, inputs, binding) from None
            return outputs

        return run

    def run(self, inputs: Sequence[np.ndarray], binding: dict[str, int]
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if self._parallel_loops:
            check_parallel_loops_usable()
        key = tuple([binding[s] for s in self.lp.symbols])
        state = self._states.get(key) or self._bind(key)
        storage = self._storage
        # The driver is compiled for writeable arrays (numba types read-only ones differently).
        inputs = [a if a.flags.writeable else a.copy() for a in inputs]
        arrays = [*inputs, *[storage[i] for i in self._param_ids]]
        worker = self._lane_worker
        if worker is not None and not worker.in_this_process():  # a forked child
            worker = self._lane_worker = LaneWorker.shared()
        lanes = worker.begin() if worker is not None else None
        if self.module.uses_lanes:
            arrays.append(self._lanes_off if lanes is None else lanes)
        try:
            if state.step is None:
                self._driver(*arrays, *state.tail)
            else:
                state.step(*arrays)
        except InputError as exc:  # an index out of range: name the node and placeholder
            raise self._index_error(exc, inputs, binding) from None
        finally:
            if lanes is not None and worker is not None:
                worker.end()
        if state.views_only:
            outputs = state.outputs
        else:
            outputs = [o if isinstance(o, np.ndarray) else _late_output(o, inputs, storage)
                       for o in state.outputs]
        return outputs, [storage[i] if shape is None else storage[i].reshape(shape)
                         for i, shape in self._update_sources]


def _describe_nodes(program: Program, ids: list[int]) -> str:
    nodes = [program.graph.nx.nodes[i]["node"].describe() for i in ids]
    return nodes[0] if len(nodes) == 1 else "one of " + ", ".join(nodes)


def _late_output(recipe: tuple, inputs: Sequence[np.ndarray], storage: dict) -> np.ndarray:
    kind, where, shape = recipe
    source = inputs[where] if kind == "input" else storage[where]
    return source.reshape(shape)


def _writable(value: np.ndarray) -> np.ndarray:
    return np.array(value, copy=True, order="C")


def _signature(module: GeneratedModule) -> tuple:
    """The njit driver's Numba signature (``benchmarks/driver_variants`` use it)."""
    return driver_signature(CompileJob.of(module).driver_arguments)


_kernel_signature = kernel_signature


def compile_numba(program: Program, *, fastmath: bool = False, driver_jit: bool | None = None,
                  conv: ConvChoice = "auto", **options: Any) -> NumbaExecutable:
    """Compile ``program`` into a driver call (see ``graphcomp.backends.numba``).

    ``fastmath=True`` allows reassociation and approximate math (never the no-NaN/no-inf
    flags). ``driver_jit``: True compiles the driver with njit (one native call per step),
    False runs it as Python calling jitted kernels, None picks by program size. ``conv``:
    how convolutions run: ``"auto"`` (im2col + GEMM from a measured reduction length on,
    direct loops below it), ``"direct"`` or ``"im2col"`` (docs/convolutions.md).

    >>> # exe = compile_numba(build_program([x], [y])); exe.run([xv], {"N": 4})
    """
    start = time.perf_counter()
    note_compile_start()  # the compile helper measures idle cores from here (parallel.py)
    if has_loops(program):  # scans: a sequence of compiled stages (backends/numba/stages.py)
        _check_options(options, conv)
        return _compile_staged(program, fastmath, driver_jit, conv)
    lp, memory, module = generate_module(program, fastmath=fastmath, driver_jit=driver_jit,
                                         conv=conv, **options)
    return compile_generated(program, lp, memory, module, start)


def _compile_staged(program: Program, fastmath: bool, driver_jit: bool | None,
                    conv: ConvChoice, finish: Callable[..., Any] | None = None) -> Any:
    """A program with scans: Python drivers (they compile faster; docs/loops.md), bodies
    whose products take the lanes their loop holds (``BODY_LANES``; stages.py);
    ``driver_jit=True``: njit drivers without lanes and ``scan_loop``.
    ``finish`` replaces ``compile_generated`` for every module (``plan_modules``)."""
    compile_module = compile_generated if finish is None else finish

    def compile_body(body: Program, loop_text: Callable[[GeneratedModule], str]) -> Any:
        if has_loops(body):
            return _compile_staged(body, fastmath, driver_jit, conv, finish)
        began = time.perf_counter()
        note_compile_start()
        lp, plan, memory = prepare(body, conv)
        jit = BODY_DRIVER_JIT if driver_jit is None else driver_jit
        module = generate(lp, plan, memory, fastmath=fastmath, driver_jit=jit,
                          lanes=BODY_LANES and not jit)
        loop = loop_text(module)
        module.source += loop
        if module.display:  # f.source shows the loop with the rest of the program
            module.display += loop
        return compile_module(body, lp, memory, module, began)

    def compile_segment(segment: Program, lowered: LoweredProgram) -> NumbaExecutable:
        began = time.perf_counter()
        note_compile_start()
        lp, plan, memory = prepare_lowered(lowered, conv)
        jit = SEGMENT_DRIVER_JIT if driver_jit is None else driver_jit
        module = generate(lp, plan, memory, fastmath=fastmath, driver_jit=jit)
        return compile_module(segment, lp, memory, module, began)

    return compile_staged(program, compile_body, compile_segment)


@dataclass
class PlannedModule:
    """A stage's generated module, not compiled (``plan_modules``)."""

    memory: MemoryPlan
    module: GeneratedModule
    planned_only: bool = True  # stages.py compiles no scan_loop for it

    @property
    def source(self) -> str:
        return self.module.display or self.module.source


def plan_modules(program: Program, *, fastmath: bool = False, driver_jit: bool | None = None,
                 conv: ConvChoice = "auto", **options: Any
                 ) -> tuple[tuple[LoweredProgram, MemoryPlan, GeneratedModule] | None,
                            list[GeneratedModule]]:
    """Every module ``compile_numba`` would compile for ``program``, none compiled (a
    background compile hands them to another process): ``(generate_module's result, [its
    module])``, or ``(None, the stages' modules)`` for a program with scans."""
    if not has_loops(program):
        generated = generate_module(program, fastmath=fastmath, driver_jit=driver_jit,
                                    conv=conv, **options)
        return generated, [generated[2]]
    _check_options(options, conv)
    modules: list[GeneratedModule] = []

    def plan(program: Program, lp: LoweredProgram, memory: MemoryPlan,
             module: GeneratedModule, start: float) -> PlannedModule:
        modules.append(module)
        return PlannedModule(memory, module)

    _compile_staged(program, fastmath, driver_jit, conv, plan)
    return None, modules


def _check_options(options: dict[str, Any], conv: ConvChoice) -> None:
    if options:
        raise CompileError(f"unknown option(s) for backend 'numba': {', '.join(sorted(options))}")
    if conv not in CONV_CHOICES:
        raise CompileError(f"conv must be one of {', '.join(CONV_CHOICES)}, got {conv!r}")


def generate_module(program: Program, *, fastmath: bool = False, driver_jit: bool | None = None,
                    conv: ConvChoice = "auto", **options: Any
                    ) -> tuple[LoweredProgram, MemoryPlan, GeneratedModule]:
    """The passes and the code generator: everything before Numba compiles (one module: a
    program without scans)."""
    _check_options(options, conv)
    _refuse_loops(program)
    lp, plan, memory = prepare(program, conv)
    if driver_jit is None and not computes_gradients(program):
        driver_jit = False
    return lp, memory, generate(lp, plan, memory, fastmath=fastmath, driver_jit=driver_jit)


def computes_gradients(program: Program) -> bool:
    """Whether ``program`` computes a gradient (a training step). One that does not (an
    evaluation, an inference) gets a Python driver: it shares its kernels with the training
    step of the same model (each distinct kernel is a cached module of its own), and an njit
    driver would link and re-optimise all of them again. Measured on mlp-digits
    (docs/performance.md, "Kernels shared across functions"): the evaluation function's
    compile after the step's went from 4.38 s to 0.50 s (the step: 3.6 s)."""
    return any(node.role == "adjoint" for node in program.schedule)


def _refuse_loops(program: Program) -> None:
    """A program with scans is several modules (``compile_numba`` compiles it), never one."""
    for node in program.schedule:
        if node.op in LOOP_OPS:
            raise CompileError(
                f"{node.describe()}: a program with scan compiles into several modules; "
                "compile it with compile_numba (docs/loops.md)")


def compile_generated(program: Program, lp: LoweredProgram, memory: MemoryPlan,
                      module: GeneratedModule, start: float) -> NumbaExecutable:
    """Compile (or load from the cache) a generated module and wrap it as the executable."""
    from numba.core.compiler_lock import global_compiler_lock

    # A child forked while another thread loads or compiles would wait on these locks for
    # ever. The fork takes them in this order, the order a loading thread takes them.
    hold_during_fork(_LOAD_LOCK)
    hold_during_fork(global_compiler_lock)
    # One module load at a time: a background compile's thread and the caller (or another
    # such thread) may load the same library module, which runs in sys.modules half-made.
    with _LOAD_LOCK:
        release_dropped()  # modules of functions dropped since the last compile
        loaded, driver, cache_hit = compile_job(CompileJob.of(module))
    seconds = time.perf_counter() - start
    executable = NumbaExecutable(program, lp, memory, module, driver, seconds, cache_hit)
    track(executable, loaded)
    return executable
