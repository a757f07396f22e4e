"""The dtypes graphcomp supports, their short names, and numpy's promotion rules for them."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphcomp.errors import DTypeError

SUPPORTED: tuple[np.dtype, ...] = tuple(
    np.dtype(name) for name in ("float32", "float64", "int32", "int64", "bool")
)
SHORT_NAMES: dict[np.dtype, str] = {
    np.dtype("float32"): "f32",
    np.dtype("float64"): "f64",
    np.dtype("int32"): "i32",
    np.dtype("int64"): "i64",
    np.dtype("bool"): "bool",
}

DTypeLike = str | type | np.dtype


def as_dtype(dtype: Any, *, where: str = "") -> np.dtype:
    """Return the numpy dtype for ``dtype`` if graphcomp supports it, else raise ``DTypeError``.

    >>> as_dtype("float32")
    dtype('float32')
    """
    try:
        result = np.dtype(dtype)
    except TypeError:
        raise DTypeError(_unsupported_message(dtype, where)) from None
    if result not in SUPPORTED:
        raise DTypeError(_unsupported_message(dtype, where))
    return result


def _unsupported_message(dtype: Any, where: str) -> str:
    names = ", ".join(str(d) for d in SUPPORTED)
    place = f" {where}" if where else ""
    return f"unsupported dtype {dtype!r}{place}; graphcomp supports {names}"


def is_float(dtype: np.dtype) -> bool:
    """True for float32 and float64: the dtypes that carry gradients."""
    return dtype.kind == "f"


def short_name(dtype: np.dtype) -> str:
    """``f32``-style name used by the text listing."""
    return SHORT_NAMES[np.dtype(dtype)]


def result_dtype(*operands: Any) -> np.dtype:
    """numpy 2's promotion (NEP 50): Python scalars are weak, dtypes are strong.

    >>> result_dtype(np.dtype("float32"), 2.0)
    dtype('float32')
    """
    return as_dtype(np.result_type(*operands))


def float_dtype_for(dtype: np.dtype) -> np.dtype:
    """The float dtype that true division or a transcendental of ``dtype`` yields."""
    return dtype if is_float(dtype) else np.dtype("float64")
