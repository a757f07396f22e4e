"""Structural primitives: reshape, transpose, broadcast_to, slice, pad, concatenate.

Their attributes are static; symbolic dimensions may pass through untouched (a full slice of
the batch axis, say) but are never sized by an attribute, except that ``reshape`` merges them
into products (``N*64``) and divides products back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import DTypeError, ShapeError
from graphcomp.ir import Dim, DimMismatch, DimTable, Node, dim_factors, shape_str
from graphcomp.ops import functions as F
from graphcomp.ops.registry import OpDef, Sample, register


def symbolic_size(shape: Sequence, dims: DimTable) -> tuple[int, tuple[str, ...]]:
    """Size of a shape as (product of known sizes, sorted symbols)."""
    known, symbols = 1, list[str]()
    for d in dims.resolve_shape(shape):
        coeff, factors = dim_factors(d)
        known *= coeff
        symbols += factors
    return known, tuple(sorted(symbols))


def _reshape_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    target = tuple(attrs["shape"])
    if symbolic_size(x.shape, dims) != symbolic_size(target, dims):
        raise ShapeError(
            f"cannot reshape {shape_str(dims.resolve_shape(x.shape))} to {shape_str(target)}: "
            "sizes differ"
        )
    return target, x.dtype


def _transpose_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    perm = tuple(attrs["perm"])
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"perm {perm} is not a permutation of the {x.ndim} axes")
    return tuple(x.shape[p] for p in perm), x.dtype


def _broadcast_to_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    target = tuple(attrs["shape"])
    if x.ndim > len(target):
        raise ShapeError(f"cannot broadcast rank {x.ndim} to rank {len(target)}")
    offset = len(target) - x.ndim
    for axis, d in enumerate(x.shape):
        d = dims.resolve(d)
        if d != 1:
            try:
                dims.unify(d, target[offset + axis])
            except Exception:
                raise ShapeError(
                    f"cannot broadcast {shape_str(dims.resolve_shape(x.shape))} "
                    f"to {shape_str(target)}"
                ) from None
    return dims.resolve_shape(target), x.dtype


def slice_length(start: int, stop: int, step: int) -> int:
    """Number of elements of ``range(start, stop, step)`` for step > 0."""
    return max(0, (stop - start + step - 1) // step)


def _same_dim(dims: DimTable, stop: Dim, d: Dim) -> bool:
    """Whether a slice's symbolic ``stop`` is the axis' size ``d``. A scan body replayed for a
    gradient gets inputs whose symbols the enclosing graph has since bound (``N`` = 3): the
    body's own table learns ``stop == d`` here, as other shape rules unify their operands."""
    if not isinstance(stop, str):
        return False
    try:
        dims.unify(stop, d)
    except DimMismatch:
        return False
    return True


def _slice_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    shape = []
    for d, start, stop, step in zip(
        dims.resolve_shape(x.shape), attrs["starts"], attrs["stops"], attrs["steps"], strict=True
    ):
        if isinstance(stop, str) or isinstance(d, str):
            if not (start == 0 and step == 1 and _same_dim(dims, stop, d)):
                raise ShapeError(f"only a full slice ':' of symbolic dimension {d!r} is supported")
            shape.append(d)
        else:
            if not (0 <= start <= stop <= d and step >= 1):
                raise ShapeError(f"slice {start}:{stop}:{step} out of range for size {d}")
            shape.append(slice_length(start, stop, step))
    return tuple(shape), x.dtype


def _slice_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    index = tuple(
        slice(start, None if isinstance(stop, str) else stop, step)
        for start, stop, step in zip(attrs["starts"], attrs["stops"], attrs["steps"], strict=True)
    )
    return xs[0][index]


