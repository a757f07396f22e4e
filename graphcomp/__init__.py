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
    CacheError,
    CacheWarning,
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
    outer,
    rad2deg,
    ravel,
    reciprocal,
    repeat,
    roll,
    rollaxis,
    rot90,
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
from graphcomp.ops.functions import (
    abs,
    add,
    argmax,
    broadcast_to,
    cast,
    clip,
    concatenate,
    constant,
    cos,
    divide,
    equal,
    exp,
    expand_dims,
    expm1,
    greater,
    greater_equal,
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
    reshape,
    sigmoid,
    sigmoid_binary_cross_entropy,
    sign,
    sin,
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
    where,
    zeros_like,
)
from graphcomp.ops.scans import argsort, cumprod, cumsum, partition, prod, sort
from graphcomp.runtime.function import Function, compile
from graphcomp.testing import check_grads
from graphcomp.train import History, data, fit, init, load, optim, save

__version__ = "0.1.0"

__all__ = [
    "CacheError", "CacheWarning", "CompileError", "DTypeError", "FileFormatError", "Function",
    "Graph", "GraphError", "GraphcompError", "History", "InputError", "NonFiniteError",
    "Parameter", "ShapeError", "Tensor", "abs", "add", "adjoint_graph", "append", "argmax",
    "argsort", "array_split", "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_to", "cast",
    "check_grads", "clip", "column_stack", "compile", "concatenate", "constant", "cos", "cosh",
    "cumprod", "cumsum", "current_graph", "custom_vjp", "data", "deg2rad", "diag", "diagonal",
    "diff", "divide", "dsplit", "equal", "exp", "exp2", "expand_dims", "expm1", "fit", "flip",
    "fliplr", "flipud", "format", "grad", "greater", "greater_equal", "hsplit", "hstack", "hvp",
    "init", "kernel_listing", "less", "less_equal", "load", "log", "log1p", "log2", "log10",
    "log_softmax", "logaddexp", "logaddexp2", "logsumexp", "matmul", "max", "maximum", "mean",
    "min", "minimum", "moveaxis", "multiply", "negative", "not_equal", "one_hot", "ones_like",
    "optim", "outer", "pad", "parameter", "partition", "placeholder", "power", "prod", "rad2deg",
    "ravel", "reciprocal", "relu", "repeat", "reset_default_graph", "reshape", "roll", "rollaxis",
    "rot90", "save", "select", "sigmoid", "sigmoid_binary_cross_entropy", "sign", "sin", "sinh",
    "softmax", "softmax_cross_entropy", "softplus", "sort", "split", "sqrt", "square", "squeeze",
    "stack", "std", "stop_gradient", "subtract", "sum", "swapaxes", "take", "tan", "tanh", "tile",
    "to_dot", "to_networkx", "trace", "transpose", "tril", "triu", "var", "vsplit", "vstack",
    "where", "zeros_like",
]
