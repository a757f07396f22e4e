"""Benchmark graphcomp's vectorisable scalar math against NumPy and Numba's libm calls.

For every function in ``graphcomp.backends.numba.fastmath.FUNCTIONS`` and both float dtypes this
times, in one process and on the same input array:

* ``numpy``   -- the NumPy ufunc writing into a preallocated output (``scipy.special.expit`` for
  sigmoid),
* ``math``    -- an ``@njit`` loop calling ``math.exp`` etc. (scalar libm calls),
* ``fast``    -- the same loop calling the ``fastmath`` kernel,

and prints the median throughput in million elements per second plus the ratio to NumPy.  It also
inspects each compiled loop's LLVM IR and assembly and reports the vector width LLVM used
(e.g. ``<16 x float>`` with zmm registers), so "it vectorised" is checked, not assumed.

Run:  python benchmarks/bench_fastmath.py [--n 4194304] [--repeat 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import time
from pathlib import Path

import numpy as np
from numba import njit

try:
    from graphcomp.backends.numba import fastmath
except ImportError:  # run from a checkout without installing the package
    _path = Path(__file__).resolve().parents[1] / "graphcomp" / "backends" / "numba" / "fastmath.py"
    _spec = importlib.util.spec_from_file_location("fastmath", _path)
    fastmath = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(fastmath)

try:
    from scipy.special import expit as _expit
except ImportError:  # pragma: no cover - scipy is a dependency, this is just a fallback

    def _expit(x, out):
        with np.errstate(over="ignore"):
            np.exp(-x, out=out)
        out += 1
        np.reciprocal(out, out=out)
        return out


NAMES = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid"]

NUMPY = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "sigmoid": _expit,
}


@njit(cache=False)
def _math_sigmoid(x):
    e = math.exp(-abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


MATH = {
    "exp": math.exp,
    "expm1": math.expm1,
    "log": math.log,
    "log1p": math.log1p,
    "tanh": math.tanh,
    "sigmoid": _math_sigmoid,
}


def make_loop(f):
    """Compile ``out[i] = f(x[i])`` as a plain Numba loop (what generated code looks like)."""

    @njit(cache=False)
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])

    return loop


def inputs(name: str, dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """Inputs in the range where the function is non-trivial (and finite in ``dtype``)."""
    if name == "exp":
        x = rng.uniform(-80.0, 80.0, n)
    elif name == "expm1":
        x = rng.uniform(-5.0, 5.0, n)
    elif name == "log":
        x = np.exp(rng.uniform(-20.0, 20.0, n))
    elif name == "log1p":
        x = np.expm1(rng.uniform(-2.0, 5.0, n))
    elif name == "tanh":
        x = rng.uniform(-5.0, 5.0, n)
    else:
        x = rng.uniform(-20.0, 20.0, n)
    return x.astype(dtype)


def median_times(fns, repeat: int) -> list[float]:
    """Median wall time of each callable; runs are interleaved so load changes hit all alike."""
    for fn in fns:
        fn()  # warm-up (and compile)
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


def vector_width(loop) -> str:
    """Widest LLVM float vector type in the compiled loop, and how many packed floating-point
    instructions (``vfmadd231ps %zmm..`` etc.) use the widest register class."""
    sig = loop.signatures[0]
    ir = loop.inspect_llvm(sig)
    asm = loop.inspect_asm(sig)
    types = re.findall(r"<(\d+) x (float|double)>", ir)
    if not types:
        return "scalar"
    width, elem = max(types, key=lambda t: int(t[0]))
    packed = re.findall(r"^\s+v?\w+p[sd]\s+[^\n]*%([xyz])mm", asm, re.MULTILINE)
    if not packed:
        return f"<{width} x {elem}> no packed fp"
    reg = max(packed, key="xyz".index)
    return f"<{width} x {elem}> {packed.count(reg)}x{reg}mm"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2**22, help="elements per array")
    ap.add_argument("--repeat", type=int, default=15, help="timed runs (median is reported)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    print(f"n = {args.n}, median of {args.repeat} interleaved runs, million elements/s; "
          "vectorisation = widest LLVM vector type, number of packed FP instructions")
    header = (f"{'dtype':8} {'func':8} {'numpy':>7} {'math':>7} {'fast':>7} "
              f"{'math/np':>7} {'fast/np':>7}  {'fast vectorised':22} math vectorised")
    print(header)
    print("-" * len(header))
    for dtype in (np.float32, np.float64):
        dname = np.dtype(dtype).name
        for name in NAMES:
            x = inputs(name, dtype, args.n, rng)
            out = np.empty_like(x)
            ufunc = NUMPY[name]
            math_loop = make_loop(MATH[name])
            fast_loop = make_loop(fastmath.FUNCTIONS[(name, dname)])
            runs = [lambda u=ufunc: u(x, out=out), lambda: math_loop(x, out),
                    lambda: fast_loop(x, out)]
            t_np, t_math, t_fast = median_times(runs, args.repeat)
            rate = [args.n / t / 1e6 for t in (t_np, t_math, t_fast)]
            print(f"{dname:8} {name:8} {rate[0]:7.0f} {rate[1]:7.0f} {rate[2]:7.0f} "
                  f"{t_np / t_math:7.2f} {t_np / t_fast:7.2f}  {vector_width(fast_loop):22} "
                  f"{vector_width(math_loop)}")


if __name__ == "__main__":
    main()
