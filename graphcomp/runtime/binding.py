"""Call-time checks: match arguments to placeholders and bind symbolic dimensions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp.errors import InputError
from graphcomp.ir import Dim, DimTable, Node, dim_factors, dim_value, shape_str


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


@dataclass(frozen=True)
class DeviceArgument:
    """An input in device memory, checked but not copied: ``array`` is the caller's object
    (``__cuda_array_interface__``, or a numba-cuda simulator array)."""

    array: Any
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def device_description(value: Any) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of an array in device memory, or None for anything else.

    >>> device_description(np.zeros(2)) is None
    True
    """
    interface = getattr(value, "__cuda_array_interface__", None)
    if isinstance(interface, dict):
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    if type(value).__name__ == "FakeCUDAArray":  # numba-cuda's simulator
        return tuple(value.shape), np.dtype(value.dtype)
    return None


def check_inputs(
    inputs: Sequence[Node], values: Sequence[Any], dims: DimTable, device_arrays: bool = False
) -> tuple[list[Any], dict[str, int]]:
    """Validate dtype and shape of each value; return C-contiguous arrays and the dim binding.

    Arrays in device memory are copied to the host, unless ``device_arrays``: then they are
    returned as ``DeviceArgument`` (the CUDA backend's device calls read them in place).

    ``dims`` is the program's dim table (frozen at compile time). Symbols are bound from the
    axes that are a lone symbol first; product axes (``N*64``) are then checked, or bind the
    one symbol of theirs still unbound (an axis of 128 for ``N*64`` binds ``N`` to 2).
    """
    binding: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    products: list[_ProductAxis] = []
    arrays = []
    for node, value in zip(inputs, values, strict=True):
        title = placeholder_title(node)
        described = device_description(value)
        if described is None:
            array: Any = _as_array(value, node, title)
        else:
            array = _device_argument(value, described, node, title, device_arrays)
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
            elif dim_factors(want) != (1, (want,)):  # a product such as N*64: after the symbols
                products.append(_ProductAxis(title, declared, array.shape, axis))
            elif want in binding and binding[want] != got:
                raise InputError(
                    f"{title}: expected shape {shape_str(declared)} with {want}={binding[want]} "
                    f"(bound by {bound_by[want]}), got {array.shape}"
                )
            else:
                binding[want] = got
                bound_by[want] = title
        arrays.append(array)
    _bind_products(products, binding, bound_by)
    _check_pending(dims, binding)
    return arrays, binding


@dataclass(frozen=True)
class _ProductAxis:
    """An input axis whose declared size is a product of symbols (``N*64``)."""

    title: str
    declared: tuple
    given: tuple[int, ...]
    axis: int

    @property
    def want(self) -> Dim:
        return self.declared[self.axis]

    def mismatch(self, binding: Mapping[str, int], bound_by: Mapping[str, str]) -> InputError:
        coeff, factors = dim_factors(self.want)
        bound = [s for s in sorted(set(factors)) if s in binding]
        values = "".join(f", {s}={binding[s]} (bound by {bound_by[s]})" for s in bound)
        known = coeff * math.prod(binding[s] ** factors.count(s) for s in bound)
        whole = len(bound) == len(set(factors))
        must = f"must be {known}" if whole else f"must be a multiple of {known}"
        return InputError(
            f"{self.title}: expected shape {shape_str(self.declared)}{values}, got {self.given} "
            f"(axis {self.axis} is {self.want}: it {must})"
        )


def _bind_products(
    products: list[_ProductAxis], binding: dict[str, int], bound_by: dict[str, str]
) -> None:
    """Check product axes, binding a product's one unbound symbol where that is all it lacks."""
    while products:
        left = []
        for item in products:
            coeff, factors = dim_factors(item.want)
            got = item.given[item.axis]
            unbound = [s for s in factors if s not in binding]
            if not unbound:
                if dim_value(item.want, binding) != got:
                    raise item.mismatch(binding, bound_by)
            elif len(unbound) == 1:
                known = coeff * math.prod(binding[s] for s in factors if s in binding)
                if known == 0 or got % known:
                    raise item.mismatch(binding, bound_by)
                binding[unbound[0]], bound_by[unbound[0]] = got // known, item.title
            else:
                left.append(item)
        if len(left) == len(products):
            item = left[0]
            raise InputError(
                f"{item.title}: axis {item.axis} of shape {shape_str(item.declared)} is "
                f"{item.want}, and no input binds {' or '.join(sorted(set(unbound)))} alone"
            )
        products = left


def _check_pending(dims: DimTable, binding: Mapping[str, int]) -> None:
    """Equalities the graph could not solve when it was built (``N*T == 128``)."""
    for a, b in dims.pending():
        symbols = set(dim_factors(a)[1]) | set(dim_factors(b)[1])
        if not symbols <= set(binding):
            continue  # about symbols this function's inputs do not bind
        if dim_value(a, binding) != dim_value(b, binding):
            given = ", ".join(f"{s}={binding[s]}" for s in sorted(symbols))
            raise InputError(
                f"the graph requires {a} == {b}, but the inputs give {given} "
                f"({dim_value(a, binding)} != {dim_value(b, binding)})"
            )


def _device_argument(value: Any, described: tuple[tuple[int, ...], np.dtype], node: Node,
                     title: str, keep: bool) -> Any:
    shape, dtype = described
    if dtype != node.dtype:
        raise InputError(f"{title}: expected dtype {node.dtype}, got a device array of dtype "
                         f"{dtype} (a device array is not converted)")
    if keep:
        if not _device_contiguous(value, shape, dtype):
            raise InputError(f"{title}: a device array must be C-contiguous (copy it on the "
                             "device first)")
        return DeviceArgument(value, shape, dtype)
    from graphcomp.backends.cuda import device  # only reached with a device array

    return device.copy_to_host(value).reshape(shape)


def _device_contiguous(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    interface = getattr(value, "__cuda_array_interface__", None)
    if not isinstance(interface, dict):  # a simulator array
        return bool(value.is_c_contiguous())
    strides = interface.get("strides")
    if strides is None:
        return True
    expected, step = [], dtype.itemsize
    for size in reversed(shape):
        expected.append(step)
        step *= size
    return all(s == e for s, e, n in zip(strides, reversed(expected), shape, strict=True)
               if n > 1)


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
    return tuple(dim_value(d, binding) for d in dims.resolve_shape(node.shape))