def _vjp_slice(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    (x,) = ins
    lo, hi, interior = [], [], []
    for d, start, stop, step, n in zip(
        x.shape, attrs["starts"], attrs["stops"], attrs["steps"], out.shape, strict=True
    ):
        if isinstance(stop, str) or isinstance(d, str):
            lo.append(0)
            hi.append(0)
            interior.append(0)
            continue
        last = start + (n - 1) * step + 1 if n > 0 else start
        lo.append(start)
        hi.append(d - last)
        interior.append(step - 1 if n > 0 else 0)
    return [F.pad_general(g, lo, hi, interior, 0.0)]


def _pad_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    (x,) = nodes
    shape = []
    for d, lo, hi, interior in zip(
        dims.resolve_shape(x.shape), attrs["lo"], attrs["hi"], attrs["interior"], strict=True
    ):
        if min(lo, hi, interior) < 0:
            raise ShapeError(f"padding must be non-negative, got lo={lo} hi={hi}")
        if isinstance(d, str):
            if lo or hi or interior:
                raise ShapeError(f"cannot pad symbolic dimension {d!r}")
            shape.append(d)
        else:
            shape.append(lo + hi + (d + (d - 1) * interior if d > 0 else 0))
    return tuple(shape), x.dtype


def _pad_index(x_shape: Sequence, attrs: dict) -> tuple:
    return tuple(
        slice(lo, lo + (d - 1) * (interior + 1) + 1 if d > 0 else lo, interior + 1)
        for d, lo, interior in zip(x_shape, attrs["lo"], attrs["interior"], strict=True)
    )


def _pad_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x = xs[0]
    out = np.full(shape, attrs["value"], dtype=x.dtype)
    out[_pad_index(x.shape, attrs)] = x
    return out


def _vjp_pad(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    (x,) = ins
    starts, stops, steps = [], [], []
    for d, lo, interior in zip(x.shape, attrs["lo"], attrs["interior"], strict=True):
        if isinstance(d, str):
            starts.append(0)
            stops.append(d)
            steps.append(1)
        else:
            starts.append(lo)
            stops.append(lo + (d - 1) * (interior + 1) + 1 if d > 0 else lo)
            steps.append(interior + 1)
    return [F.slice_general(g, starts, stops, steps)]


def _concat_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    axis = attrs["axis"]
    first = nodes[0]
    for node in nodes[1:]:
        if node.ndim != first.ndim:
            raise ShapeError(f"all inputs need rank {first.ndim}, got rank {node.ndim}")
        if node.dtype != first.dtype:
            raise DTypeError(f"all inputs need dtype {first.dtype}, got {node.dtype}")
    shape = list(dims.resolve_shape(first.shape))
    total = 0
    for node in nodes:
        for i, d in enumerate(node.shape):
            if i != axis:
                shape[i] = dims.unify(shape[i], d)
        d = dims.resolve(node.shape[axis])
        if isinstance(d, str):
            raise ShapeError(f"cannot concatenate along symbolic dimension {d!r}")
        total += d
    shape[axis] = total
    return tuple(shape), first.dtype


def _vjp_concat(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    axis, offset, grads = attrs["axis"], 0, []
    for x in ins:
        size = x.shape[axis]
        starts = [0] * x.ndim
        stops = list(out.shape)
        steps = [1] * x.ndim
        starts[axis], stops[axis] = offset, offset + size
        grads.append(F.slice_general(g, starts, stops, steps))
        offset += size
    return grads


def _samples_3x4(rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal((3, 4)).astype(dtype)


register(
    OpDef(
        name="reshape",
        kind="structural",
        infer=_reshape_rule,
        numpy_impl=lambda xs, attrs, shape: xs[0].reshape(shape),
        vjp=lambda g, out, ins, attrs: [F.reshape(g, ins[0].shape)],
        samples=lambda rng, dtype: [
            Sample((_samples_3x4(rng, dtype),), {"shape": (2, 6)}),
            Sample((_samples_3x4(rng, dtype),), {"shape": (12,)}),
            Sample(
                (rng.standard_normal((2, 3, 4)).astype(dtype),),
                {"shape": ("N", 12)},
                symbolic=({0: "N"},),
            ),
            Sample(  # merges the symbolic batch with a size: [N,3,4] to [N*3,4]
                (rng.standard_normal((2, 3, 4)).astype(dtype),),
                {"shape": ("N*3", 4)},
                symbolic=({0: "N"},),
            ),
        ],
        doc="reshape; symbolic dims may be carried through, merged (N*64) or divided back",
    )
)

register(
    OpDef(
        name="transpose",
        kind="structural",
        infer=_transpose_rule,
        numpy_impl=lambda xs, attrs, shape: np.transpose(xs[0], attrs["perm"]),
        vjp=lambda g, out, ins, attrs: [F.transpose(g, tuple(np.argsort(attrs["perm"])))],
        samples=lambda rng, dtype: [
            Sample((_samples_3x4(rng, dtype),), {"perm": (1, 0)}, symbolic=({0: "N"},)),
            Sample((rng.standard_normal((2, 3, 4)).astype(dtype),), {"perm": (2, 0, 1)}),
        ],
        doc="permute axes",
    )
)

register(
    OpDef(
        name="broadcast_to",
        kind="structural",
        infer=_broadcast_to_rule,
        numpy_impl=lambda xs, attrs, shape: np.broadcast_to(xs[0], shape),
        vjp=lambda g, out, ins, attrs: [F.unbroadcast(g, ins[0].shape)],
        samples=lambda rng, dtype: [
            Sample((rng.standard_normal((4,)).astype(dtype),), {"shape": (3, 4)}),
            Sample((rng.standard_normal((3, 1)).astype(dtype),), {"shape": (2, 3, 5)}),
            Sample((rng.standard_normal(()).astype(dtype),), {"shape": (2, 3)}),
        ],
        doc="numpy broadcast_to with a static target shape",
    )
)

register(
    OpDef(
        name="slice",
        kind="structural",
        infer=_slice_rule,
        numpy_impl=_slice_impl,
        vjp=_vjp_slice,
        samples=lambda rng, dtype: [
            Sample(
                (rng.standard_normal((5, 6)).astype(dtype),),
                {"starts": (1, 0), "stops": (4, 6), "steps": (1, 2)},
            ),
            Sample(
                (rng.standard_normal((5, 6)).astype(dtype),),
                {"starts": (0, 2), "stops": ("N", 3), "steps": (1, 1)},
                symbolic=({0: "N"},),
            ),
        ],
        doc="basic slicing with non-negative starts/stops and positive steps",
    )
)

register(
    OpDef(
        name="pad",
        kind="structural",
        infer=_pad_rule,
        numpy_impl=_pad_impl,
        vjp=_vjp_pad,
        samples=lambda rng, dtype: [
            Sample(
                (_samples_3x4(rng, dtype),),
                {"lo": (1, 0), "hi": (2, 1), "interior": (0, 0), "value": 0.0},
            ),
            Sample(
                (_samples_3x4(rng, dtype),),
                {"lo": (0, 2), "hi": (0, 0), "interior": (0, 1), "value": -1.5},
                symbolic=({0: "N"},),
            ),
        ],
        doc="pad with a constant: lo/hi elements at each end and interior between elements",
    )
)


def _concat_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    a = _samples_3x4(rng, dtype)
    b = rng.standard_normal((3, 2)).astype(dtype)
    c = rng.standard_normal((1, 4)).astype(dtype)
    return [
        Sample((a, b), {"axis": 1}, symbolic=({0: "N"}, {0: "N"})),
        Sample((a, c, a), {"axis": 0}),
        Sample((a[:1], b[:1]), {"axis": 1}),  # after a leading axis of one: contiguous blocks
    ]


register(
    OpDef(
        name="concatenate",
        kind="structural",
        infer=_concat_rule,
        numpy_impl=lambda xs, attrs, shape: np.concatenate(xs, axis=attrs["axis"]),
        vjp=_vjp_concat,
        samples=_concat_samples,
        doc="join along an existing axis",
    )
)
