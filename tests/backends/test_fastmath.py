"""Accuracy, special values and vectorisation of graphcomp.backends.numba.fastmath.

Every check goes through a compiled ``out[i] = f(x[i])`` loop, i.e. what generated kernels do.
float64 results are measured against a long-double reference (float64 NumPy where long double
is not wider), float32 results against float64 NumPy.
"""

import functools
import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from numba import njit

try:
    from graphcomp.backends.numba import fastmath as fm
except ImportError:  # pragma: no cover - checkout without the package importable
    _path = Path(__file__).resolve().parents[2] / "graphcomp" / "backends" / "numba" / "fastmath.py"
    _spec = importlib.util.spec_from_file_location("fastmath", _path)
    fm = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(fm)

NAMES = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid"]
DTYPES = [np.float64, np.float32]
WIDE = np.longdouble if np.finfo(np.longdouble).nmant > 52 else np.float64
# Measured maxima are 0.8-1.8 ulp; these bounds leave room for other samples and CPUs.
ULP_BOUND = {"exp": 1.5, "expm1": 2.0, "log": 1.5, "log1p": 1.5, "tanh": 2.0, "sigmoid": 2.5}
# Where the reference is float64 itself (no wider long double), allow for its own error.
SLACK = 0.0 if WIDE is not np.float64 else 1.0
# The range where each function is neither saturated nor trivially 0/1/inf.
ACTIVE = {
    np.float64: {"exp": (-746, 710), "expm1": (-40, 710), "log": (0, 100), "log1p": (-1, 100),
                 "tanh": (-20, 20), "sigmoid": (-746, 40)},
    np.float32: {"exp": (-104, 89), "expm1": (-20, 89), "log": (0, 100), "log1p": (-1, 100),
                 "tanh": (-10, 10), "sigmoid": (-104, 20)},
}


def _sigmoid_ref(x):
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


REFERENCE = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p,
             "tanh": np.tanh, "sigmoid": _sigmoid_ref}


def _tag(dtype):
    return np.dtype(dtype).name


@functools.cache
def _loop(name, dtype, fastmath):
    f = fm.FUNCTIONS[(name, _tag(dtype))]

    @njit(cache=False, fastmath=fastmath)
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])

    return loop


def _run(name, dtype, x, fastmath=False):
    x = np.asarray(x, dtype=dtype)
    out = np.empty_like(x)
    _loop(name, dtype, fastmath)(x, out)
    return out


def _samples(name, dtype, n=100_000, seed=0):
    """Whole-range random bit patterns (log-uniform magnitudes, both signs), the active range,
    and log-uniform magnitudes from 2**-60 up to the end of the active range."""
    rng = np.random.default_rng(seed)
    finfo = np.finfo(dtype)
    if dtype is np.float64:
        bits = rng.integers(0, 0x7FF0000000000000, n, dtype=np.int64).view(np.float64)
    else:
        bits = rng.integers(0, 0x7F800000, n, dtype=np.int64).astype(np.int32).view(np.float32)
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    lo, hi = ACTIVE[dtype][name]
    mags = np.exp2(rng.uniform(-60, np.log2(max(-lo, hi)), n))
    parts = [bits * signs, rng.uniform(lo, hi, n), rng.uniform(-2, 2, n), mags * signs,
             [finfo.smallest_subnormal, finfo.smallest_normal, finfo.max]]
    with np.errstate(over="ignore"):
        return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])


def _ulp_errors(y, x, name, dtype):
    """|y - exact| in ulps of the rounded exact result (inf where a non-finite result differs)."""
    wide = WIDE if dtype is np.float64 else np.float64
    with np.errstate(all="ignore"):
        exact = REFERENCE[name](x.astype(wide))
        rounded = exact.astype(dtype)
        finite = np.isfinite(rounded)
        spacing = np.spacing(np.abs(rounded)).astype(wide)
        err = np.where(finite, np.abs(y.astype(wide) - exact) / spacing, 0.0)
    same = (y == rounded) | (np.isnan(y) & np.isnan(rounded))
    err[~finite & ~same] = np.inf
    return err.astype(np.float64), exact


@pytest.mark.parametrize("dtype", DTYPES, ids=_tag)
@pytest.mark.parametrize("name", NAMES)
def test_ulp_error_on_random_samples(name, dtype):
    x = _samples(name, dtype)
    y = _run(name, dtype, x)
    assert y.dtype == dtype
    err, _ = _ulp_errors(y, x, name, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP_BOUND[name] + SLACK, (
        f"{name}_{_tag(dtype)}({x[worst]!r}) = {y[worst]!r}: {err[worst]:.2f} ulp")
    if dtype is np.float64:  # NumPy's float32 SIMD loops are themselves up to ~4 ulp off
        with np.errstate(all="ignore"):
            theirs = REFERENCE[name](x)
        finite = np.isfinite(y)
        diff = np.abs(y[finite] - theirs[finite])
        assert np.all(diff <= 4 * np.spacing(np.abs(theirs[finite]))), "not within 4 ulp of NumPy"


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


INF, NAN = np.inf, np.nan
SPECIAL = {
    "exp": [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), (1e-300, 1.0),
            (-5e-324, 1.0), (1000.0, INF), (-1000.0, 0.0), (710.0, INF), (-746.0, 0.0)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (5e-324, 5e-324),
              (-5e-324, -5e-324), (1e-300, 1e-300), (1000.0, INF), (-1000.0, -1.0)],
    "log": [(1.0, 0.0), (0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF),
            (NAN, NAN), (-1e-30, NAN)],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -INF), (-2.0, NAN), (-INF, NAN), (INF, INF),
              (NAN, NAN), (5e-324, 5e-324), (-5e-324, -5e-324), (1e-300, 1e-300)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (5e-324, 5e-324),
             (-1e-300, -1e-300), (1e-10, 1e-10), (1000.0, 1.0), (-1000.0, -1.0)],
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), (1000.0, 1.0),
                (-1000.0, 0.0), (1e300, 1.0), (-1e300, 0.0)],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_tag)
