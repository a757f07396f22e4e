"""Optimizers whose update math is part of the compiled training step.

An optimizer turns gradients into ``(parameter, new_value)`` update pairs for ``gc.compile``. Its
state (momentum buffers, Adam's moments, the step count) lives in hidden parameters of the same
graph, so one compiled call runs forward, backward and update, and a checkpoint of
``params + opt.state`` captures everything needed to resume.

>>> import graphcomp as gc, numpy as np
>>> with gc.Graph():
...     x = gc.placeholder((None, 2), "float64", name="x")
...     w = gc.parameter(np.zeros(2), name="w")
...     loss = gc.mean(gc.square(x @ w - 1.0))
...     opt = gc.optim.SGD(lr=0.1, momentum=0.9)
...     step = gc.compile([x], loss, updates=opt.updates(loss, [w]), backend="numpy")
>>> [p.name for p in opt.state]
['sgd.step', 'w/sgd.momentum']

Update rules follow PyTorch's definitions (``torch.optim``), so results can be compared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import GraphError
from graphcomp.ir import Node, current_graph, static_shape
from graphcomp.ops import Parameter, Tensor, apply
from graphcomp.ops import functions as F
from graphcomp.ops.functions import parameters
from graphcomp.train.schedules import CosineDecay, Schedule, StepDecay

LearningRate = float | Tensor | Schedule

__all__ = [
    "SGD", "Adam", "AdamW", "CosineDecay", "LazyAdam", "LearningRate", "Optimizer", "RMSProp",
    "StepDecay", "sparse_gradient",
]

UpdatePairs = list[tuple[Parameter, Tensor]]


class Optimizer(ABC):
    """Base class: state bookkeeping, learning rate, and the update-pair plumbing.

    Subclasses implement ``_update(param, grad, lr, t)`` returning the new value of ``param``;
    ``t`` is the step count after this update (1 on the first), as a float scalar tensor.

    ``name`` prefixes the state parameters' names (``"W1/adam.m"``, ``"adam.step"``); pass a
    different one when two optimizers share a graph.
    """

    default_name = "optimizer"

    def __init__(self, lr: LearningRate, name: str | None = None) -> None:
        self.lr = lr
        self.name = name or self.default_name
        self.state: list[Parameter] = []
        self._state_updates: UpdatePairs = []
        self._used = False
        self._taken_names: set[str | None] = set()

    # -- public -------------------------------------------------------------------------
    def updates(self, loss: Tensor, params: Sequence[Parameter] | None = None) -> UpdatePairs:
        """Update pairs for ``gc.compile(..., updates=...)`` that take one step down ``loss``.

        ``params`` defaults to the trainable parameters of the loss's graph
        (``gc.parameters(graph, trainable=True)``); non-trainable ones are skipped.

        >>> # step = gc.compile([x, y], [loss, acc], updates=opt.updates(loss, params))
        """
        from graphcomp.autodiff import grad

        if params is None:
            params = parameters(loss.graph, trainable=True)
        params = [p for p in params if not isinstance(p, Parameter) or p.trainable]
        return self.apply_gradients(params, grad(loss, params))

    def apply_gradients(self, params: Sequence[Parameter], grads: Sequence[Tensor]) -> UpdatePairs:
        """Update pairs from gradients you computed yourself (one per parameter, same shapes).

        >>> # updates = opt.apply_gradients([W], [gW_placeholder])
        """
        params, grads = list(params), list(grads)
        self._check(params, grads)
        kept = [k for k, p in enumerate(params) if p.trainable]
        if not kept:
            raise GraphError(f"the optimizer got no trainable parameter (given: "
                             f"{', '.join(p.node.label() for p in params)})")
        params, grads = [params[k] for k in kept], [grads[k] for k in kept]
        graph = params[0].graph
        self._taken_names = {n.name for n in graph.nodes() if n.op == "parameter"}
        with graph:
            step = self._state("step", np.zeros((), dtype=np.int64))
            t_next = step + 1
            self._state_updates.append((step, t_next))
            lr = self._learning_rate(step)
            pairs: UpdatePairs = []
            per_dtype: dict[np.dtype, tuple[Any, Tensor]] = {}  # (lr, t) cast once per dtype
            for param, gradient in zip(params, grads, strict=True):
                if param.dtype not in per_dtype:
                    lr_d = lr if isinstance(lr, float) else F.cast(lr, param.dtype)
                    per_dtype[param.dtype] = lr_d, F.cast(t_next, param.dtype)
                lr_p, t = per_dtype[param.dtype]
                pairs.append((param, self._update(param, gradient, lr_p, t)))
        return pairs + self._state_updates

    def learning_rate(self, step: int) -> float:
        """The rate of update number ``step`` (0-based) in Python; not for placeholder rates."""
        if isinstance(self.lr, Tensor):
            raise TypeError("the learning rate is a placeholder: its value is whatever you feed")
        if isinstance(self.lr, (int, float)):
            return float(self.lr)
        return self.lr.value(step)

    # -- for subclasses -----------------------------------------------------------------
    @abstractmethod
    def _update(self, param: Parameter, grad: Tensor, lr: Any, t: Tensor) -> Tensor:
        """The new value of ``param`` (each optimizer's rule)."""

    def _slot(self, param: Parameter, slot: str) -> Parameter:
        """A zero-initialised state parameter shaped like ``param``, named after it."""
        owner = param.name if param.name else f"param{param.node.id}"
        return self._state(f"{slot}", np.zeros(static_shape(param.shape), dtype=param.dtype), owner)

    def _keep(self, state: Parameter, new_value: Tensor) -> Tensor:
        """Record that ``state`` takes ``new_value`` after the step; return ``new_value``."""
        self._state_updates.append((state, new_value))
        return new_value

    # -- internals ----------------------------------------------------------------------
    def _state(self, slot: str, value: np.ndarray, owner: str | None = None) -> Parameter:
        name = f"{owner}/{self.name}.{slot}" if owner else f"{self.name}.{slot}"
        graph = current_graph()
        if name in self._taken_names:
            raise GraphError(
                f"graph {graph.name!r} already has a parameter named {name!r}; give the second "
                f"optimizer another name, e.g. {type(self).__name__}(..., name='{self.name}2')"
            )
        state = F.parameter(value, name=name, trainable=False)
        self._taken_names.add(name)
        self.state.append(state)
        return state

    def _learning_rate(self, step: Parameter) -> float | Tensor:
        if isinstance(self.lr, Tensor):
            return self.lr
        if isinstance(self.lr, (int, float, np.floating, np.integer)):
            return float(self.lr)
        if callable(self.lr):
            return self.lr(step)
        raise TypeError(f"lr must be a float, a scalar tensor or a schedule, got {self.lr!r}")

    def _check(self, params: list[Parameter], grads: list[Tensor]) -> None:
        if self._used:
            raise GraphError(
                f"{type(self).__name__}.updates() was already called; its state belongs to that "
                "training step. Make a new optimizer for another one."
            )
        if not params:
            raise GraphError("the optimizer got no parameters to update")
        if len(params) != len(grads):
            raise GraphError(f"got {len(params)} parameters but {len(grads)} gradients")
        for param in params:
            if not isinstance(param, Parameter):
                raise GraphError(f"the optimizer can only update parameters, got {param!r}")
        if isinstance(self.lr, Tensor) and self.lr.ndim != 0:
            raise GraphError(f"a learning-rate tensor must be a scalar, got shape {self.lr.shape}")
        self._used = True


def sparse_gradient(param: Parameter, grad: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(ids, rows)`` when ``grad`` is ``scatter_add(zeros, ids, rows)`` along ``param``'s
    first axis (what ``gc.grad`` builds for one ``take(param, ids, axis=0)``), else None.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     table = gc.parameter(np.ones((100, 4)), name="table")
    ...     ids = gc.placeholder((None,), "int64", name="ids")
    ...     (g,) = gc.grad(gc.sum(gc.take(table, ids, axis=0)), [table])
    >>> ids_, rows = sparse_gradient(table, g)
    >>> rows.shape
    ('N', 4)
    """
    node = grad.node
    if node.op != "scatter_add" or node.attrs["axis"] != 0 or node.shape != param.node.shape:
        return None
    base, ids, rows = node.inputs
    if not _all_zero(base):
        return None
    return Tensor(ids), Tensor(rows)


def _all_zero(node: Node) -> bool:
    if node.op == "broadcast_to":
        node = node.inputs[0]
    return node.op == "constant" and not np.any(node.attrs["value"])


def _scalar(value: Any, dtype: np.dtype) -> Tensor:
    """A learning rate (float or scalar tensor) as a scalar tensor of ``dtype``."""
    return F.cast(value if isinstance(value, Tensor) else F.constant(value), dtype)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    ``g += weight_decay * p``; with momentum ``v = momentum * v + g`` and the step uses ``v``
    (or ``g + momentum * v`` for Nesterov); ``p -= lr * step``.

    Plain SGD (no momentum, no weight decay) of a table whose gradient is a gather's
    scatter-add (``sparse_gradient``) updates only the touched rows (``sparse_sgd``), with
    the same result as the dense step; ``sparse=False`` keeps the dense step.

    >>> opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    default_name = "sgd"

    def __init__(self, lr: LearningRate, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, name: str | None = None,
                 sparse: bool = True) -> None:
        super().__init__(lr, name)
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.sparse = bool(sparse)

    def _update(self, param: Parameter, grad: Tensor, lr: Any, t: Tensor) -> Tensor:
        rows = sparse_gradient(param, grad) if self.sparse else None
        if rows is not None and not self.momentum and not self.weight_decay:
            return apply("sparse_sgd", param, *rows, _scalar(lr, param.dtype))
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        direction = grad
        if self.momentum:
            velocity = self._slot(param, "momentum")
            new_velocity = self._keep(velocity, self.momentum * velocity + grad)
            direction = grad + self.momentum * new_velocity if self.nesterov else new_velocity
        return param - lr * direction


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` adds L2 to the gradient.

    ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g²``;
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.

    >>> opt = Adam(lr=1e-3)
    """

    default_name = "adam"

    def __init__(self, lr: LearningRate = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, name: str | None = None) -> None:
        super().__init__(lr, name)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)

    def _update(self, param: Parameter, grad: Tensor, lr: Any, t: Tensor) -> Tensor:
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        return param - lr * self._adam_direction(param, grad, t)

    def _adam_direction(self, param: Parameter, grad: Tensor, t: Tensor) -> Tensor:
        b1, b2 = self.beta1, self.beta2
        m, v = self._slot(param, "m"), self._slot(param, "v")
        new_m = self._keep(m, b1 * m + (1.0 - b1) * grad)
        new_v = self._keep(v, b2 * v + (1.0 - b2) * (grad * grad))
        m_hat = new_m / (1.0 - F.power(b1, t))
        v_hat = new_v / (1.0 - F.power(b2, t))
        return m_hat / (F.sqrt(v_hat) + self.eps)


class LazyAdam(Adam):
    """Adam that updates only the rows a table's gradient touches (like PyTorch's SparseAdam).

    For a table whose gradient is a gather's scatter-add (``sparse_gradient``), the moments
    and the table change only at the gathered rows ``r`` (``g_r``: their rows summed):
    ``m[r] = b1 m[r] + (1-b1) g_r``; ``v[r] = b2 v[r] + (1-b2) g_r²``;
    ``p[r] -= lr * (m[r] / (1-b1^t)) / (sqrt(v[r] / (1-b2^t)) + eps)``, where ``t`` counts
    every step (untouched rows keep stale moments and are not moved by them). A step then
    costs the touched rows, not the table. Other parameters get the dense Adam step; when
    every row is touched at each step the result equals ``Adam``'s.

    >>> opt = LazyAdam(lr=1e-2)
    """

    default_name = "lazyadam"

    def __init__(self, lr: LearningRate = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, name: str | None = None) -> None:
        super().__init__(lr, beta1, beta2, eps, 0.0, name)

    def _update(self, param: Parameter, grad: Tensor, lr: Any, t: Tensor) -> Tensor:
        rows = sparse_gradient(param, grad)
        if rows is None:
            return super()._update(param, grad, lr, t)
        ids, summed = rows
        m, v = self._slot(param, "m"), self._slot(param, "v")
        new_m = self._keep(m, apply("sparse_moment", m, ids, summed, beta=self.beta1, power=1))
        new_v = self._keep(v, apply("sparse_moment", v, ids, summed, beta=self.beta2, power=2))
        c1 = 1.0 - F.power(self.beta1, t)
        c2 = 1.0 - F.power(self.beta2, t)
        return apply("sparse_adam_step", param, new_m, new_v, ids, _scalar(lr, param.dtype),
                     c1, c2, eps=self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p -= lr * wd * p`` first.

    >>> opt = AdamW(lr=1e-3, weight_decay=0.01)
    """

    default_name = "adamw"

    def __init__(self, lr: LearningRate = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01, name: str | None = None) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, name)

    def _update(self, param: Parameter, grad: Tensor, lr: Any, t: Tensor) -> Tensor:
        decayed = param * (1.0 - lr * self.weight_decay) if self.weight_decay else param
        return decayed - lr * self._adam_direction(param, grad, t)


class RMSProp(Optimizer):
    """RMSProp: divide the gradient by a running root-mean-square of recent gradients.

    ``v = alpha v + (1-alpha) g²``; ``d = g / (sqrt(v) + eps)``; with momentum
    ``b = momentum b + d`` and the step uses ``b``; ``p -= lr * step``.

    >>> opt = RMSProp(lr=1e-2, alpha=0.99)
    """

    default_name = "rmsprop"

    def __init__(self, lr: LearningRate = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__(lr, name)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def _update(self, param: Parameter, grad: Tensor, lr: Any, t: Tensor) -> Tensor:
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        square_avg = self._slot(param, "square_avg")
        average = self.alpha * square_avg + (1.0 - self.alpha) * (grad * grad)
        new_avg = self._keep(square_avg, average)
        direction = grad / (F.sqrt(new_avg) + self.eps)
        if self.momentum:
            buffer = self._slot(param, "momentum")
            direction = self._keep(buffer, self.momentum * buffer + direction)
        return param - lr * direction
