"""graphcomp: compile static computation graphs, and their gradients, into fast native code.

>>> import numpy as np, graphcomp as gc
>>> with gc.Graph() as g:
...     x = gc.placeholder((None, 3), "float64", name="x")
...     w = gc.parameter(np.ones(3), name="w")
...     y = gc.sum(x * w)
>>> f = gc.compile([x], y, backend="numpy")
>>> float(f(np.ones((2, 3))))
6.0
"""

from typing import TYPE_CHECKING, Any

from graphcomp.autodiff import custom_vjp, grad, hvp
from graphcomp.errors import (
    CacheError,
    CacheWarning,
    CompileError,
    CompileWarning,
    DTypeError,
    FileFormatError,
    ForkedProcessError,
    GraphcompError,
    GraphError,
    InputError,
    NonFiniteError,
    RangeError,
    ShapeError,
)
from graphcomp.ir import Graph, current_graph, name_scope, reset_default_graph
from graphcomp.loops import scan
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops.activations import elu, gelu, leaky_relu, log_sigmoid, silu
from graphcomp.ops.composites import (
    append,
    array_split,
    atleast_1d,
    atleast_2d,
    atleast_3d,
    column_stack,
    cosh,
    deg2rad,
    diag,
    diagonal,
    diff,
    dsplit,
    exp2,
    flip,
    fliplr,
    flipud,
    hsplit,
    hstack,
    log2,
    log10,
    logaddexp,
    logaddexp2,
    moveaxis,
    nan_to_num,
    outer,
    rad2deg,
    ravel,
    reciprocal,
    repeat,
    roll,
    rollaxis,
    rot90,
    round,
    select,
    sinh,
    split,
    std,
    swapaxes,
    tan,
    tile,
    trace,
    tril,
    triu,
    var,
    vsplit,
    vstack,
)
from graphcomp.ops.contractions import cross, dot, einsum, inner, kron, tensordot
from graphcomp.ops.functions import (
    abs,
    add,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    argmax,
    broadcast_to,
    cast,
    ceil,
    clip,
    concatenate,
    constant,
    cos,
    divide,
    equal,
    erf,
    exp,
    expand_dims,
    expm1,
    floor,
    fmax,
    fmin,
    greater,
    greater_equal,
    hypot,
    isfinite,
    isinf,
    isnan,
    less,
    less_equal,
    log,
    log1p,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mod,
    multiply,
    negative,
    not_equal,
    one_hot,
    ones_like,
    pad,
    parameter,
    parameters,
    placeholder,
    power,
    relu,
    remainder,
    reshape,
    rint,
    scatter_add,
    sigmoid,
    sigmoid_binary_cross_entropy,
    sign,
    sin,
    sinc,
    softmax,
    softmax_cross_entropy,
    softplus,
    sqrt,
    square,
    squeeze,
    stack,
    stop_gradient,
    subtract,
    sum,
    take,
    tanh,
    transpose,
    trunc,
    where,
    zeros_like,
)
from graphcomp.ops.scans import argsort, cumprod, cumsum, partition, prod, sort
from graphcomp.runtime.function import Function, compile

if TYPE_CHECKING:
    from graphcomp import nn, random
    from graphcomp.inspect.adjoint import adjoint_graph
    from graphcomp.inspect.dot import to_dot
    from graphcomp.inspect.export import to_networkx
    from graphcomp.inspect.kernels import kernel_listing
    from graphcomp.inspect.listing import format
    from graphcomp.random import seed
    from graphcomp.testing import check_grads
    from graphcomp.train import data, init, load, optim, save
    from graphcomp.train.fit import History, fit

# Imported at their first use, not with the package: building and running a graph needs none
# of them, and importing them all cost ~0.1 s of every process's start (2026-12-07).
_LAZY = {
    "nn": ("graphcomp.nn", None), "random": ("graphcomp.random", None),
    "seed": ("graphcomp.random", "seed"),
    "adjoint_graph": ("graphcomp.inspect.adjoint", "adjoint_graph"),
    "to_dot": ("graphcomp.inspect.dot", "to_dot"),
    "to_networkx": ("graphcomp.inspect.export", "to_networkx"),
    "kernel_listing": ("graphcomp.inspect.kernels", "kernel_listing"),
    "format": ("graphcomp.inspect.listing", "format"),
    "check_grads": ("graphcomp.testing", "check_grads"),
    **{name: ("graphcomp.train", name)
       for name in ("History", "data", "fit", "init", "load", "optim", "save")},
}


def __getattr__(name: str) -> Any:
    """The lazily imported names of ``_LAZY``: imported at the first read, then kept."""
    if name not in _LAZY:
        raise AttributeError(f"module 'graphcomp' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "CacheError", "CacheWarning", "CompileError", "CompileWarning", "DTypeError",
    "FileFormatError", "ForkedProcessError", "Function", "Graph", "GraphError", "GraphcompError",
    "History", "InputError", "NonFiniteError", "Parameter", "RangeError", "ShapeError", "Tensor",
    "abs", "add", "adjoint_graph", "append", "arccos", "arccosh", "arcsin", "arcsinh", "arctan",
    "arctan2", "arctanh", "argmax", "argsort", "array_split", "atleast_1d", "atleast_2d",
    "atleast_3d", "broadcast_to", "cast", "ceil", "check_grads", "clip", "column_stack", "compile",
    "concatenate", "constant", "cos", "cosh", "cross", "cumprod", "cumsum", "current_graph",
    "custom_vjp", "data", "deg2rad", "diag", "diagonal", "diff", "divide", "dot", "dsplit",
    "einsum", "elu", "equal", "erf", "exp", "exp2", "expand_dims", "expm1", "fit", "flip",
    "fliplr", "flipud", "floor", "fmax", "fmin", "format", "gelu", "grad", "greater",
    "greater_equal", "hsplit", "hstack", "hvp", "hypot", "init", "inner", "isfinite", "isinf",
    "isnan", "kernel_listing", "kron", "leaky_relu", "less", "less_equal", "load", "log", "log1p",
    "log2", "log10", "log_sigmoid", "log_softmax", "logaddexp", "logaddexp2", "logsumexp",
    "matmul", "max", "maximum", "mean", "min", "minimum", "mod", "moveaxis", "multiply",
    "name_scope", "nan_to_num", "negative", "nn", "not_equal", "one_hot", "ones_like", "optim",
    "outer", "pad", "parameter", "parameters", "partition", "placeholder", "power", "prod",
    "rad2deg", "random", "ravel", "reciprocal", "relu", "remainder", "repeat",
    "reset_default_graph", "reshape", "rint", "roll", "rollaxis", "rot90", "round", "save", "scan",
    "scatter_add", "seed", "select", "sigmoid", "sigmoid_binary_cross_entropy", "sign", "silu",
    "sin", "sinc", "sinh", "softmax", "softmax_cross_entropy", "softplus", "sort", "split", "sqrt",
    "square", "squeeze", "stack", "std", "stop_gradient", "subtract", "sum", "swapaxes", "take",
    "tan", "tanh", "tensordot", "tile", "to_dot", "to_networkx", "trace", "transpose", "tril",
    "triu", "trunc", "var", "vsplit", "vstack", "where", "zeros_like",
]
