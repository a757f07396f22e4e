"""graphcomp's numpy coverage, written from the tables the code runs on.

``docs/numpy_coverage.md`` is this module's output (``python -m graphcomp.inspect.coverage >
docs/numpy_coverage.md``); a test regenerates it and fails when the committed page differs, so
the page cannot go stale. Two tables: every numpy name that works on a Tensor (from the numpy
protocol's tables) with the graphcomp function it calls, and every registry primitive with its
gradient and its Numba kernel (from the registry and the Numba op table).

>>> "| `exp` |" in coverage_markdown()
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graphcomp.backends.numba.op_table import OP_TABLE
from graphcomp.ops import REGISTRY
from graphcomp.ops import composites as C
from graphcomp.ops.numpy_protocol import FUNCTIONS, UFUNCS


def _how(function: Callable[..., Any]) -> str:
    """How a graphcomp function is built: one primitive of the same name, or several."""
    name = function.__name__
    if name in REGISTRY:
        return f"primitive `{name}`"
    if inspect.getmodule(function) is C:
        return "composite (`ops/composites.py`)"
    return f"built from primitives (`{inspect.getmodule(function).__name__}`)"  # type: ignore[union-attr]


def _gradient(function: Callable[..., Any]) -> str:
    op = REGISTRY.get(function.__name__)
    if op is None:
        return "through its primitives"
    return "yes" if op.differentiable else "none"


def _numpy_rows() -> list[str]:
    entries: dict[str, tuple[str, Callable[..., Any]]] = {}
    for name, function in UFUNCS.items():
        entries[name] = ("ufunc", function)
    for name, (function, _) in FUNCTIONS.items():
        entries.setdefault(name, ("function", function))
    rows = []
    for name in sorted(entries):
        kind, function = entries[name]
        rows.append(f"| `{name}` | {kind} | `gc.{function.__name__}` | {_how(function)} | "
                    f"{_gradient(function)} |")
    return rows


def _primitive_rows() -> list[str]:
    rows = []
    for name in sorted(REGISTRY):
        op = REGISTRY[name]
        kernel = OP_TABLE[name]
        how = f"`{kernel.template}`" if kernel.template else kernel.note
        how = how.replace("|", "\\|")  # a table cell
        gradient = "yes" if op.differentiable else "none"
        rows.append(f"| `{name}` | {op.kind} | {gradient} | {kernel.kind}: {how} |")
    return rows


def coverage_markdown() -> str:
    """The coverage page as markdown."""
    lines = [
        "# numpy coverage",
        "",
        "Written by `python -m graphcomp.inspect.coverage > docs/numpy_coverage.md` from the "
        "tables the code runs on; `tests/test_docs_coverage.py` fails when this page differs "
        "from what the code would write. Every function here runs on the numpy and numba "
        "backends (every primitive has a numba kernel: `tests/backends/test_numba_op_table.py`).",
        "How numpy's functions reach graphcomp, and what is refused: `docs/numpy.md`.",
        "",
        "## numpy names that work on a Tensor",
        "",
        "| numpy | kind | graphcomp | how | gradient |",
        "|---|---|---|---|---|",
        *_numpy_rows(),
        "",
        "## Registry primitives",
        "",
        "| op | kind | gradient | numba kernel |",
        "|---|---|---|---|",
        *_primitive_rows(),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(coverage_markdown(), end="")
