"""The public op functions (numpy names and signatures) and the composites built from them.

Primitives are created with ``apply``; everything else here (mean, softmax, cross-entropies,
relu, softplus, one_hot…) is plain Python over primitives, numerically stable by construction.
"""

from __future__ import annotations

import builtins
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, GraphError, InputError, NonFiniteError, ShapeError
from graphcomp.ir import (
    Dim,
    Graph,
    SymDim,
    current_graph,
    current_scope,
    make_dim,
    scoped_name,
    shape_str,
    user_source_line,
)
from graphcomp.ops.tensor import Parameter, Tensor, _holds_tensor, apply, as_tensor

AxisLike = int | Sequence[int] | None

# ================================================================ sources


def placeholder(
    shape: Sequence[int | str | None], dtype: Any = "float32", name: str | None = None
) -> Tensor:
    """An input fed when the compiled function is called.

    ``None`` or a string makes a dimension symbolic (bound at call time); equal strings are
    the same size.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     x = gc.placeholder((None, 64), "float64", name="x")
    >>> x.shape
    ('N', 64)
    """
    graph = current_graph()
    dtype_ = dtypes.as_dtype(dtype, where=f"for placeholder {name!r} at {user_source_line()}")
    dims: list[Dim] = []
    for d in (shape,) if isinstance(shape, (int, np.integer)) else shape:
        if d is None:
            dims.append(graph.dims.fresh())
        elif isinstance(d, str) and _dim_text_ok(d):
            dims.append(graph.dims.resolve(d))
        elif isinstance(d, (int, np.integer)) and d >= 0:
            dims.append(int(d))
        else:
            raise ShapeError(
                f"placeholder {name!r}: dimension {d!r} must be an int >= 0, a symbol (a str "
                f"such as 'N', or a product such as 'N*4') or None "
                f"(at {user_source_line()})"
            )
    node = graph.add_node(
        "placeholder", [], {}, tuple(dims), dtype_, name=name, source=user_source_line()
    )
    return Tensor(node)


def parameter(
    value: Any,
    name: str | None = None,
    dtype: Any = None,
    check_finite: bool = False,
    trainable: bool = True,
) -> Parameter:
    """Trainable state: the value is copied into the graph's parameter storage.

    Inside ``gc.name_scope`` the name gets the scope's prefix and must be new to the graph.
    ``trainable=False`` marks state that optimizers leave alone (running statistics).

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     W = gc.parameter(np.zeros((3, 2)), name="W")
    >>> W.shape, W.dtype, W.trainable
    ((3, 2), dtype('float64'), True)
    """
    graph = current_graph()
    if name is not None and current_scope():
        name = scoped_name(name)
        _check_new_parameter_name(graph, name)
    array = np.array(value, dtype=None if dtype is None else dtypes.as_dtype(dtype), copy=True)
    dtype_ = dtypes.as_dtype(array.dtype, where=f"for parameter {name!r} at {user_source_line()}")
    array = np.asarray(array, dtype=dtype_, order="C")  # ascontiguousarray makes 0-d 1-d
    if check_finite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteError(
            f"parameter {name!r} at {user_source_line()}: value has {bad} non-finite "
            "element(s) (NaN or inf) and check_finite=True"
        )
    node = graph.add_node(
        "parameter", [], {}, array.shape, dtype_, name=name, source=user_source_line()
    )
    graph.parameter_values[node.id] = array
    if name is not None:
        graph.parameter_names.setdefault(name, node)
    if not trainable:
        graph.non_trainable.add(node.id)
    return Parameter(node)


def _check_new_parameter_name(graph: Any, name: str) -> None:
    taken = graph.parameter_names.get(name)
    if taken is not None:
        raise GraphError(
            f"parameter {name!r} at {user_source_line()}: graph {graph.name!r} already has a "
            f"parameter of that name, created at {taken.source}; give the layer another name "
            "or use another name_scope"
        )


def parameters(graph: Graph | None = None, trainable: bool | None = None) -> list[Parameter]:
    """The parameters of ``graph`` (default: the current graph) in creation order; only the
    trainable ones with ``trainable=True``, only the others with ``trainable=False``.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph() as g:
    ...     w = gc.parameter(np.ones(2), name="w")
    ...     n = gc.parameter(np.zeros(()), name="count", trainable=False)
    >>> [p.name for p in gc.parameters(g)], [p.name for p in gc.parameters(g, trainable=True)]
    (['w', 'count'], ['w'])
    """
    graph = current_graph() if graph is None else graph
    found = [Parameter(node) for node in graph.nodes() if node.op == "parameter"]
    if trainable is None:
        return found
    return [p for p in found if p.trainable == trainable]


