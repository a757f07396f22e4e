"""The text of a graphcomp module whose functions the generated modules inline
(fastmath.py, prefetch.py, ops/philox.py), without its docstring.

Background compiles plan in threads (backends/numba/background.py), and CPython 3.11's
``ast.parse`` can fail when two threads run it at once ("AST constructor recursion depth
mismatch", CPython issue gh-106905), so the parse holds a lock, and each file is parsed once
per process.

>>> from graphcomp.backends.numba.render import FASTMATH_FILE
>>> text = source_without_docstring(FASTMATH_FILE)
>>> "njit" in text and FASTMATH_FILE.read_text().startswith(text)
False
"""

from __future__ import annotations

import ast
import functools
import threading
from pathlib import Path

_PARSE_LOCK = threading.Lock()


@functools.cache
def source_without_docstring(path: Path) -> str:
    """The text of the Python file at ``path`` after its module docstring."""
    text = path.read_text()
    with _PARSE_LOCK:
        tree = ast.parse(text)
    lines = text.splitlines()
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        lines = lines[first.end_lineno:]
    return "\n".join(lines).strip("\n")
