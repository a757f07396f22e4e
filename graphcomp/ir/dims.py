"""Static shapes with symbolic dimensions.

A dimension is an ``int`` or a symbol (a ``str`` such as ``"batch"``). Each graph keeps a
``DimTable``: a union-find over symbols that records which symbols an op forced to be equal
(``x[N,64] @ W`` then ``+ b``) and which were tied to a concrete size. The runtime binds the
remaining symbols from the inputs at call time and checks every recorded equality.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Dim = int | str
Shape = tuple[Dim, ...]


class DimMismatch(Exception):
    """Two dimensions that must agree do not. Callers turn it into a ``ShapeError``."""


class DimTable:
    """Union-find of symbolic dimensions, with an optional concrete size per class.

    >>> t = DimTable()
    >>> t.unify("N", "M")
    'N'
    >>> t.resolve("M")
    'N'
    """

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}
        self._fresh_count = 0

    def fresh(self, taken: Iterable[str] = ()) -> str:
        """A new symbol for a ``None`` dimension: ``N``, then ``N2``, ``N3``…"""
        taken = set(taken)
        while True:
            self._fresh_count += 1
            name = "N" if self._fresh_count == 1 else f"N{self._fresh_count}"
            if name not in self._parent and name not in taken:
                self._parent[name] = name
                return name

    def _root(self, symbol: str) -> str:
        self._parent.setdefault(symbol, symbol)
        while self._parent[symbol] != symbol:
            self._parent[symbol] = self._parent[self._parent[symbol]]
            symbol = self._parent[symbol]
        return symbol

    def resolve(self, dim: Dim) -> Dim:
        """The canonical form of ``dim``: an int if known, else its class's representative."""
        if isinstance(dim, int):
            return dim
        root = self._root(dim)
        return self._size.get(root, root)

    def resolve_shape(self, shape: Sequence[Dim]) -> Shape:
        """``resolve`` applied to every dimension of ``shape``."""
        return tuple(self.resolve(d) for d in shape)

    def unify(self, a: Dim, b: Dim) -> Dim:
        """Record that ``a`` and ``b`` are the same size and return the canonical dim."""
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return a
        if isinstance(a, int) and isinstance(b, int):
            raise DimMismatch(f"{a} != {b}")
        if isinstance(a, int):
            a, b = b, a
        # a is a symbol root; b is an int or another root.
        assert isinstance(a, str)
        if isinstance(b, int):
            self._size[a] = b
            return b
        self._parent[b] = a
        if b in self._size:
            self._size[a] = self._size.pop(b)
        return self.resolve(a)

    def broadcast(self, *shapes: Sequence[Dim]) -> Shape:
        """numpy broadcasting of static shapes. A symbol meets 1 → symbol; two symbols unify.

        A symbolic dimension is never assumed to be 1, so it never broadcasts against a
        different symbol or size: they are recorded as equal instead.
        """
        ndim = max((len(s) for s in shapes), default=0)
        given = " and ".join(shape_str(self.resolve_shape(s)) for s in shapes)  # for errors
        result: list[Dim] = []
        for axis in range(ndim):
            dims = [
                self.resolve(s[axis - ndim + len(s)]) for s in shapes if axis - ndim + len(s) >= 0
            ]
            out: Dim = 1
            for d in dims:
                if d == 1:
                    continue
                if out == 1:
                    out = d
                else:
                    try:
                        out = self.unify(out, d)
                    except DimMismatch:
                        raise DimMismatch(
                            f"shapes {given} do not broadcast ({out} vs {d} at axis {axis - ndim})"
                        ) from None
            result.append(out)
        return tuple(result)

    def copy(self) -> DimTable:
        """An independent copy: a compiled function keeps the dims as they were at compile time."""
        table = DimTable()
        table._parent, table._size = dict(self._parent), dict(self._size)
        table._fresh_count = self._fresh_count
        return table

    def snapshot(self) -> tuple:
        """The table's state, for ``restore`` when an op fails half-way through its rule."""
        return dict(self._parent), dict(self._size), self._fresh_count

    def restore(self, state: tuple) -> None:
        """Undo every ``unify`` since ``snapshot`` returned ``state``."""
        parent, size, self._fresh_count = state
        self._parent, self._size = dict(parent), dict(size)

    def constraints(self) -> tuple[dict[str, str], dict[str, int]]:
        """(symbol → representative, representative → size) for the runtime's binding check."""
        roots = {s: self._root(s) for s in list(self._parent)}
        return roots, dict(self._size)


def shape_str(shape: Sequence[Dim]) -> str:
    """``[N,64]``-style text for a static shape."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def is_static(shape: Sequence[Dim]) -> bool:
    """True when every dimension is a concrete int."""
    return all(isinstance(d, int) for d in shape)


def static_shape(shape: Sequence[Dim]) -> tuple[int, ...]:
    """``shape`` as a tuple of ints; ``ValueError`` if a dimension is symbolic.

    >>> static_shape((2, 3))
    (2, 3)
    """
    if not is_static(shape):
        raise ValueError(f"shape {shape_str(shape)} has a symbolic dimension")
    return tuple(int(d) for d in shape)
