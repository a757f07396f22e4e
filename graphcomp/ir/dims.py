"""Static shapes with symbolic dimensions.

A dimension is an ``int`` or a symbolic dim: a symbol such as ``"batch"``, or a product of
symbols and an int such as ``N*64`` (what ``reshape(x, (-1, 9))`` of an ``[N,8,8,9]`` gives).
Symbolic dims are ``SymDim``, a ``str`` subclass whose text is the canonical product
(symbols sorted, the int last: ``N*64``, ``N*T``). Being a ``str`` keeps every path that asks
``isinstance(d, str)`` treating it as symbolic, keeps a one-symbol ``SymDim("N")`` equal to
(and hashing like) ``"N"``, so dicts keyed by symbol names still work, and lets shapes print,
compare and serialise as text. ``*`` is overridden so that ``x.shape[0] * 64`` is the product
dim ``N*64`` rather than a repeated string; a product without symbols is an ``int``.

Each graph keeps a ``DimTable``: a union-find over symbols that records which symbols an op
forced to be equal (``x[N,64] @ W`` then ``+ b``) and what a class was tied to: a concrete
size, or a product of other symbols (``M`` unified with ``N*64``). Products meeting products are
solved where one side reduces to a lone symbol (``N*64 == M*64`` ties ``N`` and ``M``,
``N*64 == 128`` ties ``N`` to 2); equalities it cannot solve (``N*T == 128``) are kept and
checked at call time. Cancelling a symbol common to both sides assumes it is non-zero. The
runtime binds the remaining symbols from the inputs at call time and checks every recorded
equality.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class SymDim(str):
    """A symbolic dimension: ``coeff`` times the product of ``factors`` (sorted symbols).

    >>> n = SymDim("N")
    >>> n * 64, 64 * n, n * "T", n * 0
    ('N*64', 'N*64', 'N*T', 0)
    >>> SymDim("64*N").coeff, SymDim("64*N").factors
    (64, ('N',))
    """

    coeff: int
    factors: tuple[str, ...]

    def __new__(cls, text: str) -> SymDim:
        coeff, factors = _parse_product(text)
        if not factors:
            raise ValueError(f"dimension {text!r} has no symbol; use an int")
        self = super().__new__(cls, _product_text(coeff, factors))
        self.coeff, self.factors = coeff, factors
        return self

    def __getnewargs__(self) -> tuple[str]:
        return (str(self),)

    @property
    def is_symbol(self) -> bool:
        """True for a single symbol (``N``), False for a product (``N*64``, ``N*T``)."""
        return self.coeff == 1 and len(self.factors) == 1

    def __mul__(self, other: Any) -> Dim:  # type: ignore[override]
        if isinstance(other, bool) or not isinstance(other, (int, str)):
            if hasattr(other, "__index__") and not isinstance(other, bool):
                other = int(other)
            else:
                return NotImplemented
        return multiply(self, other)

    __rmul__ = __mul__  # type: ignore[assignment]


Dim = int | str
Shape = tuple[Dim, ...]


def _parse_product(text: str) -> tuple[int, tuple[str, ...]]:
    coeff, factors = 1, []
    for part in str(text).split("*"):
        part = part.strip()
        if not part:
            raise ValueError(f"malformed dimension {text!r}")
        if part.isdigit():
            coeff *= int(part)
        else:
            factors.append(part)
    return coeff, tuple(sorted(factors))


def _product_text(coeff: int, factors: Sequence[str]) -> str:
    return "*".join([*factors, *([str(coeff)] if coeff != 1 else [])])


def make_dim(coeff: int, factors: Iterable[str]) -> Dim:
    """The dim ``coeff * product(factors)``: an ``int`` without factors, else a ``SymDim``.

    >>> make_dim(64, ["N"]), make_dim(6, [])
    ('N*64', 6)
    """
    factors = tuple(sorted(factors))
    if coeff == 0 or not factors:
        return coeff
    return SymDim(_product_text(coeff, factors))


def dim_factors(d: Dim) -> tuple[int, tuple[str, ...]]:
    """``(coeff, sorted symbols)`` of a dim: ``(6, ())`` for 6, ``(64, ('N',))`` for ``N*64``."""
    if isinstance(d, int):
        return d, ()
    sym = d if isinstance(d, SymDim) else SymDim(d)
    return sym.coeff, sym.factors


def multiply(*ds: Dim) -> Dim:
    """The product of dims, symbolic or not.

    >>> multiply("N", 8, 8), multiply(2, 3)
    ('N*64', 6)
    """
    coeff, factors = 1, list[str]()
    for d in ds:
        c, f = dim_factors(d)
        coeff *= c
        factors += f
    return make_dim(coeff, factors)


def dim_value(d: Dim, binding: Mapping[str, int]) -> int:
    """The size of a canonical dim under a binding of its symbols.

    >>> dim_value("N*64", {"N": 2})
    128
    """
    coeff, factors = dim_factors(d)
    return coeff * math.prod(binding[s] for s in factors)


class DimMismatch(Exception):
    """Two dimensions that must agree do not. Callers turn it into a ``ShapeError``."""


class DimTable:
    """Union-find of symbolic dimensions; a class may be tied to a size or to a product.

    >>> t = DimTable()
    >>> t.unify("N", "M")
    'N'
    >>> t.resolve("M")
    'N'
    >>> t.unify("K", "N*64"), t.resolve("K*2")
    ('N*64', 'N*128')
    """

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, Dim] = {}  # root -> int, or a product of other roots
        self._pending: list[tuple[Dim, Dim]] = []  # equalities left to the call-time check
        self._fresh_count = 0

    def fresh(self, taken: Iterable[str] = ()) -> str:
        """A new symbol for a ``None`` dimension: ``N``, then ``N2``, ``N3``…"""
        taken = set(taken)
        while True:
            self._fresh_count += 1
            name = "N" if self._fresh_count == 1 else f"N{self._fresh_count}"
            if name not in self._parent and name not in taken:
                self._parent[name] = name
                return SymDim(name)

    def _root(self, symbol: str) -> str:
        symbol = str(symbol)
        self._parent.setdefault(symbol, symbol)
        while self._parent[symbol] != symbol:
            self._parent[symbol] = self._parent[self._parent[symbol]]
            symbol = self._parent[symbol]
        return symbol

    def resolve(self, dim: Dim) -> Dim:
        """The canonical form of ``dim``: an int if known, else a ``SymDim`` over class roots."""
        if isinstance(dim, int):
            return dim
        coeff, factors = dim_factors(dim)
        if len(factors) == 1 and coeff == 1:
            root = self._root(factors[0])
            tied = self._size.get(root)
            return SymDim(root) if tied is None else self.resolve(tied)
        return multiply(coeff, *(self.resolve(f) for f in factors))

    def resolve_shape(self, shape: Sequence[Dim]) -> Shape:
        """``resolve`` applied to every dimension of ``shape``."""
        return tuple(self.resolve(d) for d in shape)

    def unify(self, a: Dim, b: Dim) -> Dim:
        """Record that ``a`` and ``b`` are the same size and return the canonical dim."""
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return a
        ca, fa = dim_factors(a)
        cb, fb = dim_factors(b)
        common = Counter(fa) & Counter(fb)  # cancelled: a symbol is assumed non-zero here
        left, right = Counter(fa) - common, Counter(fb) - common
        g = math.gcd(ca, cb) or 1
        ca, cb = ca // g, cb // g
        if not left and not right:
            if ca != cb:
                raise DimMismatch(f"{a} != {b}")
            return a
        # A lone symbol on one side takes the other side's value (b's first: N == M keeps N).
        for (c1, f1), (c2, f2) in (((cb, right), (ca, left)), ((ca, left), (cb, right))):
            if sum(f1.values()) == 1 and (c1 == 1 or not f2):
                (symbol,) = f1
                if c2 % c1:
                    raise DimMismatch(f"{a} != {b} (no whole size of {symbol} fits)")
                self._tie(symbol, make_dim(c2 // c1, f2.elements()))
                self._recheck_pending()
                return self.resolve(a)
        self._pending.append((a, b))
        return a

    def _tie(self, root: str, value: Dim) -> None:
        if isinstance(value, SymDim) and value.is_symbol:
            self._parent[root] = str(value)
        else:
            self._size[root] = value

    def _recheck_pending(self) -> None:
        pending, self._pending = self._pending, []
        for a, b in pending:
            self.unify(a, b)

    def pending(self) -> list[tuple[Dim, Dim]]:
        """Equalities between products that could not be solved when building the graph
        (``N*T == 128``): the runtime checks them once the symbols are bound."""
        return [(self.resolve(a), self.resolve(b)) for a, b in self._pending]

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
        table._pending = list(self._pending)
        table._fresh_count = self._fresh_count
        return table

    def snapshot(self) -> tuple:
        """The table's state, for ``restore`` when an op fails half-way through its rule."""
        return dict(self._parent), dict(self._size), list(self._pending), self._fresh_count

    def restore(self, state: tuple) -> None:
        """Undo every ``unify`` since ``snapshot`` returned ``state``."""
        parent, size, pending, self._fresh_count = state
        self._parent, self._size, self._pending = dict(parent), dict(size), list(pending)

    def constraints(self) -> tuple[dict[str, str], dict[str, Dim]]:
        """(symbol → representative, representative → size or product of representatives)."""
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
