"""``gc.compile`` and the ``Function`` it returns."""

from __future__ import annotations

import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from graphcomp.backends.base import get_backend
from graphcomp.errors import CompileError, CompileWarning
from graphcomp.ops import Parameter, Tensor
from graphcomp.runtime import locks
from graphcomp.runtime.binding import check_inputs, match_arguments
from graphcomp.runtime.program import Program, build_program

DEFAULT_BACKEND = "numba"
COMPILE_MODES = ("eager", "background")
DEVICE_BACKENDS = ("cuda",)  # backends whose outputs can stay on a device

# True: fresh numpy arrays; False: read-only views of host buffers; "device": device arrays
CopyOutputs = bool | Literal["device"]

# (thread, BLAS thread count): counts that a background compile dropped on another thread
# lowered, restored at that thread's next call (background.restore_blas_threads)
BLAS_RESTORES: list[tuple[int, int]] = []

Updates = Sequence[tuple[Parameter, Tensor]] | Mapping[Parameter, Tensor] | None


class Function:
    """A compiled graph: call it with arrays, get arrays back; parameter updates happen in place.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     x = gc.placeholder((None,), "float64", name="x")
    ...     total, doubled = gc.sum(x), 2.0 * x
    >>> f = gc.compile([x], [total, doubled], backend="numpy")
    >>> f(np.arange(3.0))
    [array(3.), array([0., 2., 4.])]
    >>> f(x=np.ones(2))[0]
    array(2.)
    """

    def __init__(self, program: Program, executable: Any, backend: str, single_output: bool,
                 compile_seconds: float, copy_outputs: CopyOutputs = True) -> None:
        self.program = program
        self.backend = backend
        self._executable = executable
        self._single_output = single_output
        # Runners for argument kinds (_fast_key) that passed check_inputs: checking them
        # again, and the generic update handling, cost more than a small step.
        self._fast: dict[tuple, Any] = {}
        self.compile_seconds = compile_seconds
        self._lock = locks.graph_lock(program.graph)
        self._copy_outputs = copy_outputs
        self._pending: Any = None  # a background compile (compile_mode="background")
        self._in_use = backend
        self.interpreted_calls = 0  # calls run on numpy while the compile was pending
        self.switch_seconds: float | None = None  # from gc.compile to the switch
        # whether another process compiled the code switched to (else: loaded from the cache)
        self.compiled_elsewhere = False

    @property
    def backend_in_use(self) -> str:
        """The backend the next call runs on: ``"numpy"`` while a background compile is
        pending (or after it failed), then the backend asked for."""
        return self._in_use

    def ready(self) -> bool:
        """Whether the function runs on the backend asked for (switching to it first if its
        background compile has just finished; once the compiling process has ended, this
        waits for its modules' load, ~0.1-0.5 s, at most 2 s)."""
        with self._lock:
            self._switch_if_done()
        return self._in_use == self.backend

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for a background compile and switch to it;
        whether the function now runs on the backend asked for.

        >>> # step = gc.compile(..., compile_mode="background"); step.wait(); step.source
        """
        pending = self._pending
        if pending is not None:
            pending.wait(timeout)
        return self.ready()

    def _switch_if_done(self) -> None:
        pending = self._pending
        if pending is None:
            return
        pending.await_load()
        if not pending.done():
            return
        self._pending = None
        try:
            executable = pending.finish()
        except Exception as exc:  # any failure leaves the numpy backend serving
            warnings.warn(CompileWarning(
                f"{self!r}: compiling for {self.backend!r} failed, so the function goes on "
                f"running on the numpy backend: {exc}"), stacklevel=4)
            return
        self._executable = executable
        self._fast.clear()
        self._in_use = self.backend
        self.switch_seconds = time.perf_counter() - pending.started
        self.compiled_elsewhere = pending.used_process

    @property
    def cache_hit(self) -> bool:
        """True when the backend loaded compiled code from its disk cache."""
        return bool(getattr(self._executable, "cache_hit", False))

    @property
    def source(self) -> str | None:
        """The generated source code (None for the numpy interpreter)."""
        return getattr(self._executable, "source", None)

    @property
    def input_names(self) -> list[str | None]:
        """Names of the placeholders, in positional order."""
        return [n.name for n in self.program.inputs]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # One call at a time per graph: a compiled function reuses its buffers across calls,
        # and every function of a graph reads and updates the same parameters.
        if locks.forking:  # wait outside the lock, which the fork is about to take
            locks.wait_for_fork()
        if BLAS_RESTORES:  # a function dropped while compiling had lowered them
            from graphcomp.backends.numba.background import restore_blas_threads

            restore_blas_threads()
        with self._lock:
            return self._call(args, kwargs)

    def _call(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        # A training loop feeds arrays of the same kind every step: after one checked call,
        # those skip argument matching, checking and, where the backend offers a runner for
        # the binding (every update written in place), the generic update handling too.
        if self._pending is not None:
            self._switch_if_done()
            if self._pending is not None:
                self.interpreted_calls += 1
                self._pending.serving()
        on_device = isinstance(self._copy_outputs, str)  # "device"
        key = _fast_key(args) if not kwargs and not on_device else None
        fast = self._fast.get(key) if key is not None else None
        if fast is not None:
            outputs = fast(args)
            if self._copy_outputs:
                results = [o.copy() for o in outputs]
            else:
                results = [_read_only_view(o) for o in outputs]
            return results[0] if self._single_output else results
        values = match_arguments(self.program.inputs, args, kwargs)
        # A backend with a device reads device-array arguments in place (no host copy).
        executable: Any = self._executable
        arrays, binding = check_inputs(self.program.inputs, values, self.program.dims,
                                       device_arrays=hasattr(executable, "run_on_device"))
        if on_device:  # device arrays out; new parameter values stay on the device
            results = executable.run_on_device(arrays, binding)
            return results[0] if self._single_output else results
        if (key is not None and len(self._fast) < 64
                and all(a is b for a, b in zip(args, arrays, strict=True))):
            runner = getattr(self._executable, "runner", None)
            fast = runner(binding) if runner is not None else None
            if fast is not None and self._outputs_are_fresh(fast):
                self._fast[key] = fast
        outputs, new_values = self._executable.run(arrays, binding)
        return self._finish(outputs, new_values)

    def _outputs_are_fresh(self, fast: Any) -> bool:
        """A runner's outputs may be copied directly only when none of them shares memory
        with a parameter (the update lands there) or outputs are copied anyway."""
        return bool(self._copy_outputs) or not getattr(fast, "outputs_share_parameters", True)

    def _finish(self, outputs: list[np.ndarray], new_values: list[np.ndarray]) -> Any:
        # Outputs are copied before any update lands: one may be a view of a parameter.
        storage = self.program.graph.parameter_values
        targets = [storage[param.id] for param, _ in self.program.updates]
        if self._copy_outputs:
            results = [np.array(o, copy=True) for o in outputs]
        else:  # views of the function's buffers, overwritten by the next call; an output
            # that shares a parameter's storage is still copied (the update lands there)
            results = [np.array(o, copy=True) if any(np.may_share_memory(o, t) for t in targets)
                       else _read_only_view(o) for o in outputs]
        # A new value that aliases another updated parameter (a swap) must be read first.
        # (A backend that already wrote the new value in place returns the storage itself.)
        new_values = [
            np.array(value, copy=True)
            if value is not own and _may_alias(value, own, targets)
            else value
            for own, value in zip(targets, new_values, strict=True)
        ]
        for target, value in zip(targets, new_values, strict=True):
            if value is not target:  # a backend may have updated the storage in place
                np.copyto(target, value)
        return results[0] if self._single_output else results

    def __repr__(self) -> str:
        names = ", ".join(str(n) for n in self.input_names)
        return f"<graphcomp.Function({names}) backend={self.backend!r}>"


def _may_alias(value: np.ndarray, own: np.ndarray, targets: list[np.ndarray]) -> bool:
    """Whether ``value`` may share memory with a target other than ``own``. An array that owns
    its memory (a fresh result) shares it only when it is one of the targets itself."""
    if isinstance(value, np.ndarray) and value.base is None:
        return any(value is t for t in targets if t is not own)
    return any(np.may_share_memory(value, t) for t in targets if t is not own)


def _fast_key(args: tuple) -> tuple | None:
    """What decides whether arrays pass ``check_inputs`` unchanged: their type, shape, dtype,
    strides (C-contiguous or not) and writeability (numba types read-only arrays apart)."""
    try:
        return tuple([(type(a), a.shape, a.dtype, a.strides, a.flags.writeable) for a in args])
    except AttributeError:  # not arrays: the checked path converts them
        return None


def _read_only_view(array: Any) -> np.ndarray:
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


def compile(
    inputs: Sequence[Tensor],
    outputs: Tensor | Sequence[Tensor],
    updates: Updates = None,
    backend: str = DEFAULT_BACKEND,
    copy_outputs: CopyOutputs = True,
    compile_mode: str = "eager",
    implicit_updates: bool = True,
    **options: Any,
) -> Function:
    """Compile a graph into a callable ``Function``.

    ``outputs`` may be one tensor (the call returns one array) or a list (returns a list).
    ``updates`` are ``(parameter, new_value)`` pairs applied after all outputs are computed.
    Outputs are fresh arrays; with ``copy_outputs=False`` they are read-only views of the
    function's own buffers instead (no copy), valid until the next call of a function of the
    same graph. With ``copy_outputs="device"`` (the cuda backend) they are device arrays
    (views of the function's device buffers, valid until its next call) and new parameter
    values stay on the device until read. The cuda backend reads arguments that are device
    arrays (``__cuda_array_interface__``) in place, whatever ``copy_outputs`` says.

    State that layers keep (batch norm's running statistics) is updated without being listed:
    every output or update that needs such a layer's result makes the function apply the
    layer's implicit updates too; ``implicit_updates=False`` leaves them out.

    ``compile_mode="background"`` (numba backend) returns at once: the calls run on the numpy
    backend while another process compiles, and the function switches to the compiled code
    between two calls once it is ready (``backend_in_use``, ``ready()``, ``wait()``). The
    parameters live in the graph, so training goes on across the switch. A failed background
    compile leaves the function on numpy with a ``CompileWarning``.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     x = gc.placeholder((2,), "float64", name="x")
    ...     W = gc.parameter(np.zeros(2), name="W")
    >>> step = gc.compile([x], gc.sum(W), updates=[(W, W + x)], backend="numpy")
    >>> step(np.ones(2)), step(np.ones(2)), W.value   # outputs see the value before the update
    (array(0.), array(2.), array([2., 2.]))
    """
    single = isinstance(outputs, Tensor)
    output_list = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    input_list = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if compile_mode not in COMPILE_MODES:
        raise CompileError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, "
                           f"not {compile_mode!r}")
    _check_copy_outputs(copy_outputs, backend)
    start = time.perf_counter()
    program = build_program(input_list, output_list, updates, implicit_updates)
    executable: Any = None
    pending: Any = None
    if compile_mode == "background" and backend == "numba":
        from graphcomp.backends.numba.background import start_compile

        # (executable, None): a warm cache, loaded here; (None, None): compile here
        executable, pending = start_compile(program, options)
    if pending is not None:
        executable = get_backend("numpy")(program)
    elif executable is None:
        executable = get_backend(backend)(program, **options)
        if backend == "numba":  # a later background compile of it loads the cache at once
            from graphcomp.backends.numba.background import note_warm

            note_warm(program, options)
    seconds = time.perf_counter() - start
    function = Function(program, executable, backend, single, seconds, copy_outputs)
    if pending is not None:
        function._pending = pending
        function._in_use = "numpy"
        weakref.finalize(function, pending.drop)
    return function


def _check_copy_outputs(copy_outputs: Any, backend: str) -> None:
    if isinstance(copy_outputs, str) and copy_outputs != "device":
        raise CompileError(f"copy_outputs must be True, False or 'device', not "
                           f"{copy_outputs!r}")
    if isinstance(copy_outputs, str) and backend not in DEVICE_BACKENDS:
        raise CompileError(
            f"copy_outputs='device' needs a backend that runs on a device "
            f"({', '.join(repr(b) for b in DEVICE_BACKENDS)}); backend {backend!r} has "
            "none: use copy_outputs=True (fresh numpy arrays) or False (read-only views)")