def constant(value: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    """A value fixed at graph-build time.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     c = gc.constant([1.0, 2.0], "float32")
    >>> c.dtype
    dtype('float32')
    """
    tensor = as_tensor(np.asarray(value), dtype)
    if name is not None:
        graph = tensor.graph
        node = tensor.node
        graph.nx.remove_node(node.id)
        new = graph.add_node(
            "constant", [], dict(node.attrs), node.shape, node.dtype, name=name, source=node.source
        )
        return Tensor(new)
    return tensor


# ================================================================ promotion helpers


def _graph_of(*values: Any) -> Any:
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
    return current_graph()


def _promote(*values: Any) -> list[Tensor]:
    """Tensors of one dtype following numpy 2 promotion (Python scalars are weak)."""
    values = tuple(as_tensor(v) if _holds_tensor(v) else v for v in values)
    graph = _graph_of(*values)
    operands = [v.dtype if isinstance(v, Tensor) else _weak(v) for v in values]
    try:
        target = dtypes.result_dtype(*operands)
    except (DTypeError, TypeError, ValueError):
        kinds = ", ".join(str(o) if isinstance(o, np.dtype) else type(o).__name__ for o in operands)
        raise DTypeError(
            f"cannot combine operands of types {kinds}; graphcomp supports float32, float64, "
            f"int32, int64 and bool (at {user_source_line()})"
        ) from None
    out = []
    for v in values:
        if isinstance(v, Tensor):
            out.append(v if v.dtype == target else apply("cast", v, dtype=target))
        else:
            out.append(as_tensor(_fit_scalar(v, target), target, graph))
    return out


def _fit_scalar(value: Any, target: np.dtype) -> np.ndarray:
    """``value`` as an array, refusing a Python int that ``target`` cannot hold (as numpy 2
    does) instead of letting it wrap around."""
    if isinstance(value, int) and not isinstance(value, bool) and target.kind == "i":
        info = np.iinfo(target)
        if not info.min <= value <= info.max:
            raise DTypeError(
                f"Python int {value} is out of bounds for {target} (at {user_source_line()})"
            )
    return np.asarray(value)


def _weak(value: Any) -> Any:
    if isinstance(value, (bool, int, float)):
        return value
    array = np.asarray(value)
    if array.dtype == np.dtype("float16"):
        return np.dtype("float32")
    return array.dtype


def _to_float(x: Any) -> Tensor:
    x = as_tensor(x) if not isinstance(x, Tensor) else x
    target = dtypes.float_dtype_for(x.dtype)
    return x if x.dtype == target else apply("cast", x, dtype=target)


def _binary(op: str, a: Any, b: Any) -> Tensor:
    a_, b_ = _promote(a, b)
    return apply(op, a_, b_)


def _normalize_axes(axis: AxisLike, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if hasattr(axis, "__iter__") else (axis,)
    result = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise ShapeError(f"axis {a!r} is not an integer (at {user_source_line()})")
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for rank {ndim} (at {user_source_line()})")
        result.append(int(a) % ndim if ndim else 0)
    if len(set(result)) != len(result):
        raise ShapeError(f"repeated axis in {axis} (at {user_source_line()})")
    return tuple(sorted(result))


# ================================================================ elementwise


def add(a: Any, b: Any) -> Tensor:
    """a + b with broadcasting. ``gc.add(x, 1.0)``"""
    return _binary("add", a, b)


def subtract(a: Any, b: Any) -> Tensor:
    """a - b with broadcasting. ``gc.subtract(x, y)``"""
    return _binary("subtract", a, b)


def multiply(a: Any, b: Any) -> Tensor:
    """a * b with broadcasting. ``gc.multiply(x, 2.0)``"""
    return _binary("multiply", a, b)


def divide(a: Any, b: Any) -> Tensor:
    """True division a / b (integers give float64). ``gc.divide(x, 3)``"""
    a_, b_ = _promote(a, b)
    return apply("divide", _to_float(a_), _to_float(b_))


def power(a: Any, b: Any) -> Tensor:
    """a ** b (computed in floating point). ``gc.power(x, 2.0)``"""
    a_, b_ = _promote(a, b)
    return apply("power", _to_float(a_), _to_float(b_))


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise max; ties share the gradient equally. ``gc.maximum(x, 0.0)``"""
    return _binary("maximum", a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise min; ties share the gradient equally. ``gc.minimum(x, 1.0)``"""
    return _binary("minimum", a, b)


def less(a: Any, b: Any) -> Tensor:
    """a < b (bool). ``x < 0``"""
    return _binary("less", a, b)


def less_equal(a: Any, b: Any) -> Tensor:
    """a <= b (bool). ``x <= 0``"""
    return _binary("less_equal", a, b)


def greater(a: Any, b: Any) -> Tensor:
    """a > b (bool). ``x > 0``"""
    return _binary("greater", a, b)


def greater_equal(a: Any, b: Any) -> Tensor:
    """a >= b (bool). ``x >= 0``"""
    return _binary("greater_equal", a, b)


def equal(a: Any, b: Any) -> Tensor:
    """a == b (bool). ``gc.equal(pred, y)``"""
    return _binary("equal", a, b)


def not_equal(a: Any, b: Any) -> Tensor:
    """a != b (bool). ``gc.not_equal(pred, y)``"""
    return _binary("not_equal", a, b)


def negative(x: Any) -> Tensor:
    """-x. ``gc.negative(x)``"""
    return apply("negative", as_tensor(x))


def abs(x: Any) -> Tensor:
    """|x|; abs'(0) = 0. ``gc.abs(x)``"""
    return apply("abs", as_tensor(x))


def sign(x: Any) -> Tensor:
    """-1, 0 or 1 (zero gradient). ``gc.sign(x)``"""
    return apply("sign", as_tensor(x))


def _unary_float(op: str, x: Any) -> Tensor:
    return apply(op, _to_float(x))


def exp(x: Any) -> Tensor:
    """e**x. ``gc.exp(x)``"""
    return _unary_float("exp", x)


def log(x: Any) -> Tensor:
    """Natural logarithm. ``gc.log(x)``"""
    return _unary_float("log", x)


def log1p(x: Any) -> Tensor:
    """log(1 + x), accurate for small x. ``gc.log1p(x)``"""
    return _unary_float("log1p", x)


def expm1(x: Any) -> Tensor:
    """exp(x) - 1, accurate for small x. ``gc.expm1(x)``"""
    return _unary_float("expm1", x)


def sqrt(x: Any) -> Tensor:
    """Square root. ``gc.sqrt(x)``"""
    return _unary_float("sqrt", x)


def sin(x: Any) -> Tensor:
    """Sine. ``gc.sin(x)``"""
    return _unary_float("sin", x)


def cos(x: Any) -> Tensor:
    """Cosine. ``gc.cos(x)``"""
    return _unary_float("cos", x)


def tanh(x: Any) -> Tensor:
    """Hyperbolic tangent. ``gc.tanh(x)``"""
    return _unary_float("tanh", x)


def sigmoid(x: Any) -> Tensor:
    """1 / (1 + exp(-x)), stable for large |x|. ``gc.sigmoid(x)``"""
    return _unary_float("sigmoid", x)


def square(x: Any) -> Tensor:
    """x * x. ``gc.square(x)``"""
    x = as_tensor(x)
    return multiply(x, x)


def relu(x: Any) -> Tensor:
    """max(x, 0), with relu'(0) = 0. ``gc.relu(x)``"""
    x = as_tensor(x)
    return where(greater(x, 0), x, zeros_like(x))


def softplus(x: Any) -> Tensor:
    """log(1 + exp(x)), stable for large |x|. ``gc.softplus(x)``"""
    x = _to_float(x)
    return maximum(x, 0) + log1p(exp(-abs(x)))


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """a where cond is true, else b (broadcasting). ``gc.where(x > 0, x, 0.0)``"""
    cond_t = as_tensor(cond, graph=_graph_of(cond, a, b))
    if cond_t.dtype != np.dtype("bool"):
        raise DTypeError(
            f"where: condition must be bool, got {cond_t.dtype} at {user_source_line()}"
        )
    a_, b_ = _promote(a, b)
    return apply("where", cond_t, a_, b_)


def clip(x: Any, a_min: Any = None, a_max: Any = None) -> Tensor:
    """Limit values to [a_min, a_max] (either may be None). ``gc.clip(x, 0.0, 1.0)``"""
    x = as_tensor(x)
    if a_min is not None:
        x = maximum(x, a_min)
    if a_max is not None:
        x = minimum(x, a_max)
    return x


def cast(x: Any, dtype: Any) -> Tensor:
    """Convert to ``dtype`` (numpy astype). ``gc.cast(y, "float32")``"""
    x = as_tensor(x)
    target = dtypes.as_dtype(dtype, where=f"in cast at {user_source_line()}")
    return x if x.dtype == target else apply("cast", x, dtype=target)


def stop_gradient(x: Any) -> Tensor:
    """Identity whose gradient is cut. ``gc.stop_gradient(m)``"""
    return apply("stop_gradient", as_tensor(x))


def zeros_like(x: Any, dtype: Any = None) -> Tensor:
    """Zeros of x's (possibly symbolic) shape. ``gc.zeros_like(x)``"""
    return _filled_like(x, 0, dtype)


def ones_like(x: Any, dtype: Any = None) -> Tensor:
    """Ones of x's (possibly symbolic) shape. ``gc.ones_like(x)``"""
    return _filled_like(x, 1, dtype)


def _filled_like(x: Any, fill: int, dtype: Any) -> Tensor:
    x = as_tensor(x)
    dtype_ = x.dtype if dtype is None else dtypes.as_dtype(dtype)
    value = as_tensor(np.asarray(fill, dtype=dtype_), graph=x.graph)
    return value if x.ndim == 0 else apply("broadcast_to", value, shape=x.shape)


# ================================================================ elementwise: numpy's further
# functions. Rounding and the NaN tests take integers as numpy 2 does (unchanged, or constant).


def floor(x: Any) -> Tensor:
    """Largest integer <= x, elementwise; zero gradient; integers unchanged. ``gc.floor(x)``"""
    return _rounded("floor", x)


def ceil(x: Any) -> Tensor:
    """Smallest integer >= x, elementwise; zero gradient; integers unchanged. ``gc.ceil(x)``"""
    return _rounded("ceil", x)


def trunc(x: Any) -> Tensor:
    """x rounded toward zero; zero gradient; integers unchanged. ``gc.trunc(x)``"""
    return _rounded("trunc", x)


def rint(x: Any) -> Tensor:
    """Nearest integer, halves to even (floats; integers give float64); zero gradient.
    ``gc.rint(x)``"""
    return _unary_float("rint", x)


def _rounded(op: str, x: Any) -> Tensor:
    x = as_tensor(x)
    return apply(op, x) if dtypes.is_float(x.dtype) else x  # numpy 2 returns integers as given


def remainder(a: Any, b: Any) -> Tensor:
    """a mod b with the sign of b, as numpy's ``%`` (floats and integers; x % 0 is NaN for
    floats, 0 for integers). Gradient 1 for a, -floor(a / b) for b. ``gc.remainder(t, 24.0)``"""
    a_, b_ = _promote(a, b)
    return apply("remainder", a_, b_)


mod = remainder


def fmax(a: Any, b: Any) -> Tensor:
    """Elementwise max ignoring NaNs (NaN only where both are); the gradient goes to the operand
    chosen, ties share it. ``gc.fmax(x, y)``"""
    return _binary("fmax", a, b)


def fmin(a: Any, b: Any) -> Tensor:
    """Elementwise min ignoring NaNs (NaN only where both are); the gradient goes to the operand
    chosen, ties share it. ``gc.fmin(x, y)``"""
    return _binary("fmin", a, b)


def arcsin(x: Any) -> Tensor:
    """Inverse sine (NaN outside [-1, 1]). ``gc.arcsin(x)``"""
    return _unary_float("arcsin", x)


def arccos(x: Any) -> Tensor:
    """Inverse cosine (NaN outside [-1, 1]). ``gc.arccos(x)``"""
    return _unary_float("arccos", x)


def arctan(x: Any) -> Tensor:
    """Inverse tangent. ``gc.arctan(x)``"""
    return _unary_float("arctan", x)


def arcsinh(x: Any) -> Tensor:
    """Inverse hyperbolic sine. ``gc.arcsinh(x)``"""
    return _unary_float("arcsinh", x)


def arccosh(x: Any) -> Tensor:
    """Inverse hyperbolic cosine (NaN below 1). ``gc.arccosh(x)``"""
    return _unary_float("arccosh", x)


def arctanh(x: Any) -> Tensor:
    """Inverse hyperbolic tangent (NaN outside [-1, 1]). ``gc.arctanh(x)``"""
    return _unary_float("arctanh", x)


def sinc(x: Any) -> Tensor:
    """Normalised sinc, sin(pi x) / (pi x), with sinc(0) = 1 and sinc'(0) = 0. ``gc.sinc(t)``"""
    return _unary_float("sinc", x)


def erf(x: Any) -> Tensor:
    """The error function, ``2/sqrt(pi) * integral of exp(-t*t) from 0 to x``. ``gc.erf(x)``"""
    return _unary_float("erf", x)


def arctan2(x1: Any, x2: Any) -> Tensor:
    """Angle of the point (x2, x1) in [-pi, pi], with broadcasting. ``gc.arctan2(y, x)``"""
    a_, b_ = _promote(x1, x2)
    return apply("arctan2", _to_float(a_), _to_float(b_))


def hypot(x1: Any, x2: Any) -> Tensor:
    """sqrt(x1**2 + x2**2) without overflow or underflow. ``gc.hypot(dx, dy)``"""
    a_, b_ = _promote(x1, x2)
    return apply("hypot", _to_float(a_), _to_float(b_))


def isnan(x: Any) -> Tensor:
    """Where x is NaN (bool; integers never are). ``gc.isnan(x)``"""
    return _float_test("isnan", x, integers=False)


def isinf(x: Any) -> Tensor:
    """Where x is +inf or -inf (bool; integers never are). ``gc.isinf(x)``"""
    return _float_test("isinf", x, integers=False)


def isfinite(x: Any) -> Tensor:
    """Where x is neither NaN nor infinite (bool; integers always are). ``gc.isfinite(x)``"""
    return _float_test("isfinite", x, integers=True)


def _float_test(op: str, x: Any, integers: bool) -> Tensor:
    x = as_tensor(x)
    if dtypes.is_float(x.dtype):
        return apply(op, x)
    return _filled_like(x, int(integers), "bool")


# ================================================================ reductions


def sum(x: Any, axis: AxisLike = None, keepdims: bool = False) -> Tensor:
    """Sum over axes (all by default). ``gc.sum(x, axis=1)``"""
    x = as_tensor(x)
    axes = _normalize_axes(axis, x.ndim)
    return apply("reduce_sum", x, axes=axes, keepdims=keepdims)


def max(x: Any, axis: AxisLike = None, keepdims: bool = False) -> Tensor:
    """Max over axes; tied maxima share the gradient. ``gc.max(x, axis=-1)``"""
    x = as_tensor(x)
    axes = _normalize_axes(axis, x.ndim)
    return apply("reduce_max", x, axes=axes, keepdims=keepdims)


def min(x: Any, axis: AxisLike = None, keepdims: bool = False) -> Tensor:
    """Min over axes (as -max(-x)). ``gc.min(x, axis=0)``"""
    return negative(max(negative(x), axis=axis, keepdims=keepdims))


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the first maximum (int64); flattened when axis is None. ``gc.argmax(p, -1)``"""
    x = as_tensor(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    (axis_,) = _normalize_axes(axis, x.ndim)
    return apply("argmax", x, axis=axis_, keepdims=keepdims)


def dim_size(x: Any, axes: AxisLike = None, dtype: Any = "float64") -> Tensor:
    """Number of elements of x over ``axes`` as a scalar (works for symbolic dims)."""
    x = as_tensor(x)
    return apply("dim_size", x, axes=_normalize_axes(axes, x.ndim), dtype=dtypes.as_dtype(dtype))


def mean(x: Any, axis: AxisLike = None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over axes (integers give float64). ``gc.mean(loss)``"""
    x = _to_float(x)
    axes = _normalize_axes(axis, x.ndim)
    total = sum(x, axis=axes, keepdims=keepdims)
    sizes = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in sizes):
        return total / float(math.prod(sizes))
    return total / dim_size(x, axes, x.dtype)


def logsumexp(x: Any, axis: AxisLike = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))), shifted by the max so it never overflows. ``gc.logsumexp(z, -1)``"""
    x = _to_float(x)
    axes = _normalize_axes(axis, x.ndim)
    shift = stop_gradient(max(x, axis=axes, keepdims=True))
    out = log(sum(exp(x - shift), axis=axes, keepdims=True)) + shift
    return out if keepdims else squeeze(out, axes)


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """x - logsumexp(x): stable log-probabilities. ``gc.log_softmax(logits)``"""
    x = _to_float(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Any, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the max. ``gc.softmax(logits, axis=-1)``"""
    x = _to_float(x)
    e = exp(x - stop_gradient(max(x, axis=axis, keepdims=True)))
    return e / sum(e, axis=axis, keepdims=True)


