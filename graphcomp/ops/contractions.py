"""Tensor contractions with numpy's names: einsum, tensordot, dot, inner, kron, cross.

All of them are built from primitives (transpose, reshape, broadcast_to, multiply,
reduce_sum, matmul), so their gradients come from those primitives' VJP rules. ``einsum``
contracts its operands pairwise, left to right. Each pair becomes one (batched) ``matmul``
wherever an index is summed over: the indices both operands keep are its batch axes, and the
free and summed indices are reshaped into its matrix axes, so ``"bij,bjk->bik"`` and
``"bhqd,bhkd->bhqk"`` run on BLAS. A symbolic dim is never merged with another by a reshape:
it stays a batch axis of the product (summed after it when it is a summed index). Without a
summed index (an outer product), or for integer operands (matmul is float-only), a pair is a
broadcasting multiply followed by a sum.

>>> import graphcomp as gc
>>> with gc.Graph():
...     q = gc.placeholder((None, 4, 16, 8), "float32", name="q")
...     k = gc.placeholder((None, 4, 16, 8), "float32", name="k")
...     scores = gc.einsum("bhqd,bhkd->bhqk", q, k)
>>> scores.op, scores.shape
('matmul', ('N', 4, 16, 16))
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import ShapeError
from graphcomp.ir import Dim, DimMismatch, user_source_line
from graphcomp.ops import functions as F
from graphcomp.ops.tensor import Tensor

_LETTERS = frozenset(string.ascii_letters)


def _fail(what: str) -> ShapeError:
    return ShapeError(f"{what} (at {user_source_line()})")


# ================================================================ einsum: parsing


@dataclass(frozen=True)
class _Spec:
    """Parsed subscripts: one label per axis of each operand, and the output's labels.

    A letter is its own label; the axes an ellipsis stands for get labels ``"...0"``,
    ``"...1"``…, numbered so that operands' ellipsis axes align from the right.
    """

    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]


def _parse(subscripts: str, ndims: Sequence[int]) -> _Spec:
    text = subscripts.replace(" ", "")
    explicit = "->" in text
    left, _, right = text.partition("->")
    terms = left.split(",")
    if len(terms) != len(ndims):
        raise _fail(f"einsum: subscripts {subscripts!r} name {len(terms)} operands, "
                    f"but {len(ndims)} were given")
    letters = [_letters(term, subscripts) for term in terms]
    ellipsis_ranks = [_ellipsis_rank(term, lets, n, subscripts)
                      for term, lets, n in zip(terms, letters, ndims, strict=True)]
    rank = max(ellipsis_ranks, default=0)
    inputs = tuple(_expand(term, r, rank) for term, r in zip(terms, ellipsis_ranks, strict=True))
    if explicit:
        output = _explicit_output(right, inputs, rank, subscripts)
    else:
        counts = Counter(label for labels in inputs for label in labels if len(label) == 1)
        once = sorted(label for label, count in counts.items() if count == 1)
        output = (*_ellipsis_labels(rank, rank), *once)
    return _Spec(inputs, output)


def _letters(term: str, subscripts: str) -> list[str]:
    if term.count("...") > 1:
        raise _fail(f"einsum: more than one '...' in {term!r} of {subscripts!r}")
    letters = list(term.replace("...", ""))
    for char in letters:
        if char not in _LETTERS:
            raise _fail(f"einsum: subscripts {subscripts!r} contain {char!r}; "
                        "indices are letters a-z, A-Z, with ',', '->' and '...'")
    return letters


def _ellipsis_rank(term: str, letters: list[str], ndim: int, subscripts: str) -> int:
    if "..." in term and len(letters) <= ndim:
        return ndim - len(letters)
    if len(letters) != ndim:
        raise _fail(f"einsum: {term!r} in {subscripts!r} has {len(letters)} indices for an "
                    f"operand of rank {ndim}")
    return 0


def _ellipsis_labels(count: int, rank: int) -> list[str]:
    return [f"...{i}" for i in range(rank - count, rank)]


def _expand(term: str, count: int, rank: int) -> tuple[str, ...]:
    before, found, after = term.partition("...")
    if not found:
        return tuple(term)
    return (*before, *_ellipsis_labels(count, rank), *after)


def _explicit_output(right: str, inputs: tuple[tuple[str, ...], ...], rank: int,
                     subscripts: str) -> tuple[str, ...]:
    letters = _letters(right, subscripts)
    known = {label for labels in inputs for label in labels}
    for char, count in Counter(letters).items():
        if count > 1:
            raise _fail(f"einsum: output index {char!r} repeated in {subscripts!r}")
        if char not in known:
            raise _fail(f"einsum: output index {char!r} of {subscripts!r} is in no operand")
    if rank and "..." not in right:
        raise _fail(f"einsum: the operands of {subscripts!r} have '...' axes, so the output "
                    "needs '...' too")
    return _expand(right, rank, rank)


# ================================================================ einsum: lowering


@dataclass(frozen=True)
class _Term:
    """A tensor and the label of each of its axes (each label at most once)."""

    tensor: Tensor
    labels: tuple[str, ...]

    def size(self, label: str) -> Dim:
        return self.tensor.shape[self.labels.index(label)]


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """Einstein summation with numpy's subscripts (``->``, implicit output, ``...``).

    Operands are contracted pairwise, left to right; a pair summing over an index is one
    (batched) matmul. ``gc.einsum("bij,bjk->bik", a, b)``, ``gc.einsum("ii->i", m)``
    """
    if not isinstance(subscripts, str):
        raise _fail("einsum takes a subscripts string first (numpy's interleaved form, "
                    "operands with lists of axis numbers, is not supported)")
    if not operands:
        raise _fail("einsum needs at least one operand")
    tensors = F._promote(*operands)
    spec = _parse(subscripts, [t.ndim for t in tensors])
    _check_sizes(tensors, spec, subscripts)
    return _lower(tensors, spec, subscripts)


def _lower(tensors: Sequence[Tensor], spec: _Spec, subscripts: str) -> Tensor:
    """The graph of a parsed einsum whose sizes were checked."""
    terms = [_diagonal(_Term(t, labels), subscripts) for t, labels in
             zip(tensors, spec.inputs, strict=True)]
    result = _sum_unused(terms[0], _needed(terms[1:], spec.output))
    for position, term in enumerate(terms[1:], start=1):
        keep = _needed(terms[position + 1:], spec.output)
        result = _contract(result, term, keep)
    result = _sum_unused(result, set(spec.output))
    return F.transpose(result.tensor, [result.labels.index(label) for label in spec.output])


def _needed(later: Sequence[_Term], output: Sequence[str]) -> set[str]:
    return set(output).union(*(term.labels for term in later))


def _check_sizes(tensors: Sequence[Tensor], spec: _Spec, subscripts: str) -> None:
    """Every index has one size over all operands (or 1, which broadcasts, as in numpy)."""
    dims = tensors[0].graph.dims
    seen: dict[str, tuple[Dim, int]] = {}
    for k, (tensor, labels) in enumerate(zip(tensors, spec.inputs, strict=True)):
        for label, size in zip(labels, tensor.shape, strict=True):
            if size == 1:
                continue
            if label not in seen:
                seen[label] = (size, k)
                continue
            first, where = seen[label]
            try:
                dims.unify(first, size)
            except DimMismatch:
                name = "'...'" if label.startswith("...") else repr(label)
                raise _fail(f"einsum {subscripts!r}: index {name} has size {first} in operand "
                            f"{where} but {size} in operand {k}") from None


def _diagonal(term: _Term, subscripts: str) -> _Term:
    """Take the diagonal over each index repeated within one operand (``"ii->i"``)."""
    for label in dict.fromkeys(term.labels):
        while term.labels.count(label) > 1:
            first = term.labels.index(label)
            second = term.labels.index(label, first + 1)
            term = _Term(_diagonal_of(term.tensor, first, second, subscripts),
                         term.labels[:second] + term.labels[second + 1:])
    return term


def _diagonal_of(x: Tensor, first: int, second: int, subscripts: str) -> Tensor:
    """``x`` masked to where the two axes' indices agree, summed over the second axis."""
    rows, cols = x.graph.dims.resolve(x.shape[first]), x.graph.dims.resolve(x.shape[second])
    if not isinstance(rows, int) or rows != cols:
        raise _fail(f"einsum {subscripts!r}: a repeated index (a diagonal) needs one static "
                    f"size on both axes, not {rows} and {cols}")
    mask_shape = [1] * x.ndim
    mask_shape[first] = mask_shape[second] = rows
    mask = np.eye(rows, dtype=bool).reshape(mask_shape)
    return F.sum(F.where(mask, x, F.zeros_like(x)), axis=second)


