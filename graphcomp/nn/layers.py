"""Layers: functions that make named parameters in a scope of their own and return tensors.

``dense``, ``embedding``, ``layer_norm``, ``batch_norm`` and ``dropout`` (docs/layers.md). A
training flag is a Python bool or a boolean scalar placeholder, so one graph serves training and
evaluation; batch norm keeps running statistics as non-trainable parameters that every compiled
function computing the layer updates by itself (``Graph.add_implicit_update``).

>>> import graphcomp as gc, numpy as np
>>> with gc.Graph() as g:
...     x = gc.placeholder((None, 4), "float64", name="x")
...     training = gc.placeholder((), "bool", name="training")
...     with gc.name_scope("mlp"):
...         h = gc.nn.dense(x, 8, activation="relu")
...         y = gc.nn.batch_norm(h, training)
>>> [p.name for p in gc.parameters(g)]
['mlp/dense/w', 'mlp/dense/b', 'mlp/batch_norm/gamma', 'mlp/batch_norm/beta', \
'mlp/batch_norm/running_mean', 'mlp/batch_norm/running_var']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, RangeError, ShapeError
from graphcomp.ir import user_source_line
from graphcomp.nn.scope import Initializer, layer_scope, make_parameter
from graphcomp.ops import Tensor, activations, as_tensor
from graphcomp.ops import functions as F
from graphcomp.random.distributions import bernoulli

Activation = str | Callable[[Tensor], Tensor] | None

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "elu": activations.elu,
    "gelu": activations.gelu,
    "leaky_relu": activations.leaky_relu,
    "log_sigmoid": activations.log_sigmoid,
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "silu": activations.silu,
    "softplus": F.softplus,
    "tanh": F.tanh,
}


def _static_size(x: Tensor, axis: int, layer: str) -> int:
    size = x.shape[axis]
    if not isinstance(size, int):
        raise ShapeError(f"{layer}: axis {axis} of {x.node.label()} (shape {x.shape}) must have "
                         f"a static size to size the layer's parameters, got {size!r} "
                         f"(at {user_source_line()})")
    return size


def _activate(y: Tensor, activation: Activation) -> Tensor:
    if activation is None:
        return y
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (at {user_source_line()}); "
                             f"one of {', '.join(ACTIVATIONS)}, a function or None")
        return ACTIVATIONS[activation](y)
    return activation(y)


def dense(x: Any, units: int, activation: Activation = None, use_bias: bool = True,
          name: str | None = None, init: Initializer = "glorot_uniform",
          seed: int | None = None) -> Tensor:
    """``activation(x @ w + b)`` with ``w`` of shape ``(x.shape[-1], units)`` (``init``, default
    Glorot uniform; ``"he_normal"`` suits ReLU) and ``b`` zeros. ``gc.nn.dense(x, 64, "relu")``
    """
    x = F._to_float(x)
    if x.ndim == 0:
        raise ShapeError(f"dense: input {x.node.label()} is a scalar; it needs a feature axis "
                         f"(at {user_source_line()})")
    features = _static_size(x, -1, "dense")
    with layer_scope("dense", name):
        w = make_parameter("w", (features, units), x.dtype, init, seed)
        y = F.matmul(x, w)
        if use_bias:
            y = y + make_parameter("b", (units,), x.dtype, "zeros")
    return _activate(y, activation)


def embedding(ids: Any, vocab: int, dim: int, name: str | None = None,
              init: Initializer = "normal", dtype: Any = "float32",
              seed: int | None = None) -> Tensor:
    """Rows of a ``(vocab, dim)`` table (standard normal by default) picked by integer ``ids``;
    the result has shape ``ids.shape + (dim,)``. ``gc.nn.embedding(tokens, 1000, 32)``"""
    ids = as_tensor(ids)
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"embedding: ids must be integers, got {ids.dtype} "
                         f"(at {user_source_line()})")
    with layer_scope("embedding", name):
        table = make_parameter("table", (vocab, dim), dtypes.as_dtype(dtype), init, seed)
    return F.take(table, ids, axis=0)


def layer_norm(x: Any, axis: int | Sequence[int] = -1, eps: float = 1e-5, scale: bool = True,
               center: bool = True, name: str | None = None) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` with the statistics over ``axis`` of
    each example; ``gamma`` (ones) and ``beta`` (zeros) have the shape of those axes.
    ``gc.nn.layer_norm(h)``"""
    x = F._to_float(x)
    axes = F._normalize_axes(axis, x.ndim)
    deviation = x - F.mean(x, axis=axes, keepdims=True)
    variance = F.mean(deviation * deviation, axis=axes, keepdims=True)
    y = deviation / F.sqrt(variance + eps)
    # The parameters hold the normalised axes' sizes, broadcast from the first of them on.
    shape = [_static_size(x, a, "layer_norm") for a in axes]
    view = [x.shape[i] if i in axes else 1 for i in range(min(axes), x.ndim)]
    with layer_scope("layer_norm", name):
        if scale:
            y = y * F.reshape(make_parameter("gamma", shape, x.dtype, "ones"), view)
        if center:
            y = y + F.reshape(make_parameter("beta", shape, x.dtype, "zeros"), view)
    return y


