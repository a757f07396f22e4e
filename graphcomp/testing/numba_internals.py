"""A window on a function compiled by the numba backend, for that backend's tests.

Each helper takes the ``gc.Function`` that ``gc.compile(..., backend="numba")`` returned and
reads (or, for ``replace_lane_worker``, swaps) one thing inside its executable. The tests go
through these helpers only, so a change to the executable's private attributes changes this
module and no test. Not for production code: nothing here is a stable API.

>>> import graphcomp as gc, numpy as np
>>> from graphcomp.testing import driver_argument_count, lane_worker, uses_native_driver
>>> with gc.Graph():
...     x = gc.placeholder((None,), "float64", name="x")
>>> f = gc.compile([x], gc.sum(x * 2.0), backend="numba", driver_jit=True)
>>> uses_native_driver(f), lane_worker(f) is None, driver_argument_count(f) > 0
(True, True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from graphcomp.runtime.function import Function


class LaneWorkerLike(Protocol):
    """What a compiled step asks of its lane worker (a ``LaneWorker`` or a test's stand-in)."""

    lanes: np.ndarray

    def in_this_process(self) -> bool:
        """False in a forked child: the step then takes the child's own worker."""
        ...

    def begin(self) -> np.ndarray | None:
        """The lanes array for one step, or None when another step holds it."""
        ...

    def end(self) -> None:
        """Give the lanes back after the step."""
        ...


def _executable(f: Function) -> Any:
    if f.backend != "numba":
        raise ValueError(f"a function compiled by the {f.backend!r} backend, not by numba")
    return f._executable


def lane_worker(f: Function) -> LaneWorkerLike | None:
    """The lane worker ``f``'s steps use (None when it splits no product across lanes).

    >>> # worker = lane_worker(step); int(worker.lanes[0, lanes.HELPED])
    """
    return _executable(f)._lane_worker


@contextlib.contextmanager
def replace_lane_worker(f: Function, worker: LaneWorkerLike | None) -> Iterator[None]:
    """Make ``f``'s steps use ``worker`` (None: no lanes) inside the ``with`` block.

    >>> import graphcomp as gc, numpy as np
    >>> from graphcomp.testing import lane_worker, replace_lane_worker
    >>> with gc.Graph():
    ...     x = gc.placeholder((None,), "float64", name="x")
    >>> f = gc.compile([x], gc.sum(x), backend="numba")
    >>> with replace_lane_worker(f, None):
    ...     float(f(np.ones(3)))
    3.0
    """
    executable = _executable(f)
    saved = executable._lane_worker
    executable._lane_worker = worker
    try:
        yield
    finally:
        executable._lane_worker = saved


def uses_native_driver(f: Function) -> bool:
    """True when ``f``'s driver is compiled by numba, False when it is a Python function.

    >>> import graphcomp as gc
    >>> from graphcomp.testing import uses_native_driver
    >>> with gc.Graph():
    ...     x = gc.placeholder((2,), "float64", name="x")
    >>> uses_native_driver(gc.compile([x], gc.sum(x), backend="numba", driver_jit=False))
    False
    """
    return bool(_executable(f).module.driver_jit)


def driver_argument_count(f: Function) -> int:
    """How many parameters the generated ``step`` takes: inputs, parameters, arenas and so on.

    >>> # assert nrt_allocations(f, x) == driver_argument_count(f)  # one record per argument
    """
    return len(_executable(f).module.arguments)


def library_modules(f: Function) -> tuple[str, ...]:
    """The texts of the modules ``f``'s driver module imports (each kernel, the helpers, the
    fast-math library: docs/architecture.md, "Module layout of generated code").

    >>> import graphcomp as gc
    >>> from graphcomp.testing import library_modules
    >>> with gc.Graph():
    ...     x = gc.placeholder((2,), "float64", name="x")
    >>> sum("def kernel(" in text for text in library_modules(gc.compile([x], gc.sum(x))))
    1
    """
    return tuple(_executable(f).module.libraries)


def module_globals(f: Function) -> dict[str, Any]:
    """The namespace of ``f``'s generated module: its kernels, helpers and driver by name.

    >>> import graphcomp as gc
    >>> from graphcomp.testing import module_globals
    >>> with gc.Graph():
    ...     x = gc.placeholder((2,), "float64", name="x")
    >>> f = gc.compile([x], gc.sum(x), backend="numba", driver_jit=True)
    >>> callable(module_globals(f)["step"])
    True
    """
    driver = _executable(f)._driver
    return getattr(driver, "py_func", driver).__globals__


def step_records(f: Function) -> Any:
    """The records ``f``'s module was rendered from (``backends/numba/program.StepProgram``):
    its buffers, calls, kernels and, for a Python driver, what each step runs.

    >>> import graphcomp as gc
    >>> from graphcomp.testing import step_records
    >>> with gc.Graph():
    ...     x = gc.placeholder((2, 3), "float64", name="x")
    >>> [call.target for call in step_records(gc.compile([x], gc.sum(x * x))).calls]
    ['kernel']
    """
    return _executable(f).module.program


def step_array_arguments(f: Function) -> int:
    """Arrays a Python driver's step passes to compiled functions per call (numba makes one
    NRT record for each): every array argument of its kernel and helper calls, ``np.dot``'s
    excepted (numpy's own), row segments' excepted (their C entries take integers).

    >>> # assert nrt_allocations(f, x) == step_array_arguments(f)
    """
    from graphcomp.backends.numba.program import Call

    program = step_records(f)
    return sum(1 for s in program.step_statements
               if isinstance(s, Call) and s.target != "dot"
               for a in s.args if a.kind in ("array", "special"))


def background_process_id(function: Function) -> int | None:
    """The id of the process compiling ``function`` in the background (None when none is:
    no background compile, or its cache held every module); waits until the compile's thread
    has decided whether it needs one."""
    pending = function._pending
    return None if pending is None else pending.pid
