"""How layers name and initialise their parameters.

A layer opens a name scope of its own, ``name`` or else the first of ``dense``, ``dense_1``,
``dense_2``… that no parameter of the graph uses yet under the active scopes; its parameters
are ``"<scope>/<layer>/w"``. Initial values are drawn from a generator seeded by the
parameter's full name (and the layer's ``seed``, if given), so a model built twice starts from
the same values, and two layers never share them.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from graphcomp.ir import current_graph, current_scope, name_scope, scoped_name, user_source_line
from graphcomp.ops import Parameter
from graphcomp.ops.functions import parameter
from graphcomp.train import init as initializers

# (shape, seed, dtype) -> array, like the functions of gc.init.
Initializer = str | Callable[..., np.ndarray]

_BY_NAME: dict[str, Callable[..., np.ndarray]] = {
    "glorot_uniform": initializers.glorot_uniform,
    "glorot_normal": initializers.glorot_normal,
    "he_uniform": initializers.he_uniform,
    "he_normal": initializers.he_normal,
    "normal": lambda shape, seed, dtype: initializers.normal(shape, seed, 1.0, dtype=dtype),
    "orthogonal": initializers.orthogonal,
    "uniform": initializers.uniform,
    "zeros": lambda shape, seed, dtype: initializers.zeros(shape, dtype),
    "ones": lambda shape, seed, dtype: initializers.ones(shape, dtype),
}


@contextlib.contextmanager
def layer_scope(kind: str, name: str | None) -> Iterator[str]:
    """The name scope of one layer call: ``name``, else a fresh ``kind``, ``kind_1``…"""
    if name is None:
        name = _fresh_name(kind)
    with name_scope(name) as prefix:
        yield prefix


def _fresh_name(kind: str) -> str:
    taken = current_graph().parameter_names
    outer = current_scope()
    k = 0
    while True:
        candidate = kind if k == 0 else f"{kind}_{k}"
        prefix = f"{outer}/{candidate}/" if outer else f"{candidate}/"
        if not any(taken_name.startswith(prefix) for taken_name in taken):
            return candidate
        k += 1


def make_parameter(name: str, shape: Sequence[int], dtype: np.dtype, init: Initializer,
                   seed: int | None = None, trainable: bool = True) -> Parameter:
    """A parameter named ``name`` in the active scope, initialised by ``init``."""
    full_name = scoped_name(name)
    key = zlib.crc32(full_name.encode())
    rng = np.random.default_rng(key if seed is None else [seed, key])
    value = _initializer(init)(tuple(shape), rng, dtype)
    return parameter(np.asarray(value, dtype=dtype), name=name, trainable=trainable)


def _initializer(init: Initializer) -> Callable[..., np.ndarray]:
    if callable(init):
        return init
    if init in _BY_NAME:
        return _BY_NAME[init]
    raise ValueError(f"unknown initializer {init!r} (at {user_source_line()}); one of "
                     f"{', '.join(sorted(_BY_NAME))}, or a function (shape, seed, dtype) -> array")