def softmax_cross_entropy(logits: Any, labels: Any, axis: int = -1) -> Tensor:
    """Per-example cross-entropy of softmax(logits) against labels.

    Integer ``labels`` are class indices; float labels are probabilities over ``axis``. Stable
    for logits of any size.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     z = gc.placeholder((None, 3), "float64", name="z")
    ...     loss = gc.softmax_cross_entropy(z, [2, 0])
    >>> gc.compile([z], loss, backend="numpy")(np.array([[0.0, 0.0, 1000.0], [0.0, 0.0, 0.0]]))
    array([0.        , 1.09861229])
    """
    logits = _to_float(logits)
    labels = as_tensor(labels, graph=logits.graph)
    (axis_,) = _normalize_axes(axis, logits.ndim)
    if labels.dtype.kind in "iu":
        if axis_ != logits.ndim - 1:
            raise ShapeError(
                f"integer labels need the class axis to be the last axis (at {user_source_line()})"
            )
        classes = logits.shape[axis_]
        if not isinstance(classes, int):
            raise ShapeError(
                f"the class axis of logits must have a static size (at {user_source_line()})"
            )
        picked = sum(logits * one_hot(labels, classes, logits.dtype), axis=axis_)
        return logsumexp(logits, axis=axis_) - picked
    labels = cast(labels, logits.dtype)
    return -sum(labels * log_softmax(logits, axis=axis_), axis=axis_)