def _sum_unused(term: _Term, keep: set[str]) -> _Term:
    """Sum ``term`` over the labels nothing later needs."""
    axes = [i for i, label in enumerate(term.labels) if label not in keep]
    if not axes:
        return term
    return _Term(F.sum(term.tensor, axis=axes),
                 tuple(label for label in term.labels if label in keep))


def _contract(a: _Term, b: _Term, keep: set[str]) -> _Term:
    """``a`` times ``b``, summed over the labels both have and ``keep`` lacks."""
    a = _sum_unused(a, keep | set(b.labels))
    b = _sum_unused(b, keep | set(a.labels))
    shared = [label for label in a.labels if label in b.labels]
    summed = [label for label in shared if label not in keep]
    free_a = [label for label in a.labels if label not in b.labels]
    free_b = [label for label in b.labels if label not in a.labels]
    if summed and (free_a or free_b) and dtypes.is_float(a.tensor.dtype):
        return _matmul(a, b, [x for x in shared if x in keep], summed, free_a, free_b)
    return _multiply_sum(a, b, summed)


def _arrange(term: _Term, labels: Sequence[str]) -> Tensor:
    """``term`` with its axes in the order of ``labels``, a size-1 axis for each it lacks."""
    present = [label for label in labels if label in term.labels]
    x = F.transpose(term.tensor, [term.labels.index(label) for label in present])
    return F.reshape(x, [term.size(label) if label in term.labels else 1 for label in labels])