def training_flag(training: Any, layer: str) -> bool | Tensor:
    """``training`` checked: a Python bool, or a boolean scalar tensor (a placeholder)."""
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    if not isinstance(training, Tensor):
        raise DTypeError(f"{layer}: training must be a Python bool or a boolean scalar "
                         f"placeholder, got {type(training).__name__} {training!r} "
                         f"(at {user_source_line()})")
    if training.dtype != np.dtype("bool"):
        raise DTypeError(f"{layer}: training must be boolean, got {training.node.label()} of "
                         f"dtype {training.dtype}; declare it gc.placeholder((), 'bool') "
                         f"(at {user_source_line()})")
    if training.ndim != 0:
        raise ShapeError(f"{layer}: training must be a scalar, got {training.node.label()} of "
                         f"shape {training.shape} (at {user_source_line()})")
    return training


def batch_norm(x: Any, training: bool | Tensor, axis: int = -1, momentum: float = 0.1,
               eps: float = 1e-5, scale: bool = True, center: bool = True,
               name: str | None = None) -> Tensor:
    """Normalise each channel (``axis``: -1 for ``(N, C)`` features, 1 for NCHW images) by the
    batch's mean and variance when ``training``, by the running statistics otherwise, then
    ``* gamma + beta``.

    ``training`` is a Python bool or a boolean scalar placeholder. While training, every
    compiled function that computes this layer also updates the running statistics (PyTorch's
    convention: ``running = (1 - momentum) * running + momentum * batch``, the variance unbiased);
    with a placeholder the update keeps the old values on calls fed ``False``.
    ``gc.nn.batch_norm(h, training)``"""
    flag = training_flag(training, "batch_norm")
    x = F._to_float(x)
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: input {x.node.label()} of shape {x.shape} needs a batch "
                         f"axis and a channel axis (at {user_source_line()})")
    (channel,) = F._normalize_axes(axis, x.ndim)
    channels = _static_size(x, channel, "batch_norm")
    view = [channels if i == channel else 1 for i in range(x.ndim)]
    with layer_scope("batch_norm", name):
        gamma = make_parameter("gamma", (channels,), x.dtype, "ones") if scale else None
        beta = make_parameter("beta", (channels,), x.dtype, "zeros") if center else None
        running_mean = make_parameter("running_mean", (channels,), x.dtype, "zeros",
                                      trainable=False)
        running_var = make_parameter("running_var", (channels,), x.dtype, "ones",
                                     trainable=False)
    mean, var = F.reshape(running_mean, view), F.reshape(running_var, view)
    updates: list[tuple[Tensor, Tensor]] = []
    if flag is not False:
        reduced = tuple(i for i in range(x.ndim) if i != channel)
        batch_mean = F.mean(x, axis=reduced, keepdims=True)
        deviation = x - batch_mean
        batch_var = F.mean(deviation * deviation, axis=reduced, keepdims=True)
        unbiased = batch_var * _bessel(x, reduced)
        for state, batch in ((running_mean, batch_mean), (running_var, unbiased)):
            new = state * (1.0 - momentum) + F.reshape(batch, (channels,)) * momentum
            updates.append((state, new if flag is True else F.where(flag, new, state)))
        mean = batch_mean if flag is True else F.where(flag, batch_mean, mean)
        var = batch_var if flag is True else F.where(flag, batch_var, var)
    y = (x - mean) / F.sqrt(var + eps)
    if gamma is not None:
        y = y * F.reshape(gamma, view)
    if beta is not None:
        y = y + F.reshape(beta, view)
    for target, value in updates:
        y.graph.add_implicit_update(target.node, value.node, y.node)
    return y


def dropout(x: Any, rate: float, training: bool | Tensor, name: str | None = None) -> Tensor:
    """Inverted dropout: while ``training``, zero each element of ``x`` with probability
    ``rate`` and scale the others by ``1 / (1 - rate)``; otherwise return ``x`` unchanged.

    ``rate`` is a float in [0, 1); ``training`` a Python bool or a boolean scalar placeholder
    (with a placeholder the mask is drawn on every call and used only when it is ``True``).
    The mask comes from ``gc.random.bernoulli``, so each call of a compiled function draws a
    new one (docs/randomness.md).

    >>> import graphcomp as gc
    >>> with gc.Graph(seed=0):
    ...     x = gc.placeholder((None, 8), "float32", name="x")
    ...     training = gc.placeholder((), "bool", name="training")
    ...     y = gc.nn.dropout(x, 0.5, training)
    >>> gc.nn.dropout(x, 0.5, False) is x
    True
    """
    flag = training_flag(training, "dropout")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or (
            not 0.0 <= float(rate) < 1.0):
        raise RangeError(f"dropout: rate must be a float in [0, 1), got {rate!r} "
                         f"(at {user_source_line()})")
    x = F._to_float(x)
    if flag is False or rate == 0:
        return x
    keep = bernoulli(1.0 - float(rate), x.shape, x.dtype, name=name)
    dropped = x * (keep * (1.0 / (1.0 - float(rate))))
    return dropped if flag is True else F.where(flag, dropped, x)


def _bessel(x: Tensor, axes: tuple[int, ...]) -> Any:
    """``n / (n - 1)`` for the ``n`` elements over ``axes`` (a tensor when n is symbolic)."""
    sizes = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in sizes):
        n = math.prod(int(d) for d in sizes)
        return n / (n - 1) if n > 1 else math.nan
    count = F.dim_size(x, axes, x.dtype)
    return count / (count - 1.0)
