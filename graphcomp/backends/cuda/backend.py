"""``compile_cuda``: the shared passes, the CUDA records and kernels, and the executable
that runs them: buffers planned on the device once per binding of the dims, parameters kept
on the device between calls, one stream per compiled function.
"""

from __future__ import annotations

import hashlib
import linecache
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp.backends.cuda import device
from graphcomp.backends.cuda.kernels import DeviceKernel
from graphcomp.backends.cuda.op_table import SIMULATOR_MATH
from graphcomp.backends.cuda.program import DeviceCall, DeviceProgram, plan_step, split_loops
from graphcomp.backends.cuda.render import render_module
from graphcomp.backends.numba.names import Names
from graphcomp.backends.numba.program import Buffer
from graphcomp.errors import CompileError
from graphcomp.ir import dim_value
from graphcomp.loops import LOOP_OPS
from graphcomp.ops import get_op
from graphcomp.passes.fusion import FusionPlan, plan_kernels
from graphcomp.passes.lowered import Dim, LoweredProgram
from graphcomp.passes.lowering import lower
from graphcomp.passes.memory import MemoryPlan, plan_memory
from graphcomp.passes.simplify import (
    eliminate_common,
    eliminate_dead,
    fold_constants,
    isolate_outputs,
    simplify_powers,
)
from graphcomp.runtime.binding import DeviceArgument
from graphcomp.runtime.program import Program

ELEMENT_THREADS = 256  # threads per block of an elementwise kernel (32 on the simulator)
MAX_BLOCKS = 4096  # grid-stride loops cover the rest


def compile_cuda(program: Program) -> CudaExecutable:
    """Compile ``program`` for the CUDA backend (``gc.compile(..., backend="cuda")``).

    Raises ``CompileError`` without numba-cuda, without a GPU (unless the simulator is on:
    ``NUMBA_ENABLE_CUDASIM=1``), or for a ``scan``.
    """
    start = time.perf_counter()
    cuda = device.load_cuda()
    lp, plan, memory, records = prepare_records(program, small_blocks=device.is_simulated())
    source = render_module(records.kernels.kernels)
    functions = load_module(source, cuda, device.is_simulated())
    executable = CudaExecutable(program, lp, memory, records, source, functions,
                                time.perf_counter() - start)
    executable._transposed = set(plan.transposed_views)
    return executable


def prepare_records(program: Program, small_blocks: bool = False
                    ) -> tuple[LoweredProgram, FusionPlan, MemoryPlan, DeviceProgram]:
    """The shared passes (no convolution lowering, batching or BLAS accumulation: those
    serve the CPU's BLAS), merged loops split, the memory plan, and the step's records.
    ``small_blocks``: 8-thread reductions and 4 x 4 tiles (the simulator)."""
    for node in program.schedule:
        if node.op in LOOP_OPS:
            raise CompileError(f"{node.describe()}: the CUDA backend does not compile scan "
                               "yet; compile this function with backend=\"numpy\"")
    lp = lower(program)
    lp = isolate_outputs(eliminate_dead(simplify_powers(eliminate_common(fold_constants(lp)))))
    plan = split_loops(plan_kernels(lp))
    memory = plan_memory(lp, plan)
    names = Names(lp, reserved=("cuda", "numba", "np", "math", "fm"))
    return lp, plan, memory, plan_step(lp, plan, memory, names, small_blocks)


def load_module(source: str, cuda: Any, simulated: bool = False) -> dict[str, Any]:
    """Run the module text (kept in ``linecache`` under a name of its own, so tracebacks show
    it and the simulator tells its shared arrays apart by line)."""
    import numba

    name = f"<graphcomp-cuda-{hashlib.sha256(source.encode()).hexdigest()[:16]}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    namespace: dict[str, Any] = {"cuda": cuda, "numba": numba, "np": np, "math": math,
                                 "fm": SIMULATOR_MATH if simulated else math}
    exec(compile(source, name, "exec"), namespace)
    return namespace


# A kernel launch (function, grid, block, arguments), or a cuBLAS product.
Launch = tuple[Any, tuple, tuple, tuple] | device.CublasProduct


@dataclass
class _Bound:
    """Device buffers and launch arguments for one binding of the dims."""

    views: dict[int, Any]
    launches: list[Launch | DeviceCall]
    inputs: list[Any]
    staging: dict[int, Any]
    binding: dict[str, int]


