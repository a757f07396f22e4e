"""The finite-difference gradient check (like ``numpy.testing``, it runs graphs).

``check_grads`` lives here, above the runtime, so that ``graphcomp.autodiff`` stays a pure
graph-to-graph transformation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.autodiff import grad
from graphcomp.autodiff.custom import CustomCall, custom_rule_of, mark_custom_call
from graphcomp.errors import GraphError
from graphcomp.ir import DimTable, Graph, Node, SymDim
from graphcomp.loops import LOOP_OPS, SCAN_OUTPUT, ScanBody, make_scan_node, scan_output
from graphcomp.ops import Tensor, apply, as_tensor
from graphcomp.ops import functions as F
from graphcomp.runtime.function import compile as compile_function

F64 = np.dtype("float64")


@dataclass(frozen=True)
class GradCheckEntry:
    """The comparison for one ``wrt`` tensor: analytic gradient vs central differences."""

    label: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float  # |analytic - numeric| / max(|numeric|, atol), worst element
    worst_index: tuple[int, ...]
    analytic: float  # both values at the worst element
    numeric: float
    passed: bool

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        return (
            f"{mark} {self.label:<24} shape {self.shape!s:<12} max abs err {self.max_abs_error:.3e}"
            f"  max rel err {self.max_rel_error:.3e}  worst at {self.worst_index}: analytic "
            f"{self.analytic:.12g} vs numeric {self.numeric:.12g}"
        )


@dataclass(frozen=True)
class GradCheckReport:
    """What ``check_grads`` measured, one entry per ``wrt``; ``passed`` when all entries pass."""

    entries: tuple[GradCheckEntry, ...]
    order: int
    eps: float
    rtol: float
    atol: float

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.entries)

    @property
    def max_abs_error(self) -> float:
        return max((e.max_abs_error for e in self.entries), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((e.max_rel_error for e in self.entries), default=0.0)

    def __str__(self) -> str:
        head = (
            f"gradient check (order {self.order}, central differences in float64, eps={self.eps:g},"
            f" pass if |analytic - numeric| <= {self.atol:g} + {self.rtol:g} * |numeric|)"
        )
        return "\n".join([head] + [e.line() for e in self.entries])

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with the whole report unless every entry passed."""
        if not self.passed:
            raise AssertionError(f"gradients disagree with finite differences\n{self}")


