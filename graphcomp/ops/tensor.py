"""``Tensor``, the user's handle on a node, and ``apply``, the one way ops create nodes."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, NonFiniteError, ShapeError
from graphcomp.ir import (
    DimMismatch,
    Graph,
    Node,
    current_graph,
    multiply,
    shape_str,
    user_source_line,
)
from graphcomp.ops.registry import get_op


def apply(op_name: str, *inputs: Tensor, name: str | None = None, **attrs: Any) -> Tensor:
    """Create a node of primitive ``op_name`` on ``inputs`` and return its tensor.

    Shape and dtype errors name the op, its inputs and the user's source line.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     x = gc.placeholder((2, 3), "float32", name="x")
    ...     y = apply("reduce_sum", x, axes=(1,), keepdims=False)
    >>> y.op, y.shape, y.dtype
    ('reduce_sum', (2,), dtype('float32'))
    """
    op = get_op(op_name)
    source = user_source_line()
    # Inside a scan body, an op on a body tensor and an enclosing graph's tensor belongs to
    # the body (the innermost graph), which captures the other as a loop invariant.
    graph = max((t.graph for t in inputs), key=Graph.depth) if inputs else current_graph()
    nodes = [graph.adopt(t.node, op_name, source) for t in inputs]
    dims_before = graph.dims.snapshot()
    try:
        shape, dtype = op.infer(nodes, attrs, graph.dims)
    except DimMismatch as exc:
        graph.dims.restore(dims_before)  # a failed op must not leave symbols tied
        raise ShapeError(_build_error(op_name, nodes, str(exc), source)) from None
    except (ShapeError, DTypeError) as exc:
        graph.dims.restore(dims_before)
        raise type(exc)(_build_error(op_name, nodes, str(exc), source)) from None
    node = graph.add_node(op_name, nodes, attrs, shape, dtype, name=name, source=source)
    return Tensor(node)


def _build_error(op_name: str, nodes: list[Node], reason: str, source: str) -> str:
    operands = ", ".join(
        f"{n.label()} {dtypes.short_name(n.dtype)}{shape_str(n.graph.dims.resolve_shape(n.shape))}"
        for n in nodes
    )
    return f"{op_name}({operands}) at {source}: {reason}"


def as_tensor(value: Any, dtype: Any = None, graph: Graph | None = None) -> Tensor:
    """``value`` if it is a Tensor, else a constant node holding it.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     c = as_tensor(2.0, "float32")
    >>> c.op, c.shape, c.dtype
    ('constant', (), dtype('float32'))
    """
    if isinstance(value, Tensor):
        return value
    if _holds_tensor(value):  # [x, x + 2]: stacked, as numpy makes an array of a list
        from graphcomp.ops.functions import stack

        return stack([as_tensor(v, dtype, graph) for v in value])
    array = np.asarray(value)
    if dtype is not None:
        array = array.astype(dtypes.as_dtype(dtype))
    elif array.dtype == np.dtype("float16"):
        array = array.astype("float32")
    dtype_ = dtypes.as_dtype(array.dtype, where=f"for a constant at {user_source_line()}")
    graph = graph or current_graph()
    node = graph.add_node(
        "constant",
        [],
        {"value": array.astype(dtype_)},
        array.shape,
        dtype_,
        source=user_source_line(),
    )
    return Tensor(node)


def _holds_tensor(value: Any) -> bool:
    """Whether ``value`` is a list or tuple with a Tensor somewhere inside."""
    return isinstance(value, (list, tuple)) and any(
        isinstance(v, Tensor) or _holds_tensor(v) for v in value)


class Tensor:
    """A node of a graph seen as an n-d array: operators build new nodes.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     x = gc.placeholder((None, 3), "float32", name="x")
    ...     y = (x * 2.0 + 1.0).sum(axis=1)
    >>> y.shape, y.dtype
    (('N',), dtype('float32'))
    """

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    # -- numpy's functions on a Tensor (graphcomp/ops/numpy_protocol.py) ------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        from graphcomp.ops.numpy_protocol import array_ufunc

        return array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        from graphcomp.ops.numpy_protocol import array_function

        return array_function(func, args, kwargs)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(f"{self.node.describe()} is a graph node, not an array: it has no value "
                        "until the graph is compiled and called (a parameter's current value "
                        "is .value)")

    # -- static facts ---------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        return self.node.graph

    @property
    def shape(self) -> tuple[int | str, ...]:
        """Static shape; symbolic dims are strings (resolved through the graph's dim table)."""
        return self.node.graph.dims.resolve_shape(self.node.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    @property
    def name(self) -> str | None:
        return self.node.name

    @property
    def op(self) -> str:
        return self.node.op

    def __repr__(self) -> str:
        shape = shape_str(self.shape)
        return f"<Tensor {self.node.label()} {self.op} : {dtypes.short_name(self.dtype)}{shape}>"

    def __bool__(self) -> bool:
        raise TypeError(
            "a graphcomp Tensor has no truth value while the graph is built; "
            "use gc.where(cond, a, b) for data-dependent choices"
        )

    def __hash__(self) -> int:
        return hash(self.node)

    def __iter__(self) -> Any:
        raise TypeError("a graphcomp Tensor is not iterable; index it with x[i] instead")

    # -- operators ------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return _fn.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _fn.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _fn.subtract(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _fn.subtract(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _fn.multiply(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _fn.multiply(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _fn.divide(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _fn.divide(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _fn.power(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _fn.power(other, self)

    def __mod__(self, other: Any) -> Tensor:
        return _fn.remainder(self, other)

    def __rmod__(self, other: Any) -> Tensor:
        return _fn.remainder(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _fn.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _fn.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _fn.negative(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _fn.abs(self)

    def __lt__(self, other: Any) -> Tensor:
        return _fn.less(self, other)

    def __le__(self, other: Any) -> Tensor:
        return _fn.less_equal(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _fn.greater(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _fn.greater_equal(self, other)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _fn.equal(self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _fn.not_equal(self, other)

    def __getitem__(self, index: Any) -> Tensor:
        return _fn.getitem(self, index)

    # -- methods --------------------------------------------------------------------------
    @property
    def T(self) -> Tensor:  # noqa: N802 - numpy's name
        return _fn.transpose(self)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _fn.reshape(self, shape)

    def transpose(self, *axes: int) -> Tensor:
        return _fn.transpose(self, axes or None)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _fn.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _fn.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _fn.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _fn.min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: int = -1) -> Tensor:
        return _fn.argmax(self, axis=axis)

    def astype(self, dtype: Any) -> Tensor:
        return _fn.cast(self, dtype)

    def ravel(self) -> Tensor:
        """One axis, in C order (static sizes, or one symbolic axis)."""
        return _fn.reshape(self, (-1,))

    flatten = ravel  # a copy in numpy; graph values are never written in place anyway

    def squeeze(self, axis: Any = None) -> Tensor:
        return _fn.squeeze(self, axis)

    @property
    def size(self) -> int | str:
        """The number of elements: an int, or for a symbolic shape the product dim
        (``N*64``, a ``SymDim``), known at call time."""
        return multiply(*self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        first = self.shape[0]
        if isinstance(first, str):
            raise TypeError(f"len() of a tensor whose first axis is the symbolic {first!r}: its "
                            "size is known only at call time")
        return first


class Parameter(Tensor):
    """A trainable tensor whose value lives in the graph's parameter storage.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     w = gc.parameter(np.ones(3), name="w")
    >>> w.value
    array([1., 1., 1.])
    """

    __slots__ = ()

    @property
    def value(self) -> np.ndarray:
        """A copy of the parameter's current value."""
        return self.graph.parameter_values[self.node.id].copy()

    @property
    def trainable(self) -> bool:
        """Whether optimizers update it (``gc.parameter(..., trainable=False)`` says no)."""
        return self.node.id not in self.graph.non_trainable

    def assign(self, new_value: Any, *, check_finite: bool = False) -> None:
        """Overwrite the value in place (compiled functions see it); shape and dtype checked."""
        storage = self.graph.parameter_values[self.node.id]
        array = np.asarray(new_value)
        if array.shape != storage.shape:
            raise ShapeError(
                f"cannot assign shape {array.shape} to parameter {self.node.label()} "
                f"of shape {storage.shape}"
            )
        if array.dtype != storage.dtype and not np.can_cast(
            array.dtype, storage.dtype, "same_kind"
        ):
            raise DTypeError(
                f"cannot assign dtype {array.dtype} to parameter {self.node.label()} "
                f"of dtype {storage.dtype}"
            )
        if check_finite:
            _check_finite(array, self.node.label())
        np.copyto(storage, array, casting="same_kind")


def _check_finite(array: np.ndarray, label: str) -> None:
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteError(f"parameter {label} has {bad} non-finite value(s) (NaN or inf)")


from graphcomp.ops import functions as _fn  # noqa: E402  (functions import Tensor)