def sigmoid_binary_cross_entropy(logits: Any, targets: Any) -> Tensor:
    """Elementwise binary cross-entropy of sigmoid(logits) against targets in [0, 1], stable.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     z = gc.placeholder((3,), "float64", name="z")
    ...     loss = gc.sigmoid_binary_cross_entropy(z, [1.0, 0.0, 1.0])
    >>> gc.compile([z], loss, backend="numpy")(np.array([1000.0, -1000.0, 0.0]))
    array([0.        , 0.        , 0.69314718])
    """
    x = _to_float(logits)
    t = cast(as_tensor(targets, graph=x.graph), x.dtype)
    return maximum(x, 0) - x * t + log1p(exp(-abs(x)))


def one_hot(labels: Any, num_classes: int, dtype: Any = "float32") -> Tensor:
    """One-hot encoding along a new last axis. ``gc.one_hot(y, 10)``"""
    labels = as_tensor(labels)
    if labels.dtype.kind not in "iu":
        raise DTypeError(
            f"one_hot needs integer labels, got {labels.dtype} (at {user_source_line()})"
        )
    classes = as_tensor(np.arange(num_classes, dtype=labels.dtype), graph=labels.graph)
    return cast(equal(expand_dims(_checked_labels(labels, num_classes), -1), classes), dtype)


