"""The graphs' step locks, and what ``os.fork`` does with them.

Every call of a compiled function holds its graph's lock (``graph_lock``). A fork while
another thread is inside a step used to hang for good: OpenBLAS's own ``pthread_atfork``
handler stops its thread pool under the running GEMM, whose caller then spins in
``exec_blas`` forever, and the child inherits the graph's lock held by a thread it does not
have. So before a fork, ``os.register_at_fork`` makes the forking thread take every graph's
lock, waiting for the steps in flight to finish; once the fork is done it releases them, in
the parent and in the child (where it is the same thread). No step runs while the process
forks, so neither side inherits a step half done. While a fork waits, new calls wait for it
(``wait_for_fork``): a thread stepping in a loop would otherwise take its graph's lock again
and again before the forking thread gets it.

A backend adds locks of its own with ``hold_during_fork`` (numba's compiler lock: a child
forked while another thread compiled would wait on it for ever); the fork takes them after
the graphs' locks, so a step that compiles under its graph's lock cannot deadlock it.

>>> import graphcomp as gc
>>> graph = gc.Graph()
>>> graph_lock(graph) is graph_lock(graph)
True
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol


class Lockable(Protocol):
    """A lock a fork may hold: ``acquire()`` blocks until it is taken."""

    def acquire(self) -> Any:
        """Take the lock."""
        ...

    def release(self) -> None:
        """Give it back."""
        ...


_GRAPH_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()
_EXTRA_LOCKS: list[Lockable] = []
_held_over_fork: list[Lockable] = []
forking = False  # a fork is waiting for the steps in flight (read by every call)
_fork_done = threading.Event()
_fork_done.set()


def wait_for_fork() -> None:
    """Block while a fork waits for the steps in flight (call it holding no graph's lock)."""
    _fork_done.wait()


def graph_lock(graph: Any) -> threading.RLock:
    """The lock every call of a function compiled from ``graph`` holds (one per graph)."""
    with _GUARD:
        lock = _GRAPH_LOCKS.get(graph)
        if lock is None:
            lock = _GRAPH_LOCKS[graph] = threading.RLock()
        return lock


def hold_during_fork(lock: Lockable) -> None:
    """Make every fork hold ``lock`` (after the graphs' locks) until it is done. The lock
    must be released by the thread that took it in the child too (an RLock is)."""
    with _GUARD:
        if not any(held is lock for held in _EXTRA_LOCKS):
            _EXTRA_LOCKS.append(lock)


def _before_fork() -> None:
    """Wait for every step in flight and hold every graph's lock (and the registry's, and
    the backends' locks) until the fork is done. A thread takes one graph's lock at a time,
    so taking them one after another cannot deadlock."""
    global forking
    _GUARD.acquire()
    _fork_done.clear()
    forking = True
    locks: list[Lockable] = [*_GRAPH_LOCKS.values(), *_EXTRA_LOCKS]
    for lock in locks:
        lock.acquire()
    _held_over_fork[:] = locks


def _after_fork() -> None:
    """Release what ``_before_fork`` took (the parent and the child run this alike)."""
    global forking
    locks = _held_over_fork[:]
    _held_over_fork.clear()
    for lock in reversed(locks):
        lock.release()
    forking = False
    _fork_done.set()
    _GUARD.release()


def _after_fork_in_child() -> None:
    global _fork_done
    # A thread the child does not have may have been inside the event's own lock.
    _fork_done = threading.Event()
    _after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork_in_child)
