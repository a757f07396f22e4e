"""numpy's own functions on a Tensor: ``np.exp(t)``, ``np.sum(t, axis=0)`` build graph nodes.

A Tensor implements numpy's dispatch protocols (``__array_ufunc__`` for ufuncs such as
``np.exp`` and ``np.add``, ``__array_function__`` for functions such as ``np.sum``): where
graphcomp has the function, numpy's call becomes graphcomp's, with numpy's argument names;
where it has none, or an argument graphcomp cannot honour is given (``out=``, ``where=``,
``dtype=`` on a reduction), the call raises a ``TypeError`` that says so. A numpy function
never sees a Tensor as an array: it has no value until the graph is compiled and called.

>>> import numpy as np, graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 3), "float32", name="x")
...     y = np.sum(np.exp(x), axis=1)
>>> y.op, y.shape
('reduce_sum', ('N',))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphcomp.ops import composites as C
from graphcomp.ops import contractions as K
from graphcomp.ops import functions as F
from graphcomp.ops import scans as S

# numpy ufunc name -> graphcomp function taking the same positional operands
UFUNCS: dict[str, Callable[..., Any]] = {
    "add": F.add, "subtract": F.subtract, "multiply": F.multiply, "divide": F.divide,
    "power": F.power, "maximum": F.maximum, "minimum": F.minimum, "matmul": F.matmul,
    "less": F.less, "less_equal": F.less_equal, "greater": F.greater,
    "greater_equal": F.greater_equal, "equal": F.equal, "not_equal": F.not_equal,
    "negative": F.negative, "absolute": F.abs, "sign": F.sign, "exp": F.exp, "log": F.log,
    "log1p": F.log1p, "expm1": F.expm1, "sqrt": F.sqrt, "sin": F.sin, "cos": F.cos,
    "tanh": F.tanh, "square": F.square, "log2": C.log2, "log10": C.log10, "exp2": C.exp2,
    "reciprocal": C.reciprocal, "logaddexp": C.logaddexp, "logaddexp2": C.logaddexp2,
    "tan": C.tan, "sinh": C.sinh, "cosh": C.cosh, "deg2rad": C.deg2rad, "radians": C.deg2rad,
    "rad2deg": C.rad2deg, "degrees": C.rad2deg, "floor": F.floor, "ceil": F.ceil,
    "trunc": F.trunc, "rint": F.rint, "remainder": F.remainder, "fmax": F.fmax, "fmin": F.fmin,
    "arcsin": F.arcsin, "arccos": F.arccos, "arctan": F.arctan, "arctan2": F.arctan2,
    "arcsinh": F.arcsinh, "arccosh": F.arccosh, "arctanh": F.arctanh, "hypot": F.hypot,
    "isnan": F.isnan, "isinf": F.isinf, "isfinite": F.isfinite,
}

ALL = 1 << 30  # every positional argument (einsum's operands)

# numpy function name -> (graphcomp function, how many leading positional arguments mean the
# same in both): numpy's later positional arguments (np.sum's dtype, out) must be named.
FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "sum": (F.sum, 2), "mean": (F.mean, 2), "max": (F.max, 2), "amax": (F.max, 2),
    "min": (F.min, 2), "amin": (F.min, 2), "argmax": (F.argmax, 2), "var": (C.var, 2),
    "std": (C.std, 2), "reshape": (F.reshape, 2), "transpose": (F.transpose, 2),
    "concatenate": (F.concatenate, 2), "stack": (F.stack, 2), "where": (F.where, 3),
    "clip": (F.clip, 3), "squeeze": (F.squeeze, 2), "expand_dims": (F.expand_dims, 2),
    "broadcast_to": (F.broadcast_to, 2), "take": (F.take, 3), "zeros_like": (F.zeros_like, 2),
    "ones_like": (F.ones_like, 2), "pad": (F.pad, 3), "swapaxes": (C.swapaxes, 3),
    "moveaxis": (C.moveaxis, 3), "atleast_1d": (C.atleast_1d, 1),
    "atleast_2d": (C.atleast_2d, 1), "atleast_3d": (C.atleast_3d, 1),
    "hstack": (C.hstack, 1), "vstack": (C.vstack, 1), "outer": (C.outer, 2),
    "tril": (C.tril, 2), "triu": (C.triu, 2), "trace": (C.trace, 2), "diff": (C.diff, 3),
    "ravel": (C.ravel, 1), "flip": (C.flip, 2), "fliplr": (C.fliplr, 1),
    "flipud": (C.flipud, 1), "rot90": (C.rot90, 3), "roll": (C.roll, 3),
    "repeat": (C.repeat, 3), "tile": (C.tile, 2), "rollaxis": (C.rollaxis, 3),
    "diagonal": (C.diagonal, 4), "diag": (C.diag, 2), "column_stack": (C.column_stack, 1),
    "append": (C.append, 3), "array_split": (C.array_split, 3), "split": (C.split, 3),
    "hsplit": (C.hsplit, 2), "vsplit": (C.vsplit, 2), "dsplit": (C.dsplit, 2),
    "select": (C.select, 3), "einsum": (K.einsum, ALL), "tensordot": (K.tensordot, 3),
    "dot": (K.dot, 2), "inner": (K.inner, 2), "kron": (K.kron, 2), "cross": (K.cross, 2),
    "round": (C.round, 2), "around": (C.round, 2), "sinc": (F.sinc, 1),
    "nan_to_num": (C.nan_to_num, 5), "prod": (S.prod, 2), "cumsum": (S.cumsum, 2),
    "cumprod": (S.cumprod, 2), "sort": (S.sort, 2), "argsort": (S.argsort, 2),
    "partition": (S.partition, 3),
}

# Arguments numpy passes through that graphcomp accepts only at numpy's default.
_DEFAULT_ONLY = {"out": None, "dtype": None, "where": True, "initial": np._NoValue,
                 "mode": "constant", "order": "C", "subok": True, "casting": "same_kind"}


def _unsupported(what: str, reason: str) -> TypeError:
    return TypeError(f"{what} on a graphcomp Tensor: {reason}. A Tensor is a graph node with "
                     "no value until the graph is compiled; use graphcomp's functions "
                     "(gc.sum, gc.exp, ...) or numpy on the compiled function's results")


def _check_defaults(what: str, kwargs: dict[str, Any], accepted: Sequence[str]) -> dict:
    """``kwargs`` less the ones left at numpy's default; a TypeError for any other."""
    kept = {}
    for key, value in kwargs.items():
        if key in accepted:
            kept[key] = value
        elif key in _DEFAULT_ONLY and _is_default(value, _DEFAULT_ONLY[key]):
            continue
        else:
            raise _unsupported(what, f"graphcomp does not support the argument {key}={value!r}")
    return kept