def _checked_labels(labels: Tensor, num_classes: int) -> Tensor:
    """``labels``, refused now (constants) or at call time when one is outside [0, classes)."""
    if labels.node.op == "constant":
        from graphcomp.ops.indexing import index_problem

        problem = index_problem(np.asarray(labels.node.attrs["value"]), num_classes, "check_index")
        if problem is not None:
            raise InputError(f"{problem} (at {user_source_line()})")
        return labels
    return apply("check_index", labels, size=int(num_classes))


# ================================================================ linear algebra


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with numpy's rules for 1-D and batched operands. ``x @ W``"""
    a_, b_ = _promote(a, b)
    if a_.ndim == 0 or b_.ndim == 0:
        raise ShapeError(f"matmul needs operands of rank >= 1 at {user_source_line()}")
    a_, b_ = _to_float(a_), _to_float(b_)
    squeeze_axes = []
    if a_.ndim == 1:
        a_ = reshape(a_, (1, a_.shape[0]))
        squeeze_axes.append(-2)
    if b_.ndim == 1:
        b_ = reshape(b_, (b_.shape[0], 1))
        squeeze_axes.append(-1)
    out = apply("matmul", a_, b_)
    return squeeze(out, squeeze_axes) if squeeze_axes else out


# ================================================================ shapes


