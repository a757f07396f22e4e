"""Python names for the values of a generated module: short, valid and saying what they hold.

A user may name a parameter anything (any length, any alphabet, a keyword, a name another
node has too); the generated module needs ASCII identifiers that numba and LLVM accept and a
reader recognises. Sources keep their user's name behind a prefix (``x_`` placeholders,
``p_`` parameters, ``c_`` constants); computed values are named by their op and value id
(``tanh10``, ``matmul8``), so a call reads as ``k0(matmul8, p_b0, tanh10)``.

>>> identifier("hidden weights/0")
'hidden_weights_0'
>>> identifier("class"), identifier("ß" * 3), len(identifier("w" * 2000))
('class_', 'v', 24)
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable

from graphcomp.ir import dim_factors
from graphcomp.passes.lowered import Dim, LoweredProgram

# Longer user names are cut: the name is a reader's hint, the value id keeps it unique.
MAX_NAME = 24
_PREFIX = {"placeholder": "x", "parameter": "p", "constant": "c"}


def identifier(text: str, fallback: str = "v") -> str:
    """``text`` as a short ASCII identifier (``fallback`` when nothing of it is usable)."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_")[:MAX_NAME].rstrip("_")
    if not name:
        return fallback
    if name[0].isdigit():
        name = f"{fallback}{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    return name


def _node_name(label: str) -> str:
    """The user's name in a label such as ``%3 parameter "W0"`` ('' when it has none)."""
    return label.split('"')[1] if label.count('"') >= 2 else ""


class Names:
    """The name of every value and symbolic dim of a lowered program, unique in the module."""

    def __init__(self, lp: LoweredProgram, reserved: Iterable[str] = ()) -> None:
        self.values: dict[int, str] = {}
        taken = set(reserved)
        for op in lp.ops.values():
            prefix = _PREFIX.get(op.op)
            user = _node_name(op.labels[0]) if op.labels else ""
            if prefix and user:
                name = f"{prefix}_{identifier(user)}"
            elif prefix:
                name = f"{prefix}{op.id}"
            else:
                name = f"{identifier(op.op)}{op.id}"
            self.values[op.id] = _unique(name, taken)
        self.dims = {s: _unique(f"d_{identifier(s)}", taken) for s in lp.symbols}

    def __getitem__(self, value: int) -> str:
        return self.values[value]

    def dim(self, d: Dim) -> str:
        """A dim as an expression: its size, or the variable holding the bound symbol."""
        return str(d) if isinstance(d, int) else self.size((d,))

    def shape(self, shape: tuple[Dim, ...]) -> str:
        """A shape tuple expression: ``(d_N, 64)``, ``(16,)``, ``()``."""
        parts = [self.dim(d) for d in shape]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def size(self, shape: tuple[Dim, ...]) -> str:
        """The element count of ``shape`` as an expression: ``d_N * 64``."""
        known = 1
        symbolic = []
        for d in shape:
            coeff, factors = dim_factors(d)
            known *= coeff
            symbolic += [self.dims[f] for f in factors]
        parts = symbolic + ([str(known)] if known != 1 or not symbolic else [])
        return " * ".join(parts)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
