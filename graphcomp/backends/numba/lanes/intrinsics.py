"""Native operations the lanes' compiled code needs and numba lacks (CPU atomics, calls by address).

- ``atomic_load``/``atomic_store``/``atomic_add``/``atomic_cas`` on an element of an int64
  array: LLVM's atomic instructions, acquire loads and release stores (data written before a
  release store is visible to a thread whose acquire load sees the stored value).
- ``call_task(function, block, who)``: calls the native ``void f(int64, int64)`` at address
  ``function`` (the helper runs a row segment's C entry this way, without the GIL).
- ``address_pointer(address, np.float32)``: a typed pointer, for ``carray`` over an address.
- ``sched_yield``, ``clock_gettime``, ``usleep``: libc, by symbol.
- ``blas_at(library)``: numpy's ``cblas_[sd]gemm`` taking integer addresses (``sgemm_at``,
  ``dgemm_at``, so a piece can start in the middle of an array) and the library's integer type.

Imports numba: only the lanes' compiled code (``code.py`` and the modules that carry its text)
imports this module.

>>> import numpy as np
>>> from numba import njit
>>> njit(lambda a: atomic_add(a, 0, 1, 5))(np.zeros((1, 2), np.int64))  # the old value
0
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from graphcomp.backends.numba.blas import (
    BlasLibrary,
    gemm_externals,
    load_numpy_blas,
    numpy_blas,
)


def _element_pointer(context, builder, array_type, array, row, column):
    array = make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array, [row, column])


@intrinsic
def atomic_load(typingctx, array, row, column):
    """``array[row, column]``, an acquire load."""
    def codegen(context, builder, signature, args):
        address = _element_pointer(context, builder, signature.args[0], *args)
        return builder.load_atomic(address, "acquire", 8)
    return types.int64(array, row, column), codegen


@intrinsic
def atomic_store(typingctx, array, row, column, value):
    """``array[row, column] = value``, a release store."""
    def codegen(context, builder, signature, args):
        address = _element_pointer(context, builder, signature.args[0], *args[:3])
        builder.store_atomic(args[3], address, "release", 8)
        return context.get_dummy_value()
    return types.void(array, row, column, types.int64), codegen


@intrinsic
def atomic_add(typingctx, array, row, column, value):
    """``array[row, column] += value``; returns the old value."""
    def codegen(context, builder, signature, args):
        address = _element_pointer(context, builder, signature.args[0], *args[:3])
        return builder.atomic_rmw("add", address, args[3], "acq_rel")
    return types.int64(array, row, column, types.int64), codegen


@intrinsic
def atomic_cas(typingctx, array, row, column, expected, new):
    """``array[row, column] = new`` if it holds ``expected``; returns whether it did."""
    def codegen(context, builder, signature, args):
        address = _element_pointer(context, builder, signature.args[0], *args[:3])
        result = builder.cmpxchg(address, args[3], args[4], "acq_rel", "acquire")
        return builder.extract_value(result, 1)
    return types.boolean(array, row, column, types.int64, types.int64), codegen


@intrinsic
def call_task(typingctx, function, block, who):
    """Call the native ``void f(int64 block, int64 who)`` at address ``function``."""
    def codegen(context, builder, signature, args):
        int64 = ir.IntType(64)
        callee_type = ir.FunctionType(ir.VoidType(), [int64, int64])
        callee = builder.inttoptr(args[0], callee_type.as_pointer())
        builder.call(callee, [args[1], args[2]])
        return context.get_dummy_value()
    return types.void(types.int64, types.int64, types.int64), codegen


@intrinsic
def address_pointer(typingctx, address, kind):
    """A typed pointer to ``address`` (``kind``: a numpy scalar type such as np.float32)."""
    pointer_type = types.CPointer(kind.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer_type))
    return pointer_type(types.int64, kind), codegen


sched_yield = types.ExternalFunction("sched_yield", types.int32())
clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.voidptr))
usleep = types.ExternalFunction("usleep", types.int32(types.uint32))


def blas_at(library: BlasLibrary) -> tuple[object, object, type]:
    """``(sgemm_at, dgemm_at, integer type)`` for ``library``, made callable from compiled code.

    >>> library = numpy_blas()
    >>> library is None or blas_at(library)[2] in (np.int32, np.int64)
    True
    """
    if library.path:
        load_numpy_blas(library.path)
    externals = gemm_externals(library, by_address=True)
    integer = np.int64 if library.int_bits == 64 else np.int32
    return externals["sgemm_at"], externals["dgemm_at"], integer


# The library code.py calls when it is imported as itself (generated modules name their own).
STANDALONE_BLAS = numpy_blas() or BlasLibrary("", "cblas_sgemm", "cblas_dgemm", 32)
