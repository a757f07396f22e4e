"""Kernels of the random ops: Philox4x32-10 blocks mapped to elements (``ops/random_ops.py``).

A kernel loops over the Philox blocks of its output (flat), computes each block's four words
with ``philox4x32_10`` and writes the block's elements (4 per block for float32 uniforms and
integers, 2 for float64 uniforms and normals), then the partial last block. The arithmetic is
``ops/philox.py``'s, whose text a library module carries (``PHILOX_FUNCTIONS``); normals take the
logarithm from ``fastmath.py`` (``log_f64``), numpy's backend from ``np.log``: the only
source of a difference (a few ulp of float64) between the two backends.
"""

from __future__ import annotations

from pathlib import Path

from graphcomp.backends.numba.inlined import source_without_docstring
from graphcomp.backends.numba.kernels import KernelText
from graphcomp.ops import philox
from graphcomp.passes.fusion import Kernel
from graphcomp.passes.lowered import LoweredProgram

PHILOX_FILE = Path(philox.__file__)
PHILOX_FUNCTIONS = frozenset({"philox4x32_10", "uniform24", "uniform53", "bounded32",
                              "sincos_turns"})
# Constants of ops/philox.py that random kernels read besides its functions.
PHILOX_CONSTANTS = ("MASK32", "SHIFT32")
_WORDS = "w0, w1, w2, w3 = philox4x32_10(np.uint64(j), stream, c2, c3, k0, k1)"


def _lanes(op_name: str, dtype: str, attrs: dict) -> tuple[list[str], list[str]]:
    """(prelude lines, one expression per element of a block) for one random op."""
    if op_name == "random_normal":
        return ["r = np.sqrt(-2.0 * log_f64(1.0 - uniform53(w0, w1)))",
                "c, s = sincos_turns(uniform53(w2, w3))"], [f"np.{dtype}(r * c)",
                                                            f"np.{dtype}(r * s)"]
    if op_name == "random_uniform" and dtype == "float64":
        return [], ["uniform53(w0, w1)", "uniform53(w2, w3)"]
    if op_name == "random_uniform":
        return [], [f"np.float32(uniform24(w{k}))" for k in range(4)]
    span, low = attrs["high"] - attrs["low"], attrs["low"]
    return [], [f"np.{dtype}(np.int64(bounded32(w{k}, np.uint64({span}))) + {low})"
                for k in range(4)]


def random_kernel(lp: LoweredProgram, kernel: Kernel) -> KernelText:
    """The kernel of one ``random_*`` op: ``out`` (flat) from the state ``a0 = [seed, call]``."""
    op = lp.ops[kernel.root]
    prelude, lanes = _lanes(op.op, op.dtype.name, dict(op.attrs))
    per_block = len(lanes)
    body = [
        ("seed = np.uint64(a0[0])", "the key: the seed's two halves"),
        ("call = np.uint64(a0[1])", "counter words 2, 3: the call number"),
        ("k0, k1 = seed & MASK32, seed >> SHIFT32", ""),
        ("c2, c3 = call & MASK32, call >> SHIFT32", ""),
        ("stream = s0", "counter word 1: the op's stream, passed (one kernel for all)"),
        ("n = out.shape[0]", ""),
        (f"full = n // {per_block}", ""),
    ]
    # Serial: under prange (16 blocks) the same loop ran 5x slower here (2^22 float32
    # normals: 24 ms serial, 124 ms in blocks, two busy cores), so the loop stays plain.
    body += [("for j in range(full):", "")]
    pad = "    "
    body += [(pad + line, "") for line in [_WORDS, *prelude]]
    body += [(pad + f"out[{per_block} * j + {k}] = {expr}", op.describe() if k == 0 else "")
             for k, expr in enumerate(lanes)]
    body += [(f"if n > {per_block} * full:", "the partial last block"),
             ("    j = full", ""), *[("    " + line, "") for line in [_WORDS, *prelude]],
             (f"    last = ({', '.join(lanes)},)", ""),
             (f"    for t in range(n - {per_block} * full):", ""),
             (f"        out[{per_block} * j + t] = last[t]", "")]
    functions = {"philox4x32_10"} | {f for f in PHILOX_FUNCTIONS | {"log_f64"}
                                     if any(f + "(" in line for line, _ in body)}
    return KernelText(["a0", "out", "s0"], body, [op.inputs[0]], flat=True,
                      functions=functions, scalars=[(int(op.attrs["stream"]), "uint64")])


def philox_source() -> str:
    """``ops/philox.py``'s text without its docstring, its functions compiled inline."""
    jit = 'njit(cache=True, error_model="numpy", no_cfunc_wrapper=True, forceinline=True)'
    wrappers = [f"{name} = {jit}({name})" for name in sorted(PHILOX_FUNCTIONS)]
    return source_without_docstring(PHILOX_FILE) + "\n\n" + "\n".join(wrappers)