def _multiply_sum(a: _Term, b: _Term, summed: Sequence[str]) -> _Term:
    labels = list(dict.fromkeys(a.labels + b.labels))
    product = _Term(_arrange(a, labels) * _arrange(b, labels), tuple(labels))
    return _sum_unused(product, set(labels) - set(summed))


def _matmul(a: _Term, b: _Term, batch: list[str], summed: list[str], free_a: list[str],
            free_b: list[str]) -> _Term:
    """One batched matmul: ``[batch, M, K] @ [batch, K, N]`` with M, K, N merged axes.

    Symbolic dims in a group of several cannot be merged: they join the batch axes (a summed
    one is summed after the product).
    """
    free_a, loose_a = _split_symbolic([a], free_a)
    free_b, loose_b = _split_symbolic([b], free_b)
    summed, loose_summed = _split_symbolic([a, b], summed)
    outer = batch + loose_a + loose_b + loose_summed
    lead, m, k = len(outer), len(free_a), len(summed)
    x, y = _match_summed(_arrange(a, outer + free_a + summed),
                         _arrange(b, outer + summed + free_b), lead, k)
    x = F.reshape(x, [*x.shape[:lead], _product(x, lead, lead + m), _product(x, lead + m, None)])
    y = F.reshape(y, [*y.shape[:lead], _product(y, lead, lead + k), _product(y, lead + k, None)])
    product = F.matmul(x, y)
    sizes = [a.size(label) for label in free_a] + [b.size(label) for label in free_b]
    product = F.reshape(product, [*product.shape[:-2], *sizes])
    labels = tuple(outer + free_a + free_b)
    return _sum_unused(_Term(product, labels), set(labels) - set(loose_summed))


