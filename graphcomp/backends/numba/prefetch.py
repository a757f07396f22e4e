"""A cache prefetch hint for generated kernels that read rows at random places.

``prefetch(array, offset)`` asks the CPU to start loading the cache line that holds element
``offset`` of ``array``'s data (C order, counted from its first element), and returns at once:
LLVM's ``llvm.prefetch`` (read, keep in all cache levels), ``prefetcht0`` on x86. A gather or a
row update over a table larger than the caches waits for memory at every row; hinting the rows
a few ids ahead lets those loads overlap (docs/performance.md, "word2vec"). A hint never
faults, and the kernels only hint rows inside the table.

Generated modules get this file's text as a library module of their own (render.py), so a
change here changes the cached modules' names. Under ``NUMBA_DISABLE_JIT`` it does nothing.

>>> import numpy as np
>>> from numba import njit
>>> njit(lambda a: prefetch(a, 3))(np.zeros(4, np.float32)) is None
True
"""

from llvmlite import ir
from numba import config as prefetch_config
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array


@intrinsic
def _prefetch(typingctx, array, offset):
    def codegen(context, builder, signature, args):
        data = make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.gep(data, [args[1]])
        byte = ir.IntType(8).as_pointer()
        word = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, word, word, word]),
            "llvm.prefetch.p0")
        # read (0), keep in every cache level (3), data cache (1)
        builder.call(hint, [builder.bitcast(address, byte), ir.Constant(word, 0),
                            ir.Constant(word, 3), ir.Constant(word, 1)])
        return context.get_dummy_value()
    return types.void(array, types.int64), codegen


if prefetch_config.DISABLE_JIT:
    def prefetch(array, offset):
        """Nothing to hint when kernels run as Python."""
else:
    prefetch = _prefetch
