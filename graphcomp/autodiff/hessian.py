"""Hessian-vector products: the gradient of <grad(loss), v>, built by two adjoint passes."""

from __future__ import annotations

from collections.abc import Sequence

from graphcomp.autodiff.reverse import grad
from graphcomp.errors import ShapeError
from graphcomp.ir import shape_str
from graphcomp.ops import Tensor, as_tensor
from graphcomp.ops import functions as F


def hvp(loss: Tensor, wrt: Tensor | Sequence[Tensor],
        vectors: Tensor | Sequence[Tensor]) -> Tensor | list[Tensor]:
    """Hessian of the scalar ``loss`` times ``vectors`` (one per ``wrt``), as tensors.

    Computed as ``grad(sum_i <grad(loss, w_i), v_i>, wrt)``, so it costs two adjoint passes and
    never forms the Hessian. ``wrt`` and ``vectors`` are both single tensors or both lists.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     w = gc.parameter(np.array([1.0, 2.0]), name="w")
    ...     loss = gc.sum(w * w * w)                     # Hessian: diag(6 w)
    ...     hv = gc.hvp(loss, w, gc.constant(np.array([1.0, 1.0])))
    >>> gc.compile([], hv)()
    array([ 6., 12.])
    """
    single = isinstance(wrt, Tensor)
    targets: list[Tensor] = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    directions = [vectors] if isinstance(vectors, Tensor) or single else list(vectors)
    if len(directions) != len(targets):
        raise ShapeError(f"hvp: {len(targets)} wrt tensors but {len(directions)} vectors")
    if not targets:
        raise ShapeError("hvp: no wrt tensors")
    grads = grad(loss, targets)
    inner: Tensor | None = None
    for w, g, v in zip(targets, grads, directions, strict=True):
        v = as_tensor(v, w.dtype, graph=w.graph)
        if tuple(v.shape) != tuple(w.shape):
            raise ShapeError(
                f"hvp: vector of shape {shape_str(v.shape)} for {w.node.describe()} of shape "
                f"{shape_str(w.shape)}"
            )
        term = F.sum(g * v)
        inner = term if inner is None else inner + term
    assert inner is not None  # targets is not empty
    result = grad(inner, targets)
    return result[0] if single else result