def _split_symbolic(terms: Sequence[_Term], labels: list[str]) -> tuple[list[str], list[str]]:
    """(labels a reshape may merge, symbolic ones it may not); all mergeable when one only."""
    if len(labels) <= 1:
        return labels, []
    dims = terms[0].tensor.graph.dims
    symbolic = [label for label in labels
                if any(isinstance(dims.resolve(t.size(label)), str) for t in terms)]
    return [label for label in labels if label not in symbolic], symbolic


def _match_summed(x: Tensor, y: Tensor, lead: int, count: int) -> tuple[Tensor, Tensor]:
    """Broadcast a size-1 summed axis of one operand to the other's size (x: ``[..., K]``,
    y: ``[lead axes, K, ...]``)."""
    x_shape, y_shape = list(x.shape), list(y.shape)
    for i in range(count):
        ax, ay = x.ndim - count + i, lead + i
        if x_shape[ax] == 1:
            x_shape[ax] = y_shape[ay]
        elif y_shape[ay] == 1:
            y_shape[ay] = x_shape[ax]
    return F.broadcast_to(x, x_shape), F.broadcast_to(y, y_shape)


def _product(x: Tensor, start: int, stop: int | None) -> Dim:
    """The size of axes ``start:stop`` of ``x`` merged into one (static, or a single dim)."""
    sizes = [x.graph.dims.resolve(d) for d in x.shape[start:stop]]
    if len(sizes) == 1:
        return sizes[0]
    return math.prod(int(size) for size in sizes)


# ================================================================ numpy's other products


def tensordot(a: Any, b: Any, axes: int | Sequence[int | Sequence[int]] = 2) -> Tensor:
    """Sum of products over ``a``'s axes ``axes[0]`` and ``b``'s ``axes[1]`` (an int ``n``: the
    last ``n`` of ``a`` with the first ``n`` of ``b``). ``gc.tensordot(x, w, axes=([1], [0]))``
    """
    a_, b_ = F._promote(a, b)
    axes_a, axes_b = _tensordot_axes(axes, a_.ndim, b_.ndim)
    labels_a = [f"a{i}" for i in range(a_.ndim)]
    labels_b = [f"b{j}" for j in range(b_.ndim)]
    dims = a_.graph.dims
    for i, j in zip(axes_a, axes_b, strict=True):
        try:
            dims.unify(a_.shape[i], b_.shape[j])
        except DimMismatch:
            raise _fail(f"tensordot: axis {i} of a has size {a_.shape[i]} but axis {j} of b "
                        f"has size {b_.shape[j]}") from None
        labels_b[j] = labels_a[i]
    output = ([x for i, x in enumerate(labels_a) if i not in axes_a]
              + [x for j, x in enumerate(labels_b) if j not in axes_b])
    spec = _Spec((tuple(labels_a), tuple(labels_b)), tuple(output))
    return _lower([a_, b_], spec, "tensordot")


def _tensordot_axes(axes: Any, ndim_a: int, ndim_b: int) -> tuple[list[int], list[int]]:
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if not 0 <= n <= min(ndim_a, ndim_b):
            raise _fail(f"tensordot: axes={n} needs operands of rank >= {n}, not ranks "
                        f"{ndim_a} and {ndim_b}")
        return list(range(ndim_a - n, ndim_a)), list(range(n))
    try:
        first, second = axes
    except (TypeError, ValueError):
        message = f"tensordot: axes must be an int or a pair of axis lists, not {axes!r}"
        raise _fail(message) from None
    axes_a, axes_b = _axis_list(first, ndim_a), _axis_list(second, ndim_b)
    if len(axes_a) != len(axes_b):
        raise _fail(f"tensordot: {len(axes_a)} axes of a but {len(axes_b)} of b")
    for axes_, name in ((axes_a, "a"), (axes_b, "b")):
        if len(set(axes_)) != len(axes_):
            raise _fail(f"tensordot: repeated axis in {list(axes_)} of {name}")
    return axes_a, axes_b


