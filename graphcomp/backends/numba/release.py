"""What a dropped compiled function gives back, so memory stays bounded over many compiles.

A generated module lives in ``sys.modules`` (``cache.load_generated_module``) and holds the
numba dispatchers of its kernels and driver; it was never released, so each distinct compile
kept its module for the life of the process.

``track(executable, module)`` notes which module an executable runs. When the executable is
garbage-collected its module is queued; ``release_dropped()`` (every compile calls it) then
drops the module from ``sys.modules`` and its source lines from ``linecache``, unless a live
executable still runs it (the same graph compiled twice shares one module).

What numba keeps is not released: its JIT engine owns the LLVM module and machine code of
every compiled function, and numba itself keeps the dispatchers alive (measured in
docs/guarantees.md); numba has no way to free compiled code.

>>> release_dropped() >= 0
True
"""

from __future__ import annotations

import linecache
import sys
import types
import weakref
from typing import Any

_module_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # executable -> module
_dropped: list[types.ModuleType] = []  # modules whose executable was collected


def track(executable: Any, module: types.ModuleType) -> None:
    """Queue ``module`` for release once ``executable`` is garbage-collected."""
    _module_of[executable] = module
    # Only a list append here: a finalizer runs inside the garbage collector, at any point.
    weakref.finalize(executable, _dropped.append, module).atexit = False


def release_dropped() -> int:
    """Release the modules of collected executables that no live one runs; returns how many."""
    in_use = {id(module) for module in list(_module_of.values())}
    released = 0
    while _dropped:
        module = _dropped.pop()
        if id(module) not in in_use:
            _forget(module)
            released += 1
    return released


def _forget(module: types.ModuleType) -> None:
    name = module.__name__
    if sys.modules.get(name) is module:
        del sys.modules[name]
    path = getattr(module, "__file__", None)
    if path is not None:
        linecache.cache.pop(path, None)
