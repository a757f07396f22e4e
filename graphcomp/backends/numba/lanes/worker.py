"""The lane helper: the process's helper thread and the lanes array it serves (``LaneWorker``).

The thread runs ``serve`` (``code.py``) from a module of its own in graphcomp's kernel cache
(``source.helper_text``), without the GIL, until ``PARK_SECONDS`` pass without a step; then
it returns to Python and waits on an event, which ``begin`` sets. ``begin``/``end`` bracket a
step: the caller owns the lanes (a second thread's step gets None and runs its products whole)
and OpenBLAS runs on one thread, so its pool never competes with the two lanes.

>>> int(lanes_array()[HEADER, ENABLED]), lanes_array(enabled=True).shape == (ROWS, FIELDS)
(0, True)
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from graphcomp.backends.numba.blas import BlasLibrary, blas_thread_count, numpy_blas
from graphcomp.backends.numba.lanes.protocol import (
    ACTIVE,
    ENABLED,
    FIELDS,
    HEADER,
    PARK_SECONDS,
    PARKED,
    ROWS,
    SPIN_SECONDS,
)
from graphcomp.backends.numba.lanes.source import helper_text

# The helper calls usleep, sched_yield and clock_gettime from libc.
SUPPORTED = os.name == "posix"


def lanes_array(enabled: bool = False) -> np.ndarray:
    """A fresh lanes array (the layout: ``protocol.py``), zeroed; ``enabled`` sets ENABLED.

    >>> lanes_array().shape == (ROWS, FIELDS), int(lanes_array(enabled=True)[HEADER, ENABLED])
    (True, 1)
    """
    lanes = np.zeros((ROWS, FIELDS), dtype=np.int64)
    lanes[HEADER, ENABLED] = int(enabled)
    return lanes


def compile_serve(library: BlasLibrary) -> Any:
    """The helper thread's ``serve``, compiled (or loaded from the kernel cache). A
    background compile's process calls it too, so that loading its modules compiles nothing."""
    from numba import types

    from graphcomp.backends.numba.cache import load_generated_module, record_compiled

    module, path = load_generated_module(helper_text(library))
    module.serve.compile((types.Array(types.int64, 2, "C"), types.int64, types.int64))
    record_compiled(path)
    return module.serve


class LaneWorker:
    """The process's helper thread and the lanes array it serves (one per process).

    >>> worker = LaneWorker.shared()
    >>> lanes = worker.begin()  # None when another step holds the lanes
    >>> if lanes is not None:
    ...     worker.end()
    """

    _shared: LaneWorker | None = None
    _shared_lock = threading.Lock()

    def __init__(self, library: BlasLibrary) -> None:
        self.lanes = lanes_array(enabled=True)
        self._owner = threading.Lock()
        self._wake = threading.Event()
        self._library = library
        self._threads = blas_thread_count()
        self._blas_threads = 0
        self._pid = os.getpid()
        self._serve = compile_serve(library)
        self.lanes[HEADER, PARKED] = 1
        self._thread = threading.Thread(target=self._run, name="graphcomp-lanes", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> LaneWorker | None:
        """The process's worker, started on first use; None without numpy's BLAS, a POSIX
        libc or the JIT, or when ``GRAPHCOMP_LANES=0``."""
        from numba import config

        library = numpy_blas()
        if (library is None or not SUPPORTED or getattr(config, "DISABLE_JIT", False)
                or os.environ.get("GRAPHCOMP_LANES") == "0"):
            return None
        with cls._shared_lock:
            if cls._shared is None or cls._shared._pid != os.getpid():
                cls._shared = LaneWorker(library)  # after a fork the old thread is gone
            return cls._shared

    @classmethod
    def _forget_in_child(cls) -> None:
        """After a fork, in the child: its helper thread is gone, and the lock may have been
        held by a thread the child does not have (one starting the helper)."""
        cls._shared_lock = threading.Lock()
        cls._shared = None

    def in_this_process(self) -> bool:
        """False in a child forked after the helper started (it has no helper thread)."""
        return self._pid == os.getpid()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.lanes[HEADER, PARKED] = 0
            self._serve(self.lanes, int(SPIN_SECONDS * 1e9), int(PARK_SECONDS * 1e9))

    def begin(self) -> np.ndarray | None:
        """Take the lanes for one step (None if another thread's step has them)."""
        if not self._owner.acquire(blocking=False):
            return None
        if self._threads is not None:
            self._blas_threads = self._threads[0]()
            if self._blas_threads > 1:
                self._threads[1](1)
        self.lanes[HEADER, ACTIVE] = 1
        if self.lanes[HEADER, PARKED]:
            self._wake.set()
        return self.lanes

    def end(self) -> None:
        """Give the lanes back and restore OpenBLAS's thread count."""
        self.lanes[HEADER, ACTIVE] = 0
        if self._blas_threads > 1 and self._threads is not None:
            self._threads[1](self._blas_threads)
        self._owner.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=LaneWorker._forget_in_child)
