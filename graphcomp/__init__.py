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

from graphcomp.autodiff import custom_vjp, grad, hvp
from graphcomp.errors import (
    CompileError,
    DTypeError,
    FileFormatError,
    GraphcompError,
    GraphError,
    InputError,
    NonFiniteError,
    ShapeError,
)
from graphcomp.inspect.adjoint import adjoint_graph
from graphcomp.inspect.dot import to_dot
from graphcomp.inspect.export import to_networkx
from graphcomp.inspect.kernels import kernel_listing
from graphcomp.inspect.listing import format
from graphcomp.ir import Graph, current_graph, reset_default_graph
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops.composites import (
    atleast_1d,
    atleast_2d,
    atleast_3d,
    cosh,
    deg2rad,
    diff,
    exp2,
    hstack,
    log2,
    log10,
    logaddexp,
    logaddexp2,
    moveaxis,
    nan_to_num,
    outer,
    rad2deg,
    reciprocal,
    round,
    sinh,
    std,
    swapaxes,
    tan,
    trace,
    tril,
    triu,
    var,
    vstack,
)
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
    placeholder,
    power,
    relu,
    remainder,
    reshape,
    rint,
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
from graphcomp.runtime.function import Function, compile
from graphcomp.testing import check_grads
from graphcomp.train import History, data, fit, init, load, optim, save

__version__ = "0.1.0"

__all__ = [
    "CompileError", "DTypeError", "FileFormatError", "Function", "Graph", "GraphError",
    "GraphcompError", "History", "InputError", "NonFiniteError", "Parameter", "ShapeError",
    "Tensor", "abs", "add", "adjoint_graph", "arccos", "arccosh", "arcsin", "arcsinh", "arctan",
    "arctan2", "arctanh", "argmax", "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_to",
    "cast", "ceil", "check_grads", "clip", "compile", "concatenate", "constant", "cos", "cosh",
    "current_graph", "custom_vjp", "data", "deg2rad", "diff", "divide", "equal", "exp", "exp2",
    "expand_dims", "expm1", "fit", "floor", "fmax", "fmin", "format", "grad", "greater",
    "greater_equal", "hstack", "hvp", "hypot", "init", "isfinite", "isinf", "isnan",
    "kernel_listing", "less", "less_equal", "load", "log", "log1p", "log2", "log10", "log_softmax",
    "logaddexp", "logaddexp2", "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum",
    "mod", "moveaxis", "multiply", "nan_to_num", "negative", "not_equal", "one_hot", "ones_like",
    "optim", "outer", "pad", "parameter", "placeholder", "power", "rad2deg", "reciprocal", "relu",
    "remainder", "reset_default_graph", "reshape", "rint", "round", "save", "sigmoid",
    "sigmoid_binary_cross_entropy", "sign", "sin", "sinc", "sinh", "softmax",
    "softmax_cross_entropy", "softplus", "sqrt", "square", "squeeze", "stack", "std",
    "stop_gradient", "subtract", "sum", "swapaxes", "take", "tan", "tanh", "to_dot", "to_networkx",
    "trace", "transpose", "tril", "triu", "trunc", "var", "vstack", "where", "zeros_like",
]
