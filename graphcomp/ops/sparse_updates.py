"""Row-wise optimizer updates of a table whose gradient is a scatter-add of gathered rows.

``gc.grad`` of ``take(table, ids, axis=0)`` is ``scatter_add(zeros, ids, rows)``: a dense
gradient of the table's size, zero outside the rows ``ids`` touches. The optimizers
(``train/optim.py``) replace the dense update of such a table by one of these primitives,
which compute the new table from the *touched rows only*; the numba backend writes them into
the table's storage in place, so a step's cost does not grow with the table.

Every primitive first sums the rows of repeated ids, in the order they come, exactly as
``scatter_add`` (``np.add.at``) does: ``g_r = ((0 + rows_a) + rows_b) + ...`` for the
positions ``a, b, ...`` holding id ``r``. Then, for each touched ``r`` only:

- ``sparse_sgd(p, ids, rows, lr)``: ``p[r] - lr * g_r``, the dense SGD step exactly;
- ``sparse_moment(s, ids, rows, beta=, power=)``: ``beta * s[r] + (1 - beta) * g_r`` (``power``
  1) or ``... * (g_r * g_r)`` (``power`` 2): a lazy Adam moment;
- ``sparse_adam_step(p, m, v, ids, lr, c1, c2, eps=)``:
  ``p[r] - lr * ((m[r] / c1) / (sqrt(v[r] / c2) + eps))``, with ``c1 = 1 - beta1**t``,
  ``c2 = 1 - beta2**t``: the lazy Adam step from the moments already updated.

Ids follow ``take``'s rule (negative ids count from the end; out of range is an
``InputError``). The ops have no gradient: they are updates, not model functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from graphcomp.errors import DTypeError, InputError, ShapeError
from graphcomp.ir import DimTable, Node, shape_str
from graphcomp.ops.indexing import index_problem
from graphcomp.ops.registry import OpDef, Sample, register

SPARSE_UPDATE_OPS = ("sparse_sgd", "sparse_moment", "sparse_adam_step")


def _check_table(table: Node, dims: DimTable) -> None:
    if table.dtype.kind != "f":
        raise DTypeError(f"the table must be a float array, got {table.dtype}")
    if table.ndim < 1 or isinstance(dims.resolve(table.shape[0]), str):
        raise ShapeError("the table's first axis (its rows) must have a static size")


def _check_ids_rows(table: Node, ids: Node, rows: Node | None, dims: DimTable) -> None:
    if ids.dtype.kind != "i":
        raise DTypeError(f"ids must be int32 or int64, got {ids.dtype}")
    if rows is None:
        return
    expected = ids.shape + table.shape[1:]
    if rows.ndim != len(expected):
        raise ShapeError(f"rows must have shape {shape_str(expected)} (ids' shape, then a row)")
    for a, b in zip(expected, rows.shape, strict=True):
        dims.unify(a, b)
    if rows.dtype != table.dtype:
        raise DTypeError(f"rows dtype {rows.dtype} differs from the table's {table.dtype}")


def _check_scalars(table: Node, scalars: Sequence[Node]) -> None:
    for scalar in scalars:
        if scalar.ndim != 0 or scalar.dtype != table.dtype:
            raise ShapeError(f"learning rate and corrections must be {table.dtype} scalars, got "
                             f"{scalar.dtype}{shape_str(scalar.shape)}")


def _sgd_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    table, ids, rows, lr = nodes
    _check_table(table, dims)
    _check_ids_rows(table, ids, rows, dims)
    _check_scalars(table, [lr])
    return table.shape, table.dtype


def _moment_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    state, ids, rows = nodes
    _check_table(state, dims)
    _check_ids_rows(state, ids, rows, dims)
    if attrs["power"] not in (1, 2):
        raise ShapeError(f"power must be 1 or 2, got {attrs['power']!r}")
    return state.shape, state.dtype


def _adam_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    table, m, v, ids, lr, c1, c2 = nodes
    _check_table(table, dims)
    for moment in (m, v):
        if moment.dtype != table.dtype or len(moment.shape) != len(table.shape):
            raise ShapeError(f"the moments must be shaped like the table "
                             f"{table.dtype}{shape_str(table.shape)}")
        for a, b in zip(table.shape, moment.shape, strict=True):
            dims.unify(a, b)
    _check_ids_rows(table, ids, None, dims)
    _check_scalars(table, [lr, c1, c2])
    return table.shape, table.dtype


def touched_rows(ids: np.ndarray, rows: np.ndarray | None, size: int, op: str
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The distinct rows ``ids`` touches (ascending) and, with ``rows``, their summed rows.

    Repeated ids add up in the order they come, as ``np.add.at`` does.

    >>> touched, sums = touched_rows(np.array([2, 0, 2]), np.array([[1.0], [2.0], [3.0]]), 4, "op")
    >>> touched.tolist(), sums.tolist()
    ([0, 2], [[2.0], [4.0]])
    """
    problem = index_problem(ids, size, "take")
    if problem is not None:
        raise InputError(problem.replace("take:", f"{op}:"))
    keys = np.where(ids < 0, ids + size, ids).reshape(-1).astype(np.int64)
    unique, position = np.unique(keys, return_inverse=True)
    if rows is None:
        return unique, None
    flat = rows.reshape((keys.size,) + rows.shape[ids.ndim:])
    sums = np.zeros((unique.size,) + flat.shape[1:], dtype=rows.dtype)
    np.add.at(sums, position, flat)
    return unique, sums


