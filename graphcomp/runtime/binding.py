"""Call-time checks: match arguments to placeholders and bind symbolic dimensions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphcomp.errors import InputError
from graphcomp.ir import DimTable, Node, shape_str


def placeholder_title(node: Node) -> str:
    """How call-time errors name a placeholder: ``placeholder 'x' (%0)``."""
    return f"placeholder {node.name!r} (%{node.id})" if node.name else f"placeholder %{node.id}"


def match_arguments(
    inputs: Sequence[Node], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[Any]:
    """Arguments in the order of ``inputs``, from positional and keyword (placeholder name) args."""
    if len(args) > len(inputs):
        raise InputError(f"expected at most {len(inputs)} positional inputs, got {len(args)}")
    values: list[Any] = list(args) + [None] * (len(inputs) - len(args))
    given = [True] * len(args) + [False] * (len(inputs) - len(args))
    by_name = {n.name: i for i, n in enumerate(inputs) if n.name}
    for key, value in kwargs.items():
        if key not in by_name:
            known = ", ".join(repr(k) for k in by_name) or "none"
            raise InputError(f"unknown input {key!r}; the inputs are named {known}")
        i = by_name[key]
        if given[i]:
            raise InputError(f"input {key!r} given both by position and by name")
        values[i], given[i] = value, True
    missing = [placeholder_title(n) for n, ok in zip(inputs, given, strict=True) if not ok]
    if missing:
        raise InputError(f"missing input(s): {', '.join(missing)}")
    return values


def check_inputs(
    inputs: Sequence[Node], values: Sequence[Any], dims: DimTable
) -> tuple[list[np.ndarray], dict[str, int]]:
    """Validate dtype and shape of each value; return C-contiguous arrays and the dim binding.

    ``dims`` is the program's dim table (frozen at compile time).
    """
    binding: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    arrays = []
    for node, value in zip(inputs, values, strict=True):
        title = placeholder_title(node)
        array = _as_array(value, node, title)
        declared = dims.resolve_shape(node.shape)
        if array.ndim != len(declared):
            raise InputError(
                f"{title}: expected rank {len(declared)} with shape {shape_str(declared)}, "
                f"got rank {array.ndim} with shape {array.shape}"
            )
        for axis, (want, got) in enumerate(zip(declared, array.shape, strict=True)):
            if isinstance(want, int):
                if want != got:
                    raise InputError(
                        f"{title}: expected shape {shape_str(declared)}, got {array.shape} "
                        f"(axis {axis} must be {want})"
                    )
            elif want in binding and binding[want] != got:
                raise InputError(
                    f"{title}: expected shape {shape_str(declared)} with {want}={binding[want]} "
                    f"(bound by {bound_by[want]}), got {array.shape}"
                )
            else:
                binding[want] = got
                bound_by[want] = title
        arrays.append(array)
    return arrays, binding


def _as_array(value: Any, node: Node, title: str) -> np.ndarray:
    want = node.dtype
    if isinstance(value, np.ndarray):
        if value.dtype != want:
            raise InputError(
                f"{title}: expected dtype {want}, got {value.dtype}; convert with "
                f".astype({str(want)!r})"
            )
        return np.asarray(value, order="C")  # ascontiguousarray would make 0-d arrays 1-d
    try:
        array = np.asarray(value)
    except Exception:
        raise InputError(f"{title}: cannot convert {type(value).__name__} to an array") from None
    if array.dtype == object or not np.can_cast(array.dtype, want, "same_kind"):
        raise InputError(f"{title}: expected dtype {want}, got {array.dtype} data")
    return np.asarray(array, dtype=want, order="C")


def resolve_shape(node: Node, binding: Mapping[str, int], dims: DimTable) -> tuple[int, ...]:
    """The concrete shape of ``node`` under ``binding`` (symbols resolved through ``dims``)."""
    out = []
    for d in dims.resolve_shape(node.shape):
        out.append(d if isinstance(d, int) else binding[d])
    return tuple(out)