@pytest.mark.parametrize("name", NAMES)
def test_special_values(name, dtype):
    with np.errstate(all="ignore"):  # the inputs themselves underflow/overflow in float32
        x = np.array([p[0] for p in SPECIAL[name]], dtype=dtype)
        want = np.array([p[1] for p in SPECIAL[name]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = _run(name, dtype, x)
    bad = ~_same(y, want)
    assert not bad.any(), f"{name}_{_tag(dtype)}: x={x[bad]} gave {y[bad]}, want {want[bad]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=_tag)
def test_exp_overflow_and_underflow_thresholds(dtype):
    wide = WIDE if dtype is np.float64 else np.float64
    # last finite / first infinite result, and the end of the subnormal range
    edges = [709.782712893384, 745.1332191019412, 708.3964185322641] if dtype is np.float64 else \
        [88.72283908187067, 103.97207708399179, 87.33654475055310]
    x = []
    for e in edges:
        for s in (1, -1):
            v = dtype(s * e)
            for _ in range(4):
                x += [v]
                v = np.nextafter(v, dtype(np.inf))
            v = dtype(s * e)
            for _ in range(4):
                v = np.nextafter(v, dtype(-np.inf))
                x += [v]
    x = np.array(x + ([709.8, 710.0, -745.2, -740.0] if dtype is np.float64 else [88.8, -100.0]),
                 dtype=dtype)
    y = _run("exp", dtype, x)
    with np.errstate(all="ignore"):
        rounded = np.exp(x.astype(wide)).astype(dtype)
    assert np.array_equal(np.isinf(y), np.isinf(rounded))
    assert np.array_equal(y == 0, rounded == 0)
    err, _ = _ulp_errors(y, x, "exp", dtype)  # includes subnormal results (ulp = 1 subnormal)
    assert err.max() <= 1.0
    if dtype is np.float64:
        assert np.isfinite(_run("exp", dtype, [709.78])[0])
        assert _run("exp", dtype, [-745.1])[0] > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=_tag)
def test_small_arguments(dtype):
    tiny = np.array([1e-30, -1e-30, 3e-39, -1e-44, 1e-8, -1e-8, 2.0**-30], dtype=dtype)
    for name in ("expm1", "log1p", "tanh"):
        y = _run(name, dtype, tiny)
        err, _ = _ulp_errors(y, tiny, name, dtype)
        assert err.max() <= 1.0, name
    assert np.array_equal(_run("tanh", dtype, tiny[:4]), tiny[:4])
    assert np.array_equal(_run("expm1", dtype, tiny[:4]), tiny[:4])


@pytest.mark.parametrize("dtype", DTYPES, ids=_tag)
@pytest.mark.parametrize("name", NAMES)
def test_caller_fastmath_does_not_change_results(name, dtype):
    """The kernels keep their own IEEE flags when inlined into a fastmath=True loop."""
    with np.errstate(over="ignore"):
        specials = np.array([p[0] for p in SPECIAL[name]], dtype=dtype)
    x = np.concatenate([_samples(name, dtype, n=5_000, seed=1), specials])
    assert _same(_run(name, dtype, x, fastmath=True), _run(name, dtype, x)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=_tag)
@pytest.mark.parametrize("name", NAMES)
def test_loop_vectorises_in_its_own_precision(name, dtype):
    _run(name, dtype, np.ones(4))
    loop = _loop(name, dtype, False)
    ir = loop.inspect_llvm(loop.signatures[0])
    elem = "float" if dtype is np.float32 else "double"
    assert re.search(rf"<(\d+) x {elem}>", ir), f"{name}_{_tag(dtype)} loop did not vectorise"
    assert not re.search(r"call [^\n]*@(exp|log|tanh|expm1|log1p)f?\(", ir)
    if dtype is np.float32:
        assert not re.search(r"\bdouble\b", ir), "float32 kernel promotes to float64"


def test_function_table():
    assert set(fm.FUNCTIONS) == {(n, _tag(d)) for n in NAMES for d in DTYPES}
    for (name, dtype), f in fm.FUNCTIONS.items():
        assert f is getattr(fm, f"{name}_{'f64' if dtype == 'float64' else 'f32'}")
        assert f.__doc__