def check_grads(
    output: Tensor,
    wrt: Tensor | Sequence[Tensor],
    feed: Mapping[Tensor, Any] | None = None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-7,
    order: int = 1,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradCheckReport:
    """Compare ``gc.grad`` with central finite differences, in float64, on the numpy backend.

    The graph of ``output`` is replayed in float64 (float32 nodes become float64), with every
    ``wrt`` (placeholders or parameters) turned into an input that can be perturbed. A
    non-scalar output is reduced to the scalar ``sum(output * u)`` with a fixed random ``u``.
    ``order=k`` checks the k-th derivative: the (k-1)-th gradient, projected on random
    directions, is differentiated once more and compared with differences of itself. Each
    element of each ``wrt`` is perturbed by ±``eps``; it passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|`` everywhere.

    ``feed`` maps the placeholders the output needs to values (parameters use their stored
    values). Returns a ``GradCheckReport``; raises ``AssertionError`` with the report when a
    check fails, unless ``raise_on_failure=False``.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     x = gc.placeholder((None, 3), "float64", name="x")
    ...     w = gc.parameter(np.array([0.5, -1.0, 2.0]), name="w")
    ...     loss = gc.sum(gc.tanh(x * w))
    >>> gc.check_grads(loss, [w, x], feed={x: np.ones((2, 3))}).passed
    True
    """
    if order < 1:
        raise ValueError(f"check_grads: order must be >= 1, got {order}")
    targets = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    _check_targets(output, targets)
    rng = np.random.default_rng(seed)
    replay = Float64Replay(output.graph, wrt=[t.node for t in targets])
    with replay.graph:
        level = replay(output.node)
        xs = [replay(t.node) for t in targets]  # a disconnected wrt is replayed too
        values = replay.input_values(feed or {})
        concrete = _output_shape(replay, level, values)
        u = _random_input(replay, "projection", level, concrete, rng, values)
        level = F.sum(level * u)
        for k in range(1, order):
            grads = grad(level, xs)
            terms = [
                F.sum(g * _random_input(replay, f"direction{k}_{i}", x, values[x.node.id].shape,
                                        rng, values))
                for i, (g, x) in enumerate(zip(grads, xs, strict=True))
            ]
            level = terms[0]
            for term in terms[1:]:
                level = level + term
        analytic_tensors = grad(level, xs)
    inputs = replay.placeholders()
    feed_args = [values[p.node.id] for p in inputs]
    analytic = compile_function(inputs, analytic_tensors, backend="numpy")(*feed_args)
    evaluate = compile_function(inputs, level, backend="numpy")
    position = {p.node.id: i for i, p in enumerate(inputs)}

    entries = []
    for target, x, exact in zip(targets, xs, analytic, strict=True):
        numeric = _central_differences(evaluate, feed_args, position[x.node.id], eps)
        entries.append(_compare(target.node.label(), exact, numeric, rtol, atol))
    report = GradCheckReport(tuple(entries), order, eps, rtol, atol)
    if raise_on_failure:
        report.assert_passed()
    return report


def _central_differences(
    evaluate: Any, args: list[np.ndarray], which: int, eps: float
) -> np.ndarray:
    args = list(args)
    base = np.array(args[which], dtype=F64, copy=True)
    numeric = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += eps
        minus[index] -= eps
        args[which] = plus
        f_plus = float(evaluate(*args))
        args[which] = minus
        f_minus = float(evaluate(*args))
        numeric[index] = (f_plus - f_minus) / (2 * eps)
    return numeric


def _compare(label: str, exact: np.ndarray, numeric: np.ndarray, rtol: float,
             atol: float) -> GradCheckEntry:
    exact = np.asarray(exact, dtype=F64)
    error = np.abs(exact - numeric)
    if error.size == 0:
        return GradCheckEntry(label, exact.shape, 0.0, 0.0, (), 0.0, 0.0, True)
    relative = error / np.maximum(np.abs(numeric), atol)
    allowed = atol + rtol * np.abs(numeric)
    failed = ~(error <= allowed)  # NaN fails too
    worst = np.unravel_index(
        int(np.argmax(np.where(np.isnan(error), np.inf, error - allowed))), error.shape
    )
    return GradCheckEntry(
        label=label,
        shape=exact.shape,
        max_abs_error=float(np.nanmax(error)) if not np.all(np.isnan(error)) else float("nan"),
        max_rel_error=float(np.nanmax(relative)) if not np.all(np.isnan(error)) else float("nan"),
        worst_index=tuple(int(i) for i in worst),
        analytic=float(exact[worst]),
        numeric=float(numeric[worst]),
        passed=not bool(failed.any()),
    )


def _check_targets(output: Tensor, targets: list[Tensor]) -> None:
    if not dtypes.is_float(output.dtype):
        raise GraphError(f"check_grads: output {output.node.describe()} is not a float tensor")
    for t in targets:
        if t.graph is not output.graph:
            raise GraphError(f"check_grads: {t.node.describe()} is in another graph")
        if t.node.op not in ("placeholder", "parameter") or not dtypes.is_float(t.dtype):
            raise GraphError(
                f"check_grads: wrt must be float placeholders or parameters; "
                f"{t.node.describe()} is a {dtypes.short_name(t.dtype)} {t.node.op}"
            )


def _output_shape(replay: Float64Replay, out: Tensor, values: dict[int, np.ndarray]) -> tuple:
    inputs = replay.placeholders()
    run = compile_function(inputs, out, backend="numpy")
    return np.shape(run(*[values[p.node.id] for p in inputs]))


def _random_input(replay: Float64Replay, name: str, like: Tensor, shape: tuple,
                  rng: np.random.Generator, values: dict[int, np.ndarray]) -> Tensor:
    placeholder = replay.new_placeholder(name, like.shape)
    values[placeholder.node.id] = rng.standard_normal(shape)
    return placeholder


class Float64Replay:
    """A float64 copy of part of a graph, with chosen source nodes turned into placeholders.

    ``replay(node)`` rebuilds ``node`` and what it depends on in ``replay.graph``; float32
    nodes, constants and dtype attributes become float64. Parameters in ``wrt`` become
    placeholders (others become constants of their current value); custom_vjp calls keep
    their rules.
    """

    def __init__(self, source: Graph, wrt: Sequence[Node] = ()) -> None:
        self.source = source
        self.graph = Graph(name=f"{source.name}-float64")
        self._wrt = {n.id for n in wrt}
        self._copies: dict[int, Tensor] = {}
        self._placeholders: list[Tensor] = []
        self._origins: dict[int, Node] = {}  # new placeholder id -> source node

    def __call__(self, node: Node) -> Tensor:
        for n in self.source.schedule([node]):
            if n.id not in self._copies:
                self._copies[n.id] = self._copy(n)
        return self._copies[node.id]

    def tensor(self, node: Node) -> Tensor:
        """The copy of ``node`` (already replayed)."""
        return self._copies[node.id]

    def placeholders(self) -> list[Tensor]:
        """The copy's inputs: replayed placeholders, wrt parameters and added ones."""
        return list(self._placeholders)

    def new_placeholder(self, name: str, shape: Sequence[Any], dtype: Any = F64) -> Tensor:
        with self.graph:
            placeholder = F.placeholder(tuple(shape), dtype, name=name)
        self._placeholders.append(placeholder)
        return placeholder

    def input_values(self, feed: Mapping[Tensor, Any]) -> dict[int, np.ndarray]:
        """Values of the copy's placeholders (by new id) from ``feed`` and parameter storage."""
        given = {t.node.id: v for t, v in feed.items()}
        values = {}
        for p in self._placeholders:
            origin = self._origins[p.node.id]
            if origin.op == "parameter":
                value = self.source.parameter_values[origin.id]
            elif origin.id in given:
                value = given[origin.id]
            else:
                raise GraphError(
                    f"check_grads: feed has no value for {origin.describe()}, which the "
                    "output needs"
                )
            values[p.node.id] = np.asarray(value, dtype=p.dtype)
        return values

    def _copy(self, node: Node) -> Tensor:
        dtype = F64 if dtypes.is_float(node.dtype) else node.dtype
        shape = self.source.dims.resolve_shape(node.shape)
        if node.op == "placeholder" or (node.op == "parameter" and node.id in self._wrt):
            placeholder = self.new_placeholder(node.name or f"input{node.id}", shape, dtype)
            self._origins[placeholder.node.id] = node
            return placeholder
        if node.op == "parameter":
            return as_tensor(self.source.parameter_values[node.id].astype(dtype), graph=self.graph)
        if node.op == "constant":
            return as_tensor(np.asarray(node.attrs["value"]).astype(dtype), graph=self.graph)
        if node.op in LOOP_OPS:
            return self._copy_loop(node)
        dims = self.source.dims
        symbols, _ = dims.constraints()
        attrs = {k: _promote_attr(v, dims, symbols) for k, v in node.attrs.items()}
        with self.graph:
            copy = apply(node.op, *[self._copies[i.id] for i in node.inputs], **attrs)
        call = custom_rule_of(node)
        if call is not None:
            mark_custom_call(CustomCall(
                call.name, tuple(self(t.node) for t in call.inputs), copy, call.rule
            ))
        return copy

    def _copy_loop(self, node: Node) -> Tensor:
        """A scan keeps its body, which must be float64 already (it was traced once)."""
        inputs = [self._copies[i.id].node for i in node.inputs]
        if node.op == SCAN_OUTPUT:
            return scan_output(inputs[0], node.attrs["index"])
        body: ScanBody = node.attrs["body"]
        if any(a.dtype != b.dtype for a, b in zip(inputs, body.inputs, strict=True)):
            raise GraphError(f"check_grads: {node.describe()} has a float32 body; a traced body "
                             "cannot be replayed in float64, so build the scan in float64")
        trip = self.source.dims.resolve(node.shape[0])
        return Tensor(make_scan_node(self.graph, body, inputs, trip, node.attrs["reverse"],
                                     node.source))


def _promote_attr(value: Any, dims: DimTable, symbols: Mapping[str, str]) -> Any:
    """float32 dtypes become float64; symbols in shape-like attrs get their unified form."""
    if isinstance(value, np.dtype) and dtypes.is_float(value):
        return F64
    if isinstance(value, str) and value in ("float32", "f4"):
        return F64
    if isinstance(value, tuple):
        return tuple(dims.resolve(v) if _is_dim(v, symbols) else v for v in value)
    return value


def _is_dim(value: Any, symbols: Mapping[str, str]) -> bool:
    return isinstance(value, SymDim) or (isinstance(value, str) and value in symbols)
