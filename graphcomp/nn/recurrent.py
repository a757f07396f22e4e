"""Recurrent layers: LSTM and GRU cells, and the layers that run them over a sequence.

A cell is made once, outside any loop (a scan body cannot create parameters), and called as
the step of ``gc.scan``: ``cell(carry, x) -> (carry, h)``. ``lstm``/``gru`` make a cell, project
the whole input sequence through the input weights with one matmul, then scan the recurrent
part over the time steps (docs/loops.md, "Recurrent layers").

Gate weights are fused: ``w_x`` of shape ``(features, G * hidden)`` and ``w_h`` of shape
``(hidden, G * hidden)`` (G = 4 gates for the LSTM, 3 for the GRU), so a step is one matmul
``h @ w_h`` whose columns are sliced into the gates. The input projection ``x @ w_x + b`` has
no dependence on the carry, so the layers compute it for all steps before the loop, as one
``(T * B, features) @ (features, G * hidden)`` matmul; the loop body keeps only ``h @ w_h``.
Concatenating ``[x, h] @ W`` instead would copy ``x`` and ``h`` at every step and keep the
input projection inside the loop, T small matmuls instead of one large one.

>>> import graphcomp as gc
>>> with gc.Graph() as g:
...     xs = gc.placeholder(("T", None, 8), "float32", name="xs")
...     hs, (h, c) = gc.nn.lstm(xs, 16)
>>> hs.shape, h.shape, [p.name for p in gc.parameters(g)]
(('T', 'N', 16), ('N', 16), ['lstm/w_x', 'lstm/w_h', 'lstm/b'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import ShapeError
from graphcomp.ir import user_source_line
from graphcomp.loops.scan import scan
from graphcomp.nn.scope import Initializer, layer_scope, make_parameter
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F

__all__ = ["GRUCell", "LSTMCell", "gru", "gru_cell", "lstm", "lstm_cell"]

LSTMCarry = tuple[Tensor, Tensor]


def _gates(z: Tensor, hidden: int, count: int) -> list[Tensor]:
    """The ``count`` column blocks of width ``hidden`` of ``z`` (last axis ``count * hidden``)."""
    return [z[..., k * hidden:(k + 1) * hidden] for k in range(count)]


def _zeros(batch: Any, hidden: int, dtype: np.dtype) -> Tensor:
    return F.broadcast_to(F.constant(0, dtype), (batch, hidden))


@dataclass(frozen=True)
class LSTMCell:
    """An LSTM step with fused gates (input, forget, cell, output): ``cell((h, c), x)``.

    ``w_x`` is ``(features, 4 * hidden)``, ``w_h`` ``(hidden, 4 * hidden)``, ``b``
    ``(4 * hidden,)``. ``c' = f * c + i * g``, ``h' = o * tanh(c')`` with ``i, f, o`` sigmoid
    gates and ``g`` the tanh candidate. ``cell.zero_carry(batch)`` is ``(h, c)`` of zeros.
    """

    hidden: int
    w_x: Parameter
    w_h: Parameter
    b: Parameter

    def project(self, x: Tensor) -> Tensor:
        """``x @ w_x + b``: the input's part of the gates, for any leading axes of ``x``."""
        return F.matmul(x, self.w_x) + self.b

    def recur(self, carry: LSTMCarry, projected: Tensor) -> tuple[LSTMCarry, Tensor]:
        """One step given the projected input: ``((h, c), h)``."""
        h, c = carry
        i, f, g, o = _gates(projected + F.matmul(h, self.w_h), self.hidden, 4)
        c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
        h = F.sigmoid(o) * F.tanh(c)
        return (h, c), h

    def __call__(self, carry: LSTMCarry, x: Tensor) -> tuple[LSTMCarry, Tensor]:
        return self.recur(carry, self.project(x))

    def zero_carry(self, batch: Any) -> LSTMCarry:
        """``(h, c)``, both zeros of shape ``(batch, hidden)`` (``batch`` may be symbolic)."""
        zeros = _zeros(batch, self.hidden, self.w_h.dtype)
        return zeros, zeros


@dataclass(frozen=True)
class GRUCell:
    """A GRU step with fused gates (reset, update, candidate): ``cell(h, x) -> (h', h')``.

    ``w_x`` is ``(features, 3 * hidden)``, ``w_h`` ``(hidden, 3 * hidden)``, biases ``b_x`` and
    ``b_h`` ``(3 * hidden,)``. With ``a = x @ w_x + b_x`` and ``u = h @ w_h + b_h`` split into
    (r, z, n) blocks: ``r = sigmoid(a_r + u_r)``, ``z = sigmoid(a_z + u_z)``,
    ``n = tanh(a_n + r * u_n)``, ``h' = (1 - z) * n + z * h`` (the convention of PyTorch's GRU).
    """

    hidden: int
    w_x: Parameter
    w_h: Parameter
    b_x: Parameter
    b_h: Parameter

    def project(self, x: Tensor) -> Tensor:
        """``x @ w_x + b_x``: the input's part of the gates, for any leading axes of ``x``."""
        return F.matmul(x, self.w_x) + self.b_x

    def recur(self, h: Tensor, projected: Tensor) -> tuple[Tensor, Tensor]:
        """One step given the projected input: ``(h', h')``."""
        a_r, a_z, a_n = _gates(projected, self.hidden, 3)
        u_r, u_z, u_n = _gates(F.matmul(h, self.w_h) + self.b_h, self.hidden, 3)
        r = F.sigmoid(a_r + u_r)
        z = F.sigmoid(a_z + u_z)
        n = F.tanh(a_n + r * u_n)
        h = n + z * (h - n)
        return h, h

    def __call__(self, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.recur(h, self.project(x))

    def zero_carry(self, batch: Any) -> Tensor:
        """``h``: zeros of shape ``(batch, hidden)`` (``batch`` may be symbolic)."""
        return _zeros(batch, self.hidden, self.w_h.dtype)


def _forget_bias(hidden: int, value: float) -> Any:
    def init(shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        b = np.zeros(shape, dtype)
        b[hidden:2 * hidden] = value
        return b

    return init


def _lstm_cell(kind: str, features: int, hidden: int, dtype: Any, name: str | None,
               init: Initializer, recurrent_init: Initializer, forget_bias: float,
               seed: int | None) -> LSTMCell:
    dtype = dtypes.as_dtype(dtype)
    with layer_scope(kind, name):
        w_x = make_parameter("w_x", (features, 4 * hidden), dtype, init, seed)
        w_h = make_parameter("w_h", (hidden, 4 * hidden), dtype, recurrent_init, seed)
        b = make_parameter("b", (4 * hidden,), dtype, _forget_bias(hidden, forget_bias))
    return LSTMCell(hidden, w_x, w_h, b)


def _gru_cell(kind: str, features: int, hidden: int, dtype: Any, name: str | None,
              init: Initializer, recurrent_init: Initializer, seed: int | None) -> GRUCell:
    dtype = dtypes.as_dtype(dtype)
    with layer_scope(kind, name):
        w_x = make_parameter("w_x", (features, 3 * hidden), dtype, init, seed)
        w_h = make_parameter("w_h", (hidden, 3 * hidden), dtype, recurrent_init, seed)
        b_x = make_parameter("b_x", (3 * hidden,), dtype, "zeros")
        b_h = make_parameter("b_h", (3 * hidden,), dtype, "zeros")
    return GRUCell(hidden, w_x, w_h, b_x, b_h)


def lstm_cell(features: int, hidden: int, dtype: Any = "float32", name: str | None = None,
              init: Initializer = "glorot_uniform", recurrent_init: Initializer = "orthogonal",
              forget_bias: float = 1.0, seed: int | None = None) -> LSTMCell:
    """An LSTM step for inputs of ``features`` and a state of ``hidden`` units; its parameters
    (``w_x``, ``w_h``, ``b``, the forget gate's bias set to ``forget_bias``) are made now, in
    the layer's scope. Use it as a ``gc.scan`` step: ``(h, c), hs = gc.scan(cell, carry, xs)``.

    >>> # cell = gc.nn.lstm_cell(8, 16); (h, c), hs = gc.scan(cell, cell.zero_carry("N"), xs)
    """
    return _lstm_cell("lstm_cell", features, hidden, dtype, name, init, recurrent_init,
                      forget_bias, seed)


def gru_cell(features: int, hidden: int, dtype: Any = "float32", name: str | None = None,
             init: Initializer = "glorot_uniform", recurrent_init: Initializer = "orthogonal",
             seed: int | None = None) -> GRUCell:
    """A GRU step for inputs of ``features`` and a state of ``hidden`` units; its parameters
    (``w_x``, ``w_h``, ``b_x``, ``b_h``) are made now, in the layer's scope. Use it as a
    ``gc.scan`` step: ``h, hs = gc.scan(cell, cell.zero_carry("N"), xs)``.

    >>> # cell = gc.nn.gru_cell(8, 16); h, hs = gc.scan(cell, cell.zero_carry("N"), xs)
    """
    return _gru_cell("gru_cell", features, hidden, dtype, name, init, recurrent_init, seed)


def _sequence(x: Any, time_major: bool, layer: str) -> Tensor:
    """``x`` as a float ``(T, B, features)`` tensor, checked."""
    x = F._to_float(x)
    if x.ndim != 3:
        raise ShapeError(f"{layer}: input {x.node.label()} of shape {x.shape} must be a sequence "
                         f"(T, B, features) or (B, T, features) (at {user_source_line()})")
    if not isinstance(x.shape[-1], int):
        raise ShapeError(f"{layer}: the feature axis of {x.node.label()} (shape {x.shape}) must "
                         f"be static to size the layer's parameters (at {user_source_line()})")
    return x if time_major else F.transpose(x, (1, 0, 2))


def lstm(x: Any, hidden: int, initial: LSTMCarry | None = None, time_major: bool = True,
         name: str | None = None, init: Initializer = "glorot_uniform",
         recurrent_init: Initializer = "orthogonal", forget_bias: float = 1.0,
         seed: int | None = None, checkpoint: int | None = None) -> tuple[Tensor, LSTMCarry]:
    """Run an LSTM over a sequence: ``hs, (h, c) = gc.nn.lstm(x, 128)``.

    ``x`` is ``(T, B, features)`` (``time_major=True``, the layout ``gc.scan`` slices) or
    ``(B, T, features)``; ``hs`` has the same layout with ``hidden`` features, and ``(h, c)`` is
    the final carry. ``initial`` defaults to zeros. Parameters as in ``lstm_cell``, in a scope
    named ``name`` or ``lstm``, ``lstm_1``... ``checkpoint=k``: as for ``gc.scan``.

    >>> # hs, (h, c) = gc.nn.lstm(gc.placeholder((None, 8, 8), "float32"), 64, time_major=False)
    """
    xs = _sequence(x, time_major, "lstm")
    cell = _lstm_cell("lstm", int(xs.shape[-1]), hidden, xs.dtype, name, init, recurrent_init,
                      forget_bias, seed)
    carry = cell.zero_carry(xs.shape[1]) if initial is None else initial
    final, hs = scan(cell.recur, carry, cell.project(xs), checkpoint=checkpoint)
    return (hs if time_major else F.transpose(hs, (1, 0, 2))), final


def gru(x: Any, hidden: int, initial: Tensor | None = None, time_major: bool = True,
        name: str | None = None, init: Initializer = "glorot_uniform",
        recurrent_init: Initializer = "orthogonal",
        seed: int | None = None, checkpoint: int | None = None) -> tuple[Tensor, Tensor]:
    """Run a GRU over a sequence: ``hs, h = gc.nn.gru(x, 128)``.

    Layouts as for ``lstm``: ``x`` and ``hs`` are ``(T, B, ...)`` with ``time_major=True``, else
    ``(B, T, ...)``; ``h`` is the final state, ``initial`` defaults to zeros. Parameters as in
    ``gru_cell``, in a scope named ``name`` or ``gru``, ``gru_1``... ``checkpoint=k``: as for
    ``gc.scan``.

    >>> # hs, h = gc.nn.gru(gc.placeholder(("T", None, 8), "float32"), 32)
    """
    xs = _sequence(x, time_major, "gru")
    cell = _gru_cell("gru", int(xs.shape[-1]), hidden, xs.dtype, name, init, recurrent_init,
                     seed)
    carry = cell.zero_carry(xs.shape[1]) if initial is None else initial
    final, hs = scan(cell.recur, carry, cell.project(xs), checkpoint=checkpoint)
    return (hs if time_major else F.transpose(hs, (1, 0, 2))), final