def _sgd_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple,
              in_place: bool = False) -> np.ndarray:
    table, ids, rows, lr = xs
    out = table if in_place else np.array(table, copy=True)
    touched, sums = touched_rows(ids, rows, table.shape[0], "sparse_sgd")
    out[touched] = table[touched] - lr * sums
    return out


def _moment_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple,
                 in_place: bool = False) -> np.ndarray:
    state, ids, rows = xs
    out = state if in_place else np.array(state, copy=True)
    touched, sums = touched_rows(ids, rows, state.shape[0], "sparse_moment")
    assert sums is not None
    beta = state.dtype.type(attrs["beta"])
    rest = state.dtype.type(1.0 - attrs["beta"])
    term = sums if attrs["power"] == 1 else sums * sums
    out[touched] = beta * state[touched] + rest * term
    return out


def _adam_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple,
               in_place: bool = False) -> np.ndarray:
    table, m, v, ids, lr, c1, c2 = xs
    out = table if in_place else np.array(table, copy=True)
    touched, _ = touched_rows(ids, None, table.shape[0], "sparse_adam_step")
    eps = table.dtype.type(attrs["eps"])
    direction = (m[touched] / c1) / (np.sqrt(v[touched] / c2) + eps)
    out[touched] = table[touched] - lr * direction
    return out


# The same implementations writing into their first operand (the table or state), which the
# caller gives up: the same arithmetic on the same rows, so the same values. The numpy backend
# uses them for a parameter's own update when nothing reads the old value afterwards.
IN_PLACE_IMPLS: dict[str, Callable[..., np.ndarray]] = {
    "sparse_sgd": functools.partial(_sgd_impl, in_place=True),
    "sparse_moment": functools.partial(_moment_impl, in_place=True),
    "sparse_adam_step": functools.partial(_adam_impl, in_place=True),
}


def _ids() -> np.ndarray:
    return np.array([3, 0, 3, -1, 1, 3], dtype="int64")  # repeats, and -1 is row 4


def _sgd_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    table = rng.standard_normal((5, 3)).astype(dtype)
    rows = rng.standard_normal((6, 3)).astype(dtype)
    lr = np.array(0.1, dtype=dtype)
    return [
        Sample((table, _ids(), rows, lr), {}, symbolic=({}, {0: "N"}, {0: "N"}, {}), smooth=False),
        Sample((table.reshape(5, 3, 1), _ids().reshape(2, 3).astype("int32"),
                rows.reshape(2, 3, 3, 1), lr), {}, smooth=False),
    ]


def _moment_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    state = rng.random((5, 3)).astype(dtype)
    rows = rng.standard_normal((6, 3)).astype(dtype)
    return [
        Sample((state, _ids(), rows), {"beta": 0.9, "power": 1},
               symbolic=({}, {0: "N"}, {0: "N"}), smooth=False),
        Sample((state, _ids(), rows), {"beta": 0.999, "power": 2}, smooth=False),
    ]


def _adam_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    table = rng.standard_normal((5, 3)).astype(dtype)
    m = rng.standard_normal((5, 3)).astype(dtype)
    v = rng.random((5, 3)).astype(dtype)
    scalars = [np.array(x, dtype=dtype) for x in (0.01, 0.19, 0.002)]
    return [Sample((table, m, v, _ids(), *scalars), {"eps": 1e-8},
                   symbolic=({}, {}, {}, {0: "N"}, {}, {}, {}), smooth=False)]


register(OpDef(
    name="sparse_sgd", kind="index", infer=_sgd_rule, numpy_impl=_sgd_impl,
    differentiable=False, samples=_sgd_samples,
    doc="table with rows ids set to p - lr * (rows summed per id); other rows unchanged",
))
register(OpDef(
    name="sparse_moment", kind="index", infer=_moment_rule, numpy_impl=_moment_impl,
    differentiable=False, samples=_moment_samples,
    doc="lazy Adam moment: rows ids set to beta * s + (1 - beta) * g**power, g summed per id",
))
register(OpDef(
    name="sparse_adam_step", kind="index", infer=_adam_rule, numpy_impl=_adam_impl,
    differentiable=False, samples=_adam_samples,
    doc="lazy Adam step: rows ids set to p - lr * (m / c1) / (sqrt(v / c2) + eps)",
))