class CudaExecutable:
    """Runs the step's calls in order on one stream; see the module docstring."""

    def __init__(self, program: Program, lp: LoweredProgram, memory: MemoryPlan,
                 records: DeviceProgram, source: str, functions: dict[str, Any],
                 compile_seconds: float) -> None:
        self.program = program
        self.lp = lp
        self.memory = memory
        self.records = records
        self.source = source
        self.compile_seconds = compile_seconds
        self.cache_hit = False
        self._functions = functions
        self._stream = device.new_stream()
        self._states: dict[tuple, _Bound] = {}
        self._constants = {op.id: device.to_device(_at_least_1d(np.asarray(op.attrs["value"])))
                           for op in lp.ops.values() if op.op == "constant"}
        self._parameters: dict[int, tuple[Any, np.ndarray]] = {}  # storage id -> (dev, host)
        self._transposed: set[int] = set()  # 2-D transposes a product reads as base.T
        self._cupy = device.gemm_library()
        self.gemm = "tiled kernel" if self._cupy is None else "cuBLAS (CuPy)"
        self._parameter_ids = list(dict.fromkeys(
            lp.ops[p].attrs["storage_id"] for p in lp.parameters()))
        self._updated = [lp.ops[p].attrs["storage_id"] for p, _ in lp.updates]
        self._fetchers = {sid: self._fetcher(sid) for sid in self._updated}

    @property
    def host_calls(self) -> list[DeviceCall]:
        """The calls that run an op's numpy implementation on the host."""
        return [c for c in self.records.calls if c.target == "host"]

    def run(self, inputs: Sequence[Any], binding: dict[str, int]
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The Function's checked call: outputs and new parameter values on the host (the
        Function writes the new values into the parameters' storage)."""
        state = self._state(binding)
        self._step(state, inputs)
        outputs = [self._to_host(state.views[v], v, binding) for v in self.lp.outputs]
        news = [self._to_host(state.views[p], p, binding) for p, _ in self.lp.updates]
        self._stream.synchronize()
        storage = self.program.graph.parameter_values
        for sid, value in zip(self._updated, news, strict=True):
            if storage.deferred_by(sid) is self:
                storage.cancel(sid)
            self._parameters[sid] = (self._parameters[sid][0], value.copy())
        return outputs, news

    def runner(self, binding: dict[str, int]) -> Callable[[Sequence[Any]], list[np.ndarray]]:
        """The Function's call for arrays that passed its checks once: outputs copied into
        host buffers of this binding (the Function copies them or returns read-only views);
        new parameter values stay on the device until read (``ParameterStore.defer``)."""
        state = self._state(binding)
        buffers = [np.empty(state.views[v].shape, self.lp.ops[v].dtype)
                   for v in self.lp.outputs]
        outputs = [b.reshape(_shape(self.lp.ops[v].shape, binding))
                   for b, v in zip(buffers, self.lp.outputs, strict=True)]
        views = [state.views[v] for v in self.lp.outputs]

        def run(inputs: Sequence[Any]) -> list[np.ndarray]:
            self._step(state, inputs)
            for view, buffer in zip(views, buffers, strict=True):
                view.copy_to_host(buffer, stream=self._stream)
            self._stream.synchronize()
            self._defer_updates()
            return outputs

        run.outputs_share_parameters = False  # type: ignore[attr-defined]
        return run

    def run_on_device(self, inputs: Sequence[Any], binding: dict[str, int],
                      host: bool = False) -> list[Any]:
        """The step with outputs left on the device (views of this function's device
        buffers, valid until its next call) or, with ``host``, copied to fresh host arrays;
        new parameter values stay on the device until read."""
        state = self._state(binding)
        self._step(state, inputs)
        if host:
            results = [self._to_host(state.views[v], v, binding) for v in self.lp.outputs]
        else:
            results = [_device_shaped(state.views[v], _shape(self.lp.ops[v].shape, binding))
                       for v in self.lp.outputs]
        self._stream.synchronize()
        self._defer_updates()
        return results

    def _state(self, binding: dict[str, int]) -> _Bound:
        key = tuple(binding.get(s, 0) for s in self.lp.symbols)
        return self._states.get(key) or self._bind(binding, key)

    def _step(self, state: _Bound, inputs: Sequence[Any]) -> None:
        """Parameters synchronised, inputs copied in (device to device for device arrays),
        every call launched in order, new values written into the parameters."""
        stream = self._stream
        self._sync_parameters()
        for target, array in zip(state.inputs, inputs, strict=True):
            if isinstance(array, DeviceArgument):
                source = device.as_device_array(array.array)
                target.copy_to_device(source.reshape(target.shape), stream=stream)
            else:
                target.copy_to_device(_at_least_1d(array), stream=stream)
        for launch in state.launches:
            if isinstance(launch, DeviceCall):
                self._run_on_host(launch, state, state.binding)
            elif isinstance(launch, device.CublasProduct):
                launch()
            else:
                function, grid, block, args = launch
                function[grid, block, stream](*args)
        self._write_updates(state)

    def _to_host(self, view: Any, value: int, binding: dict[str, int]) -> np.ndarray:
        shape = _shape(self.lp.ops[value].shape, binding)
        return np.asarray(view.copy_to_host(stream=self._stream)).reshape(shape)

    def _sync_parameters(self) -> None:
        """Upload a parameter whose host storage changed since the device copy was made (an
        ``assign``, a load, another function's update). A value this function left newer on
        the device (a fetch pending in the store) is current as it is."""
        storage = self.program.graph.parameter_values
        for sid in self._parameter_ids:
            if storage.deferred_by(sid) is self:
                continue
            host = storage[sid]  # runs another function's pending fetch first
            known = self._parameters.get(sid)
            if known is None or not np.array_equal(known[1], host, equal_nan=True):
                target = device.to_device(_at_least_1d(host), self._stream)
                if known is not None:
                    known[0].copy_to_device(target, stream=self._stream)
                    target = known[0]
                self._parameters[sid] = (target, np.array(host, copy=True))

    def _defer_updates(self) -> None:
        storage = self.program.graph.parameter_values
        for sid in self._updated:
            storage.defer(sid, self._fetchers[sid], self)

    def _fetcher(self, sid: int) -> Callable[[], None]:
        def fetch() -> None:
            """Copy the device's value into the host storage (run by the store on a read)."""
            host = self.program.graph.parameter_values.raw(sid)
            target = self._parameters[sid][0]
            value = np.asarray(target.copy_to_host(stream=self._stream))
            self._stream.synchronize()
            np.copyto(host, value.reshape(host.shape))
            self._parameters[sid] = (target, host.copy())

        return fetch

    def _write_updates(self, state: _Bound) -> None:
        """New parameter values not computed in place: staged first (two updates may swap
        parameters), then copied into the parameters' device arrays."""
        moves = [(p, v) for p, v in self.lp.updates if v not in self.memory.in_place]
        for _, value in moves:
            state.staging[value].copy_to_device(state.views[value], stream=self._stream)
        for param, value in moves:
            state.views[param].copy_to_device(state.staging[value], stream=self._stream)

    def _run_on_host(self, call: DeviceCall, state: _Bound, binding: dict[str, int]) -> None:
        op = self.lp.ops[call.node]
        self._stream.synchronize()
        arrays = []
        for value in op.inputs:
            source = self.lp.ops[value]
            base = source.inputs[0] if value in self._transposed else value
            host = self._to_host(state.views[base], base, binding)
            arrays.append(host.T if value in self._transposed else host)
        shape = _shape(op.shape, binding)
        with np.errstate(all="ignore"):
            result = get_op(op.op).numpy_impl(arrays, dict(op.attrs), shape)
        state.views[op.id].copy_to_device(
            _at_least_1d(np.ascontiguousarray(np.asarray(result, dtype=op.dtype))),
            stream=self._stream)

    def _bind(self, binding: dict[str, int], key: tuple) -> _Bound:
        views, arenas = self._views(binding)
        inputs = [views[v] for v in self.lp.inputs]
        dims = device.to_device(np.array(key or (0,), dtype=np.int64))
        launches: list[Launch | DeviceCall] = []
        for call in self.records.calls:
            if call.target == "host" or call.kernel is None:
                launches.append(call)
                continue
            launch = self._launch(call.kernel, call, views, binding, dims)
            if launch is not None:
                launches.append(launch)
        staging = {v: self._zeros(self.lp.ops[v].shape, self.lp.ops[v].dtype, binding)
                   for _, v in self.lp.updates if v not in self.memory.in_place}
        state = _Bound(views, launches, inputs, staging, dict(binding))
        state.views["arenas"] = arenas  # type: ignore[index]  # kept alive with the views
        self._states[key] = state
        return state

    @staticmethod
    def _zeros(shape: Sequence[Dim], dtype: np.dtype, binding: dict[str, int]) -> Any:
        sizes = _shape(shape, binding) or (1,)
        return device.device_zeros(math.prod(sizes), dtype).reshape(sizes)

    def _views(self, binding: dict[str, int]) -> tuple[dict[int, Any], list[Any]]:
        """A device array for every materialised value: arena views, inputs, parameters,
        constants, and views of other buffers (aliases, contiguous slices)."""
        sizes: dict[str, int] = {}
        offsets: dict[int, int] = {}
        for slot in self.memory.slots:
            if slot.parent is not None:
                offsets[slot.index] = offsets[slot.parent] + slot.offset
                continue
            offsets[slot.index] = sizes.get(slot.dtype.str, 0)
            known, symbols = slot.size
            sizes[slot.dtype.str] = offsets[slot.index] + known * math.prod(
                binding[s] for s in symbols)
        arenas = {d: device.device_zeros(n, np.dtype(d)) for d, n in sizes.items()}
        views: dict[int, Any] = {}
        self._sync_parameters()
        for op in self.lp.ops.values():
            if op.op == "placeholder":
                views[op.id] = self._zeros(op.shape, op.dtype, binding)
            elif op.op == "parameter":
                views[op.id] = self._parameters[op.attrs["storage_id"]][0]
            elif op.op == "constant":
                views[op.id] = self._constants[op.id]
        for statement in self.records.statements:
            if isinstance(statement, Buffer):
                views[statement.value] = self._buffer_view(statement, views, arenas, offsets,
                                                            binding)
        return views, list(arenas.values())

    def _buffer_view(self, buffer: Buffer, views: dict[int, Any], arenas: dict[str, Any],
                     offsets: dict[int, int], binding: dict[str, int]) -> Any:
        shape = _shape(buffer.shape, binding) or (1,)
        size = math.prod(shape)
        if buffer.home == "slot" and buffer.slot is not None:
            start = offsets[buffer.slot]
            return arenas[buffer.dtype.str][start:start + size].reshape(shape)
        assert buffer.source is not None
        source = views[buffer.source]
        if buffer.home == "in_place":
            return source
        flat = source.reshape(math.prod(source.shape))
        start = sum(s * math.prod(_shape(after, binding)) for s, after in buffer.offset)
        return flat[start:start + size].reshape(shape)

    def _launch(self, kernel: DeviceKernel, call: DeviceCall, views: dict[int, Any],
                binding: dict[str, int], dims: Any) -> Launch | None:
        function = self._functions[call.function]
        reads = [views[v] for v in kernel.reads]
        out = views[call.node]
        extents = _shape(kernel.extents, binding)
        count = math.prod(_shape(kernel.launch_shape, binding))
        if count == 0:
            return None
        tail = (dims,) if kernel.uses_dims else ()
        if kernel.launch == "elements":
            threads = 32 if device.is_simulated() else ELEMENT_THREADS
            grid = (min(-(-count // threads), MAX_BLOCKS),)
            return function, grid, (threads,), (*reads, out, *extents, count, *tail)
        if kernel.launch == "rows":
            source = self.lp.ops[self.lp.ops[call.node].inputs[0]]
            inner = math.prod(_shape(source.shape, binding)) // count
            return function, (min(count, MAX_BLOCKS),), (kernel.block,), (
                *reads, out.reshape(out.size), *extents, count, inner, *tail)
        if self._cupy is not None:  # a GPU with CuPy: cuBLAS
            return device.CublasProduct(self._cupy, self._stream, reads[0], reads[1], out,
                                        kernel.transposed)
        tile = kernel.block
        tiles = (-(-extents[2] // tile), -(-extents[0] // tile))
        return function, tiles, (tile, tile), (*reads, out, *extents)


def _shape(shape: Sequence[Dim], binding: dict[str, int]) -> tuple[int, ...]:
    return tuple(int(dim_value(d, binding)) for d in shape)


def _at_least_1d(array: Any) -> Any:
    array = np.asarray(array)
    return array.reshape(1) if array.ndim == 0 else array


def _device_shaped(view: Any, shape: tuple[int, ...]) -> Any:
    """A device buffer in its value's shape (rank-0 values are kept as one-element arrays
    by the backend)."""
    return view.reshape(shape) if shape and view.shape != shape else view