def _axis_list(axes: int | Sequence[int], ndim: int) -> list[int]:
    """Axes in the order given, each checked and made >= 0."""
    given = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    return [F._normalize_axes(int(axis), ndim)[0] for axis in given]


def dot(a: Any, b: Any) -> Tensor:
    """numpy's ``dot``: a scalar scales; otherwise ``a``'s last axis is summed against ``b``'s
    second-to-last (its only one for a vector). ``gc.dot(x, w)``"""
    a_, b_ = F._promote(a, b)
    if a_.ndim == 0 or b_.ndim == 0:
        return a_ * b_
    return tensordot(a_, b_, ([-1], [max(b_.ndim - 2, 0)]))


def inner(a: Any, b: Any) -> Tensor:
    """Sum of products over the last axes of ``a`` and ``b``. ``gc.inner(u, v)``"""
    a_, b_ = F._promote(a, b)
    if a_.ndim == 0 or b_.ndim == 0:
        return a_ * b_
    return tensordot(a_, b_, ([-1], [-1]))


def kron(a: Any, b: Any) -> Tensor:
    """Kronecker product: each element of ``a`` scales a block ``b``. ``gc.kron(eye, m)``"""
    a_, b_ = F._promote(a, b)
    ndim = max(a_.ndim, b_.ndim)
    shape_a = [1] * (ndim - a_.ndim) + list(a_.shape)
    shape_b = [1] * (ndim - b_.ndim) + list(b_.shape)
    spread_a = F.reshape(a_, [d for size in shape_a for d in (size, 1)])
    spread_b = F.reshape(b_, [d for size in shape_b for d in (1, size)])
    merged = [_kron_size(x, y) for x, y in zip(shape_a, shape_b, strict=True)]
    return F.reshape(spread_a * spread_b, merged)


def _kron_size(x: Dim, y: Dim) -> Dim:
    if x == 1 or y == 1:
        return y if x == 1 else x
    if isinstance(x, int) and isinstance(y, int):
        return x * y
    raise _fail(f"kron: an axis of size {x} times {y} merges a symbolic dim with another, "
                "which a reshape cannot express")


def cross(a: Any, b: Any, axis: int = -1) -> Tensor:
    """Cross product of 3-vectors along ``axis`` (the last by default); other axes broadcast.
    ``gc.cross(u, v)``"""
    a_, b_ = F._promote(a, b)
    a_, b_ = _vectors_last(a_, axis, "a"), _vectors_last(b_, axis, "b")
    x0, x1, x2 = (a_[..., i] for i in range(3))
    y0, y1, y2 = (b_[..., i] for i in range(3))
    result = F.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], axis=-1)
    (out_axis,) = F._normalize_axes(axis, result.ndim)
    order = list(range(result.ndim - 1))
    order.insert(out_axis, result.ndim - 1)
    return F.transpose(result, order)


def _vectors_last(x: Tensor, axis: int, name: str) -> Tensor:
    if x.ndim == 0:
        raise _fail(f"cross: {name} is a scalar, not an array of 3-vectors")
    (axis_,) = F._normalize_axes(axis, x.ndim)
    if x.graph.dims.resolve(x.shape[axis_]) != 3:
        raise _fail(f"cross takes 3-vectors, but axis {axis} of {name} has size "
                    f"{x.shape[axis_]} (numpy's 2-vectors are deprecated there)")
    order = [i for i in range(x.ndim) if i != axis_] + [axis_]
    return F.transpose(x, order)
