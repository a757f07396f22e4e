"""Hypothesis builds random well-formed programs from the registry's ops; the numpy backend must
run them and agree with a direct numpy evaluation of the same program.

A program is one to three float32/float64 placeholders (random static shapes, some with a
shared symbolic batch axis "B") and a list of steps over a growing pool of values. Each step
kind has a graphcomp builder, a numpy twin, and a chooser that picks operands and static
parameters fitting the pool's shapes. Besides the values, the static shape and the dtype of
every graphcomp tensor must equal what the numpy twin produced (with "B" for the batch axis):
mixing float32 and float64 operands, and Python scalars, checks numpy 2's promotion too.

(Named ``..._numpy`` because ``tests/autodiff/test_random_graphs.py`` exists and pytest's default
import mode needs distinct basenames.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphcomp as gc

# The concrete size of "B". Static dims never reach it: only concatenate and pad add sizes, and
# their choosers stay at or below MAX_DIM; reshape only regroups the primes 2, 3, 5, 7, 11.
BATCH = 13
MAX_DIM = 12
MAX_ELEMENTS = 4000

Shape = tuple  # of int or "B"
Choice = tuple[tuple[int, ...], Any] | None  # (operand indices, static params), or not applicable


# The size "B" stands for while a numpy twin runs (_twin binds it to 1 and 0 as well).
_TWIN_BATCH = [BATCH]


def concrete(shape: Shape, batch: int | None = None) -> tuple[int, ...]:
    size = _TWIN_BATCH[0] if batch is None else batch
    return tuple(size if d == "B" else d for d in shape)


def tracked(shape: tuple[int, ...]) -> Shape:
    return tuple("B" if d == BATCH else d for d in shape)


def broadcastable(a: Shape, b: Shape) -> bool:
    try:
        np.broadcast_shapes(concrete(a), concrete(b))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Kind:
    """One kind of step: graphcomp builder, numpy twin, and how to pick operands and params."""

    build: Callable[[list, Any], gc.Tensor]
    compute: Callable[[list, Any], np.ndarray]
    choose: Callable[[Callable, list[Shape]], Choice]


@dataclass(frozen=True)
class Step:
    kind: str
    operands: tuple[int, ...]
    params: Any

    def __repr__(self) -> str:
        return f"{self.kind}{self.operands} {self.params!r}"


# ---------------------------------------------------------------- choosers


def _any(draw: Callable, shapes: list[Shape]) -> Choice:
    return (draw(st.integers(0, len(shapes) - 1)),), None


def _pick(draw: Callable, candidates: list[int]) -> int | None:
    return draw(st.sampled_from(candidates)) if candidates else None


def _broadcast_pair(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    j = _pick(draw, [k for k, s in enumerate(shapes) if broadcastable(shapes[i], s)])
    return (i, j), None


def _reduction(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    ndim = len(shapes[i])
    axes: tuple[int, ...] | None = None
    if draw(st.booleans()):
        chosen = sorted(draw(st.sets(st.integers(0, ndim - 1), max_size=ndim))) if ndim else []
        axes = tuple(a - ndim if draw(st.booleans()) else a for a in chosen)
    return (i,), (axes, draw(st.booleans()))


def _one_axis(draw: Callable, shapes: list[Shape]) -> Choice:
    i = _pick(draw, [k for k, s in enumerate(shapes) if s])
    if i is None:
        return None
    ndim = len(shapes[i])
    return (i,), draw(st.integers(-ndim, ndim - 1))


def _reshape(draw: Callable, shapes: list[Shape]) -> Choice:
    i = _pick(draw, [k for k, s in enumerate(shapes) if "B" not in s])
    if i is None:
        return None
    size, primes = math.prod(shapes[i]), []
    for p in (2, 3, 5, 7, 11):
        while size % p == 0:
            primes.append(p)
            size //= p
    rank = draw(st.integers(1 if primes else 0, 3))
    target = [1] * rank
    for p in primes:
        target[draw(st.integers(0, rank - 1))] *= p
    if rank and draw(st.booleans()):
        target[draw(st.integers(0, rank - 1))] = -1
    return (i,), tuple(target)


def _transpose(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    if draw(st.booleans()):
        return (i,), None  # x.T
    return (i,), tuple(draw(st.permutations(range(len(shapes[i])))))


def _expand_dims(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    ndim = len(shapes[i]) + 1
    return (i,), draw(st.integers(-ndim, ndim - 1))


def _squeeze(draw: Callable, shapes: list[Shape]) -> Choice:
    i = _pick(draw, [k for k, s in enumerate(shapes) if 1 in s])
    if i is None:
        return None
    ones = [a for a, d in enumerate(shapes[i]) if d == 1]
    # (graphcomp's axis, numpy's): axis=None squeezes the static ones of the graph's shape,
    # never a symbolic axis that happens to be bound to 1
    return (i,), draw(st.sampled_from([(None, tuple(ones)), *[(a, a) for a in ones]]))


def _broadcast_to(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    lead = draw(st.lists(st.integers(1, 4), max_size=2))
    rest = [draw(st.integers(1, 4)) if d == 1 else d for d in shapes[i]]
    return (i,), (*lead, *rest)


def _index_item(draw: Callable, d: Any) -> Any:
    if d == "B":
        return slice(None)
    if d > 0 and draw(st.booleans()):  # an empty axis has no element to pick
        return draw(st.integers(-d, d - 1))
    bound = st.none() | st.integers(-d - 1, d + 1)
    return slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, 3])))


def _getitem(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    shape = shapes[i]
    count = draw(st.integers(0, len(shape)))
    from_end = draw(st.booleans())  # with a leading ellipsis, the items index the last axes
    axes = shape[len(shape) - count :] if from_end else shape[:count]
    items: list[Any] = [_index_item(draw, d) for d in axes]
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), None)
    if from_end:
        items.insert(0, Ellipsis)
    elif draw(st.booleans()):
        items.append(Ellipsis)
    return (i,), items[0] if len(items) == 1 and draw(st.booleans()) else tuple(items)


def _pad(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    widths = []
    for d in shapes[i]:
        if d == "B":
            widths.append((0, 0))
        else:
            lo = draw(st.integers(0, min(2, MAX_DIM - d)))
            widths.append((lo, draw(st.integers(0, min(2, MAX_DIM - d - lo)))))
    return (i,), (tuple(widths), draw(st.sampled_from([0.0, -1.5])))


def _take(draw: Callable, shapes: list[Shape]) -> Choice:
    # Gather along a static, non-empty axis (an empty one has no index to take).
    i = _pick(draw, [k for k, s in enumerate(shapes) if any(d != "B" and d > 0 for d in s)])
    if i is None:
        return None
    shape = shapes[i]
    axis = draw(st.sampled_from([a for a, d in enumerate(shape) if d != "B" and d > 0]))
    d = shape[axis]
    index = st.integers(-d, d - 1)
    indices = draw(
        st.lists(index, min_size=1, max_size=4)
        | st.lists(st.lists(index, min_size=2, max_size=2), min_size=1, max_size=2)
    )
    return (i,), (axis, np.asarray(indices, dtype=np.int64))


def _concatenate(draw: Callable, shapes: list[Shape]) -> Choice:
    i = _pick(draw, [k for k, s in enumerate(shapes) if any(d != "B" for d in s)])
    if i is None:
        return None
    a = shapes[i]
    axis = draw(st.sampled_from([k for k, d in enumerate(a) if d != "B"]))

    def fits(b: Shape) -> bool:
        if len(b) != len(a) or b[axis] == "B" or a[axis] + b[axis] > MAX_DIM:
            return False
        return all(x == y for k, (x, y) in enumerate(zip(a, b, strict=True)) if k != axis)

    j = _pick(draw, [k for k, s in enumerate(shapes) if fits(s)])
    return None if j is None else ((i, j), axis - len(a) * draw(st.booleans()))


def _stack(draw: Callable, shapes: list[Shape]) -> Choice:
    i = draw(st.integers(0, len(shapes) - 1))
    j = _pick(draw, [k for k, s in enumerate(shapes) if s == shapes[i]])
    ndim = len(shapes[i]) + 1
    return (i, j), draw(st.integers(-ndim, ndim - 1))


def _matmul_constant(draw: Callable, shapes: list[Shape]) -> Choice:
    i = _pick(draw, [k for k, s in enumerate(shapes) if s and s[-1] != "B"])
    if i is None:
        return None
    k, n = shapes[i][-1], draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    return (i,), rng.standard_normal((k, n)) if draw(st.booleans()) else rng.standard_normal(k)


def _matmul_pair(draw: Callable, shapes: list[Shape]) -> Choice:
    def fits(a: Shape, b: Shape) -> bool:
        if len(a) < 2 or len(b) < 2 or a[-1] == "B" or a[-1] != b[-2]:
            return False
        return broadcastable(a[:-2], b[:-2])

    pairs = [(p, q) for p, a in enumerate(shapes) for q, b in enumerate(shapes) if fits(a, b)]
    return (draw(st.sampled_from(pairs)), None) if pairs else None


# ---------------------------------------------------------------- the step kinds


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logsumexp(x: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _to_f64(value: Any) -> np.ndarray:
    return np.asarray(value).astype(np.float64)


UNARY: dict[str, tuple[Callable, Callable]] = {
    "exp_tanh": (lambda x: gc.exp(gc.tanh(x)), lambda x: np.exp(np.tanh(x))),
    "log_abs": (lambda x: gc.log(gc.abs(x) + 0.5), lambda x: np.log(np.abs(x) + 0.5)),
    "log1p_abs": (lambda x: gc.log1p(gc.abs(x)), lambda x: np.log1p(np.abs(x))),
    "sqrt_abs": (lambda x: gc.sqrt(gc.abs(x)), lambda x: np.sqrt(np.abs(x))),
    "expm1_tanh": (lambda x: gc.expm1(gc.tanh(x)), lambda x: np.expm1(np.tanh(x))),
    "tanh": (gc.tanh, np.tanh),
    "sin": (gc.sin, np.sin),
    "cos": (gc.cos, np.cos),
    "sigmoid": (gc.sigmoid, _sigmoid),
    "abs": (gc.abs, np.abs),
    "negative": (lambda x: -x, np.negative),
    "square": (gc.square, lambda x: x * x),
    "sign": (gc.sign, np.sign),
    "relu": (gc.relu, lambda x: np.where(x > 0, x, 0.0)),
    "softplus": (gc.softplus, lambda x: np.logaddexp(0.0, x)),
    "cast_f32": (
        lambda x: x.astype("float32").astype("float64"),
        lambda x: x.astype(np.float32).astype(np.float64),
    ),
    "stop_gradient": (gc.stop_gradient, lambda x: x),
    "clip": (lambda x: gc.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7)),
    "scalars": (lambda x: (1.0 - x * 2.5) / 4 + 2**x, lambda x: (1.0 - x * 2.5) / 4 + 2.0**x),
    "pow2": (lambda x: x**2, lambda x: x**2.0),
}

BINARY: dict[str, tuple[Callable, Callable]] = {
    "add": (lambda a, b: a + b, np.add),
    "subtract": (lambda a, b: a - b, np.subtract),
    "multiply": (lambda a, b: a * b, np.multiply),
    "divide": (lambda a, b: a / (1.0 + b * b), lambda a, b: a / (1.0 + b * b)),
    "maximum": (gc.maximum, np.maximum),
    "minimum": (gc.minimum, np.minimum),
    "power": (
        lambda a, b: (gc.abs(a) + 0.5) ** gc.tanh(b),
        lambda a, b: (np.abs(a) + 0.5) ** np.tanh(b),
    ),
    "where": (lambda a, b: gc.where(a > b, a, b), lambda a, b: np.where(a > b, a, b)),
    "compare": (
        lambda a, b: (a <= b).astype("float64") - (a != b).astype("float64"),
        lambda a, b: _to_f64(a <= b) - _to_f64(a != b),
    ),
}

ALONG_AXIS: dict[str, tuple[Callable, Callable]] = {
    "argmax": (
        lambda x, a: gc.argmax(x, axis=a).astype("float64"),
        lambda x, a: _to_f64(np.argmax(x, a)),
    ),
    "softmax": (lambda x, a: gc.softmax(x, axis=a), _softmax),
    "log_softmax": (
        lambda x, a: gc.log_softmax(x, axis=a),
        lambda x, a: x - _logsumexp(x, a, True),
    ),
    "logsumexp": (lambda x, a: gc.logsumexp(x, axis=a), _logsumexp),
}

REDUCTIONS: dict[str, tuple[Callable, Callable]] = {
    "sum": (lambda x, p: gc.sum(x, *p), lambda x, p: np.sum(x, p[0], keepdims=p[1])),
    "mean": (lambda x, p: x.mean(*p), lambda x, p: np.mean(x, p[0], keepdims=p[1])),
    "max": (lambda x, p: x.max(*p), lambda x, p: np.max(x, p[0], keepdims=p[1])),
    "min": (lambda x, p: gc.min(x, *p), lambda x, p: np.min(x, p[0], keepdims=p[1])),
}


def _matmul_constant_build(xs: list, w: np.ndarray) -> gc.Tensor:
    return xs[0] @ gc.constant(w)


KINDS: dict[str, Kind] = {
    **{
        name: Kind(lambda xs, p, f=f: f(xs[0]), lambda xs, p, f=g: f(xs[0]), _any)
        for name, (f, g) in UNARY.items()
    },
    **{
        name: Kind(lambda xs, p, f=f: f(*xs), lambda xs, p, f=g: f(*xs), _broadcast_pair)
        for name, (f, g) in BINARY.items()
    },
    **{
        name: Kind(lambda xs, p, f=f: f(xs[0], p), lambda xs, p, f=g: f(xs[0], p), _one_axis)
        for name, (f, g) in ALONG_AXIS.items()
    },
    **{
        name: Kind(lambda xs, p, f=f: f(xs[0], p), lambda xs, p, f=g: f(xs[0], p), _reduction)
        for name, (f, g) in REDUCTIONS.items()
    },
    "reshape": Kind(lambda xs, p: xs[0].reshape(p), lambda xs, p: xs[0].reshape(p), _reshape),
    "transpose": Kind(
        lambda xs, p: xs[0].T if p is None else gc.transpose(xs[0], p),
        lambda xs, p: np.transpose(xs[0], p),
        _transpose,
    ),
    "expand_dims": Kind(
        lambda xs, p: gc.expand_dims(xs[0], p), lambda xs, p: np.expand_dims(xs[0], p), _expand_dims
    ),
    "squeeze": Kind(
        lambda xs, p: gc.squeeze(xs[0], p[0]), lambda xs, p: np.squeeze(xs[0], p[1]), _squeeze
    ),
    "broadcast_to": Kind(
        lambda xs, p: gc.broadcast_to(xs[0], p),
        lambda xs, p: np.broadcast_to(xs[0], concrete(p)),
        _broadcast_to,
    ),
    "getitem": Kind(lambda xs, p: xs[0][p], lambda xs, p: xs[0][p], _getitem),
    "pad": Kind(
        lambda xs, p: gc.pad(xs[0], p[0], constant_values=p[1]),
        lambda xs, p: np.pad(
            xs[0], np.reshape(np.asarray(p[0], int), (-1, 2)), constant_values=p[1]
        ),
        _pad,
    ),
    "take": Kind(
        lambda xs, p: gc.take(xs[0], p[1], axis=p[0]),
        lambda xs, p: np.take(xs[0], p[1], axis=p[0]),
        _take,
    ),
    "concatenate": Kind(
        lambda xs, p: gc.concatenate(xs, axis=p),
        lambda xs, p: np.concatenate(xs, axis=p),
        _concatenate,
    ),
    "stack": Kind(lambda xs, p: gc.stack(xs, axis=p), lambda xs, p: np.stack(xs, axis=p), _stack),
    "matmul_constant": Kind(
        _matmul_constant_build, lambda xs, w: np.matmul(xs[0], w), _matmul_constant
    ),
    "matmul": Kind(lambda xs, p: xs[0] @ xs[1], lambda xs, p: xs[0] @ xs[1], _matmul_pair),
}


# ---------------------------------------------------------------- the strategy and the test


@st.composite
def programs(draw: Callable) -> tuple[list[Shape], list[str], list[Step], list[Shape]]:
    """(input shapes, input dtypes, steps, the shape each step must have)."""
    symbolic = draw(st.booleans())
    inputs: list[Shape] = []
    dtypes = []
    for _ in range(draw(st.integers(1, 3))):
        dtypes.append(draw(st.sampled_from(["float64", "float32"])))
        dims: list[Any] = draw(st.lists(st.integers(1, 4), max_size=3))
        if symbolic and dims and draw(st.booleans()):
            dims[0] = "B"
        inputs.append(tuple(dims))
    shapes = list(inputs)
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(sorted(KINDS)))
        choice = KINDS[kind].choose(draw, shapes)
        if choice is None:
            continue
        operands, params = choice
        zeros = [np.zeros(concrete(shapes[i])) for i in operands]
        try:
            with np.errstate(all="ignore"):
                result = np.asarray(KINDS[kind].compute(zeros, params))
        except ValueError:  # a max over an empty axis, say: not a well-formed program
            continue
        if result.size > MAX_ELEMENTS:
            continue
        steps.append(Step(kind, operands, params))
        shapes.append(tracked(result.shape))
    return inputs, dtypes, steps, shapes[len(inputs) :]


@settings(max_examples=100, deadline=None)
@given(program=programs(), seed=st.integers(0, 2**32 - 1))
def test_random_program_matches_numpy(program: tuple, seed: int):
    inputs, dtypes, steps, expected_shapes = program
    rng = np.random.default_rng(seed)
    values = [
        rng.standard_normal(concrete(s)).astype(d) for s, d in zip(inputs, dtypes, strict=True)
    ]

    with gc.Graph(name="random"):
        placeholders = [
            gc.placeholder(s, d, name=f"in{i}")
            for i, (s, d) in enumerate(zip(inputs, dtypes, strict=True))
        ]
        tensors = list(placeholders)
        for step in steps:
            operands = [tensors[i] for i in step.operands]
            tensors.append(KINDS[step.kind].build(operands, step.params))
    arrays = _twin(steps, values)
    outputs = tensors[len(inputs) :]
    function = gc.compile(placeholders, outputs, backend="numpy")
    results = function(*values)
    for step, tensor, got, want, shape in zip(
        steps, outputs, results, arrays, expected_shapes, strict=True
    ):
        assert tensor.shape == shape, step
        assert tensor.dtype == got.dtype == want.dtype, step
        _assert_close(got, want, dtypes, step)
    if not any("B" in s for s in inputs):
        return
    # The same compiled program with the batch bound to 1 and to 0: numpy's values, or (a
    # reduction without identity over the empty batch) an InputError where numpy refuses.
    for batch in (1, 0):
        values = [rng.standard_normal(concrete(s, batch)).astype(d)
                  for s, d in zip(inputs, dtypes, strict=True)]
        try:
            arrays = _twin(steps, values, batch)
        except ValueError:
            assert batch == 0
            with pytest.raises(gc.InputError, match="an empty axis has no"):
                function(*values)
            continue
        for step, got, want in zip(steps, function(*values), arrays, strict=True):
            assert got.shape == want.shape, (batch, step)
            _assert_close(got, want, dtypes, step)


def _twin(steps: list, values: list[np.ndarray], batch: int = BATCH) -> list[np.ndarray]:
    """The numpy twin of every step, on ``values`` (whose batch axes have size ``batch``)."""
    arrays = list(values)
    _TWIN_BATCH[0] = batch
    try:
        with np.errstate(all="ignore"):
            for step in steps:
                operands = [arrays[i] for i in step.operands]
                arrays.append(np.asarray(KINDS[step.kind].compute(operands, step.params)))
    finally:
        _TWIN_BATCH[0] = BATCH
    return arrays[len(values):]


def _assert_close(got: np.ndarray, want: np.ndarray, dtypes: list[str], step: Any) -> None:
    # float32 values computed by slightly different formulas (a stable sigmoid, say) differ in
    # the last bits, and those bits survive a later cast to float64.
    tol = 1e-4 if "float32" in dtypes else 1e-9
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=repr(step))