def _is_default(value: Any, default: Any) -> bool:
    if default is None or default is np._NoValue:
        return value is default
    return isinstance(value, type(default)) and value == default


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``Tensor.__array_ufunc__``: numpy's ufunc call as graphcomp's function."""
    what = f"numpy.{ufunc.__name__}"
    if method != "__call__":
        raise _unsupported(f"{what}.{method}", "only a plain call of a ufunc is supported")
    function = UFUNCS.get(ufunc.__name__)
    if function is None:
        raise _unsupported(what, f"graphcomp has no {ufunc.__name__}")
    _check_defaults(what, kwargs, accepted=())
    return function(*inputs)


def array_function(func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``Tensor.__array_function__``: numpy's function as graphcomp's, numpy's names kept."""
    name = func.__name__
    what = f"numpy.{name}"
    entry = FUNCTIONS.get(name)
    if entry is None:
        alternative = getattr(F, name, None) or getattr(C, name, None)
        hint = (f"call gc.{name} instead" if callable(alternative)
                else f"graphcomp has no {name}")
        raise _unsupported(what, hint)
    function, positional = entry
    if len(args) > positional:
        raise _unsupported(what, f"pass the arguments after the first {positional} by name")
    parameters = _parameters(function)
    kept = _check_defaults(what, kwargs, accepted=parameters[len(args):])
    return function(*args, **kept)
