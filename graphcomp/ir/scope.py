"""Name scopes: ``with gc.name_scope("encoder"):`` prefixes the names of the parameters made
inside (``"encoder/dense/w"``). Scopes nest; they belong to the thread that enters them.

Inside a scope a parameter name must be new to its graph: layers made in a loop would
otherwise share checkpoint entries silently. Parameters named outside every scope are not
checked here (``gc.save`` refuses duplicates when it writes).

>>> import graphcomp as gc, numpy as np
>>> with gc.Graph():
...     with gc.name_scope("encoder"), gc.name_scope("dense"):
...         w = gc.parameter(np.zeros(2), name="w")
>>> w.name
'encoder/dense/w'
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from graphcomp.ir.node import user_source_line

_local = threading.local()


def _stack() -> list[str]:
    if not hasattr(_local, "scopes"):
        _local.scopes = []
    scopes: list[str] = _local.scopes
    return scopes


@contextlib.contextmanager
def name_scope(name: str) -> Iterator[str]:
    """Prefix ``name/`` to the names of parameters made inside; yields the full prefix.

    >>> import graphcomp as gc
    >>> with gc.name_scope("encoder"), gc.name_scope("layer1") as prefix:
    ...     prefix
    'encoder/layer1'
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"a name scope is a non-empty str without '/', got {name!r} "
                         f"(at {user_source_line()})")
    stack = _stack()
    stack.append(name)
    try:
        yield "/".join(stack)
    finally:
        stack.pop()


@contextlib.contextmanager
def root_scope() -> Iterator[None]:
    """Leave every active scope for the duration: for graph-wide state (``random.state``)."""
    saved = list(_stack())
    _stack().clear()
    try:
        yield
    finally:
        _stack()[:] = saved


def current_scope() -> str:
    """The active scopes joined by ``/`` (``""`` outside every scope)."""
    return "/".join(_stack())


def scoped_name(name: str) -> str:
    """``name`` under the active scopes: ``"encoder/w"`` inside ``name_scope("encoder")``."""
    return "/".join([*_stack(), name])