def reshape(x: Any, shape: Sequence[Any]) -> Tensor:
    """Reshape; one dim may be -1 (inferred, a product such as ``N*64`` where symbolic dims
    merge); dims may be symbols or products of them. ``x.reshape(-1, 16)``"""
    x = as_tensor(x)
    dims = x.graph.dims
    bad = [d for d in shape if isinstance(d, str) and not _dim_text_ok(d)]
    if bad:
        raise ShapeError(f"reshape: {bad[0]!r} is not a dimension (at {user_source_line()})")
    target = [dims.resolve(d) if isinstance(d, str) else int(d) for d in shape]
    if target.count(-1) > 1:
        raise ShapeError(
            f"reshape: only one -1 allowed, got {tuple(shape)} (at {user_source_line()})"
        )
    if -1 in target:
        target[target.index(-1)] = _infer_minus_one(x, target)
    if tuple(target) == tuple(x.shape):
        return x
    return apply("reshape", x, shape=tuple(target))


def _dim_text_ok(text: str) -> bool:
    """Whether ``text`` names a symbolic dim: a symbol, or a product such as ``N*64``."""
    try:
        SymDim(text)
    except ValueError:
        return False
    return True


def _infer_minus_one(x: Tensor, target: list) -> Dim:
    from graphcomp.ops.structural import symbolic_size

    dims = x.graph.dims
    known_in, syms_in = symbolic_size(x.shape, dims)
    rest = [d for d in target if d != -1]
    known_out, syms_out = symbolic_size(rest, dims)
    leftover = Counter(syms_in)
    leftover.subtract(syms_out)
    unknown = sorted(s for s, count in leftover.items() if count < 0)
    if unknown:
        raise ShapeError(
            f"reshape {shape_str(x.shape)} to {shape_str(target)}: the size of "
            f"{', '.join(unknown)} is not a factor of the input's size (at {user_source_line()})"
        )
    if known_out == 0 or known_in % known_out:
        raise ShapeError(
            f"cannot reshape {shape_str(x.shape)} to {shape_str(target)} "
            f"(at {user_source_line()})"
        )
    # The rest may be a product of symbols and an int: [N,8,8,9] to (-1, 9) gives N*64.
    return make_dim(known_in // known_out, leftover.elements())


def transpose(x: Any, axes: Sequence[int] | None = None) -> Tensor:
    """Permute axes (reverse them by default). ``x.T``"""
    x = as_tensor(x)
    if axes is None:
        perm = tuple(reversed(range(x.ndim)))
    else:  # out-of-range axes stay out of range, for the primitive's rule to reject
        perm = tuple(int(a) + x.ndim * (a < 0) for a in axes)
    if perm == tuple(range(x.ndim)):
        return x
    return apply("transpose", x, perm=perm)


def broadcast_to(x: Any, shape: Sequence[Any]) -> Tensor:
    """numpy broadcast_to. ``gc.broadcast_to(b, (4, 10))``"""
    x = as_tensor(x)
    dims = x.graph.dims
    target = tuple(dims.resolve(d) if isinstance(d, str) else int(d) for d in shape)
    if target == tuple(x.shape):
        return x
    return apply("broadcast_to", x, shape=target)


def expand_dims(x: Any, axis: int | Sequence[int]) -> Tensor:
    """Insert size-1 axes. ``gc.expand_dims(y, -1)``"""
    x = as_tensor(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out_ndim = x.ndim + len(axes)
    axes_ = set(_normalize_axes(axes, out_ndim))
    it = iter(x.shape)
    return reshape(x, [1 if i in axes_ else next(it) for i in range(out_ndim)])


def squeeze(x: Any, axis: AxisLike = None) -> Tensor:
    """Remove size-1 axes (all of them by default). ``gc.squeeze(x, 0)``"""
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = _normalize_axes(axis, x.ndim)
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(
                    f"squeeze: axis {a} has size {x.shape[a]}, not 1 (at {user_source_line()})"
                )
    return reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join along an existing axis. ``gc.concatenate([a, b], axis=1)``"""
    if not tensors:
        raise ShapeError(f"concatenate needs at least one tensor (at {user_source_line()})")
    parts = _promote(*tensors)
    (axis_,) = _normalize_axes(axis, parts[0].ndim)
    if len(parts) == 1:
        return parts[0]
    return apply("concatenate", *parts, axis=axis_)


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join along a new axis. ``gc.stack([h1, h2], axis=0)``"""
    if not tensors:
        raise ShapeError(f"stack needs at least one tensor (at {user_source_line()})")
    parts = _promote(*tensors)
    ndim = parts[0].ndim + 1
    (axis_,) = _normalize_axes(axis, ndim)
    return concatenate([expand_dims(p, axis_) for p in parts], axis=axis_)


PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def pad(x: Any, pad_width: Any, mode: str = "constant", constant_values: float = 0.0) -> Tensor:
    """numpy.pad: ``mode`` "constant" (the default), "edge", "reflect", "symmetric" or "wrap".

    The other modes read positions of ``x`` (a gather whose gradient adds back), so the axes
    they pad need static sizes. ``gc.pad(img, ((0, 0), (1, 1), (1, 1)), mode="reflect")``
    """
    x = as_tensor(x)
    if mode not in PAD_MODES:
        raise ShapeError(f"pad: mode {mode!r} is not one of {', '.join(PAD_MODES)} "
                         f"(at {user_source_line()})")
    if x.ndim == 0:
        return x  # as numpy.pad leaves a 0-d array
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except (ValueError, TypeError):
        raise ShapeError(
            f"pad: pad_width {pad_width!r} does not fit rank {x.ndim} (at {user_source_line()})"
        ) from None
    if mode == "constant":
        return pad_general(
            x, widths[:, 0].tolist(), widths[:, 1].tolist(), [0] * x.ndim, constant_values
        )
    for axis, (lo, hi) in enumerate(widths.tolist()):
        if lo or hi:
            x = take(x, _pad_positions(x.shape[axis], lo, hi, mode, axis), axis=axis)
    return x


def _pad_positions(d: Dim, lo: int, hi: int, mode: str, axis: int) -> np.ndarray:
    """The positions of an axis of size ``d`` that numpy's ``mode`` padding reads."""
    if not isinstance(d, int) or d == 0:
        raise ShapeError(f"pad: mode {mode!r} needs a static, non-empty axis {axis}, not "
                         f"{d!r} (at {user_source_line()})")
    return np.pad(np.arange(d), (lo, hi), mode=mode)  # type: ignore[call-overload]


def pad_general(
    x: Tensor, lo: Sequence[int], hi: Sequence[int], interior: Sequence[int], value: float = 0.0
) -> Tensor:
    """Pad with lo/hi elements at the ends and ``interior`` between elements (lax.pad-style)."""
    if not builtins.any(lo) and not builtins.any(hi) and not builtins.any(interior):
        return x
    return apply(
        "pad",
        x,
        lo=tuple(int(v) for v in lo),
        hi=tuple(int(v) for v in hi),
        interior=tuple(int(v) for v in interior),
        value=float(value),
    )


def slice_general(
    x: Tensor, starts: Sequence[int], stops: Sequence[Any], steps: Sequence[int]
) -> Tensor:
    """Basic slicing with explicit non-negative starts/stops and positive steps."""
    if all(
        s == 0 and st == 1 and stop == d
        for s, stop, st, d in zip(starts, stops, steps, x.shape, strict=True)
    ):
        return x
    return apply("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` with numpy's rules (``graphcomp/ops/getitem.py``). ``x[:, ::-1, [0, 2]]``"""
    from graphcomp.ops.getitem import getitem as numpy_getitem

    return numpy_getitem(x, index)


def take(x: Any, indices: Any, axis: int | None = None) -> Tensor:
    """Gather along ``axis`` (flattened when None), like numpy.take. ``gc.take(emb, ids, 0)``"""
    x = as_tensor(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if isinstance(indices, Tensor):
        indices_t = indices
    else:
        index_array = np.asarray(indices)
        if index_array.dtype.kind not in "iu" and index_array.size:
            raise DTypeError(
                f"take: indices must be integers, got {index_array.dtype} "
                f"(at {user_source_line()})"
            )
        indices_t = as_tensor(index_array.astype(np.int64), graph=x.graph)
    (axis_,) = _normalize_axes(axis, x.ndim)
    return apply("take", x, indices_t, axis=axis_)


def scatter_add(base: Any, indices: Any, updates: Any, axis: int = 0) -> Tensor:
    """``base`` with ``updates`` added at ``indices`` along ``axis`` (the adjoint of take);
    repeated indices accumulate. ``gc.scatter_add(gc.zeros_like(table), ids, rows)``"""
    base = as_tensor(base)
    indices_t = as_tensor(indices, graph=base.graph)
    updates_t = cast(as_tensor(updates, graph=base.graph), base.dtype)
    (axis_,) = _normalize_axes(axis, base.ndim)
    return apply("scatter_add", base, indices_t, updates_t, axis=axis_)


# ================================================================ helpers for VJP rules


def unbroadcast(g: Tensor, shape: Sequence[Dim]) -> Tensor:
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``.

    The axes are found statically: a target dim of 1 facing a larger (or symbolic) dim.
    """
    dims = g.graph.dims
    target = dims.resolve_shape(shape)
    g_shape = g.shape
    lead = len(g_shape) - len(target)
    axes = list(range(lead))
    axes += [lead + i for i, d in enumerate(target) if d == 1 and g_shape[lead + i] != 1]
    if axes:
        g = apply("reduce_sum", g, axes=tuple(axes), keepdims=False)
    return reshape(g, target)


def expand_reduced(
    g: Tensor, in_shape: Sequence[Dim], axes: Sequence[int], keepdims: bool
) -> Tensor:
    """Broadcast a reduction's result (or cotangent) back to the input's shape."""
    if not keepdims:
        it = iter(g.shape)
        g = reshape(g, [1 if i in axes else next(it) for i in range(len(in_shape))])
    return broadcast_to(g, in_shape)
