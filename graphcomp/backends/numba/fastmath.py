"""Vectorisable scalar transcendentals for generated Numba kernels.

Numba lowers ``math.exp``/``log``/``tanh`` to scalar libm calls, which stop LLVM from
vectorising the loop around them (pip's llvmlite has no SVML).  The kernels here use only
arithmetic, comparisons, selects and integer views of the float bits, so a loop
``out[i] = exp_f32(x[i])`` compiles to AVX2/AVX-512 code (e.g. ``<16 x float>`` on zmm).

Approach (float64 / float32 variants share it; the f32 ones convert their argument to float32
and compute in float32 with float32 constants and lower polynomial degrees):

* exp, expm1: ``x = k*ln2 + r``, ``|r| <= ln2/2``, with k rounded by the 1.5*2**p "shifter"
  trick (k then sits in the low mantissa bits), a Cody-Waite two-part ln2 and the rounding error
  of r carried along.  ``expm1(r) ~= r + r*r*Q(r)`` (minimax, degree 12 / 7).  2**k is built in
  the exponent field as two factors so subnormal results round once and k = 1024 can't overflow
  early.  expm1 recombines as ``2**k * ((1 - 2**-k) + expm1(r))``.
* log, log1p: ``u = 2**k * m`` with ``m`` in [sqrt(1/2), sqrt(2)) read from the bits,
  ``f = m - 1`` (exact), ``s = f/(2+f)``, ``log(1+f) = f - (f*f/2 - s*(f*f/2 + R(s*s)))`` with a
  minimax R.  log1p adds the exact rounding error of ``1 + x`` as ``c/u``.
* tanh: odd minimax polynomial for ``|x| < 0.55``; otherwise from ``t = expm1(2|x|)`` as
  ``t/(t+2)`` (``|x| < 0.75``) or ``1 - 2/(t+2)``.
* sigmoid: ``e = exp(-|x|)``; ``1/(1+e)`` or ``e/(1+e)`` with a correction for the rounding
  of ``1 + e``.  Never overflows.

Coefficients were fitted with a Remez exchange in mpmath (60 digits) at development time.
Special values follow NumPy: exp(710) = inf, exp(-746) = 0, exp(-inf) = 0, log(0) = -inf,
log(<0) = nan, log1p(-1) = -inf, tanh(+-inf) = +-1, sigmoid(+-1000) = 1 / 0, -0.0 is kept where
NumPy keeps it, NaN propagates, subnormal inputs and outputs are handled (no flush to zero).

Measured max error in ulp of the correctly rounded result (float64: 10M random inputs per
function, log-uniform over the whole range plus the active range, vs a long-double reference;
float32: all 2**32 inputs vs float64):

    dtype    exp    expm1  log    log1p  tanh   sigmoid
    float64  0.83   1.30   0.83   0.84   1.17   1.75
    float32  0.85   1.20   0.86   0.86   1.18   1.97

Throughput (``benchmarks/bench_fastmath.py``, 2**22 elements, one Zen 4 core, AVX-512): 0.5-1.4x
NumPy's own SIMD ufuncs (tanh_f32 is the slowest at 0.5x), 7-45x a Numba loop calling
``math.*``, 4-9x ``scipy.special.expit`` for sigmoid.

The kernels are compiled with ``forceinline`` (LLVM ``alwaysinline``, so they inline into the
caller's loop whatever their size) and with their own flags, ``fastmath={"contract"}`` (FMA
only) and ``error_model="numpy"``: instruction flags survive inlining, so a caller compiled with
``fastmath=True`` cannot reassociate away the rounding tricks.  Numba's ``inline="always"`` would
lower them with the caller's flags instead.
"""

import numpy as np
from numba import config as fastmath_config
from numba import njit, types
from numba.extending import intrinsic

_jit = njit(cache=False, fastmath={"contract"}, error_model="numpy", forceinline=True,
            no_cfunc_wrapper=True)
# The helpers below are called only from this file's functions, compiled with the same flags:
# numba inlines them into their callers' IR instead of compiling each as a function of its own
# (in a cold process, ~0.1 s each; docs/performance.md, "Cold compile: where the seconds go").
_inline = njit(cache=False, fastmath={"contract"}, error_model="numpy", inline="always",
               no_cfunc_wrapper=True)


def _bitcast(source, target):  # type: ignore[no-untyped-def]
    """An intrinsic: its argument converted to ``source``, its bits read as ``target``; the
    same as ``np.float64(x).view(np.int64)`` without compiling numba's scalar ``view``, one
    function per pair of types (four compiles of 0.05-0.2 s in every cold process)."""
    @intrinsic
    def cast(typingctx, x):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            value = context.cast(builder, args[0], signature.args[0], source)
            return builder.bitcast(value, context.get_value_type(target))
        return target(x), codegen
    return cast


if fastmath_config.DISABLE_JIT:
    def _bits64(x):
        return np.float64(x).view(np.int64)

    def _from_bits64(i):
        return np.int64(i).view(np.float64)

    def _bits32(x):
        return np.float32(x).view(np.int32)

    def _from_bits32(i):
        return np.int32(i).view(np.float32)
else:
    _bits64 = _bitcast(types.float64, types.int64)
    _from_bits64 = _bitcast(types.int64, types.float64)
    _bits32 = _bitcast(types.float32, types.int32)
    _from_bits32 = _bitcast(types.int32, types.float32)


# ------------------------------------------------------------------------------------ float64

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # 0x3fe62e42fee00000: k * _LN2_HI is exact for |k| < 2**21
_LN2_LO = 1.9082149292705877e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2**52
_SHIFT_BITS = 0x4338000000000000
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_MIN_NORMAL = 2.2250738585072014e-308
_TWO54 = 18014398509481984.0
_INF = np.inf
_NAN = np.nan
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
_SIGN_MASK = -0x8000000000000000

# expm1(r) ~= r + r*r*Q(r) for |r| <= ln2/2 (rel. error 2**-60.6)
_Q0 = 0.5
_Q1 = 0.1666666666666667
_Q2 = 0.041666666666666685
_Q3 = 0.008333333333326141
_Q4 = 0.0013888888888874409
_Q5 = 0.00019841269874802054
_Q6 = 2.4801587347313782e-05
_Q7 = 2.7557255424013177e-06
_Q8 = 2.7557252937495405e-07
_Q9 = 2.5105207015306658e-08
_Q10 = 2.0921580854750184e-09

# log(1+f) = 2s + s*z*T(z), s = f/(2+f), z = s*s, |s| <= 3 - 2*sqrt(2) (rel. error 2**-57.6)
_T0 = 0.666666666666667
_T1 = 0.39999999999898506
_T2 = 0.2857142862637127
_T3 = 0.22222211077397896
_T4 = 0.18182892887251093
_T5 = 0.1533160796381572
_T6 = 0.14617736819453644

# tanh(a) ~= a + a*z*P(z), z = a*a, |a| < 0.55 (rel. error 2**-58.5)
_P0 = -0.3333333333333333
_P1 = 0.13333333333332742
_P2 = -0.05396825396746473
_P3 = 0.02186948849496409
_P4 = -0.008863234425642012
_P5 = 0.0035921107216539253
_P6 = -0.0014556644037842987
_P7 = 0.0005889480069638224
_P8 = -0.00023466830289707602
_P9 = 8.516530552763202e-05
_P10 = -2.0637232165375465e-05


@_inline
def _q64(r):
    return _Q0 + r * (_Q1 + r * (_Q2 + r * (_Q3 + r * (_Q4 + r * (_Q5 + r * (
        _Q6 + r * (_Q7 + r * (_Q8 + r * (_Q9 + r * _Q10)))))))))


@_inline
def _t64(z):
    return _T0 + z * (_T1 + z * (_T2 + z * (_T3 + z * (_T4 + z * (_T5 + z * _T6)))))


@_inline
def _p64(z):
    return _P0 + z * (_P1 + z * (_P2 + z * (_P3 + z * (_P4 + z * (_P5 + z * (
        _P6 + z * (_P7 + z * (_P8 + z * (_P9 + z * _P10)))))))))


@_inline
def _reduce64(v):
    # v = k*ln2 + r + c, |r| <~ ln2/2, c = rounding error of r.  Adding 1.5*2**52 rounds
    # v/ln2 to an integer that then sits in the low mantissa bits.
    kf = v * _LOG2E + _SHIFT
    k = _bits64(kf) - _SHIFT_BITS
    kd = kf - _SHIFT
    hi = v - kd * _LN2_HI
    lo = kd * _LN2_LO
    r = hi - lo
    return k, r, (hi - r) - lo


@_inline
def _scale64(p, k):
    # p * 2**k for k in [-1076, 1024] as two normal powers of two: a subnormal result is
    # rounded once, and k = 1024 does not overflow before p < 1 is applied.
    k1 = k >> 1
    return p * _from_bits64((k1 + 1023) << 52) * _from_bits64((k - k1 + 1023) << 52)


@_inline
def _expm1_64(v):
    # expm1 without the -0.0 fix-up
    v = 710.0 if v > 710.0 else v
    v = -40.0 if v < -40.0 else v  # expm1(-40) rounds to -1
    k, r, c = _reduce64(v)
    w = r * r * _q64(r) + c
    # expm1(v) = 2**k * ((1 - 2**-k) + expm1(r)); 1 - 2**-k is exact for k <= 53
    kn = k if k < 60 else 60
    t = 1.0 - _from_bits64((1023 - kn) << 52)
    # for k == 1, 0.5 + r is exact and cancels, so add r first
    y = (t + r) + w if k == 1 else t + (r + w)
    return _scale64(y, k)


@_inline
def _log64(u, kadj, c):
    # log(u) + c for positive normal u (times 2**kadj): u = 2**k * m, m in [sqrt(1/2), sqrt(2))
    ui = _bits64(u)
    k = (ui - _SQRT_HALF_BITS) >> 52
    m = _from_bits64(ui - (k << 52))
    kd = (_from_bits64(k + _SHIFT_BITS) - _SHIFT) + kadj
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    hfsq = 0.5 * f * f
    return kd * _LN2_HI + (f - (hfsq - (s * (hfsq + z * _t64(z)) + (kd * _LN2_LO + c))))


@_jit
def exp_f64(x):
    """exp(x) for float64."""
    v = np.float64(x)
    v = 710.0 if v > 710.0 else v
    v = -746.0 if v < -746.0 else v
    k, r, c = _reduce64(v)
    return _scale64(1.0 + (r + (r * r * _q64(r) + c)), k)


@_jit
def expm1_f64(x):
    """exp(x) - 1 for float64, accurate for small |x|."""
    v = np.float64(x)
    y = _expm1_64(v)
    return v if v == 0.0 else y


@_jit
def log_f64(x):
    """Natural logarithm for float64."""
    v = np.float64(x)
    tiny = v < _MIN_NORMAL
    y = _log64(v * _TWO54 if tiny else v, -54.0 if tiny else 0.0, 0.0)
    y = -_INF if v == 0.0 else y
    y = _NAN if v < 0.0 else y
    return y if v < _INF else v


@_jit
def log1p_f64(x):
    """log(1 + x) for float64, accurate for small |x|."""
    v = np.float64(x)
    u = 1.0 + v
    # c = (1 + v) - u exactly, so log1p(v) = log(u) + c/u to first order
    c = (1.0 - (u - v)) if u >= 2.0 else (v - (u - 1.0))
    y = _log64(u, 0.0, c / u)
    y = v if v == 0.0 else y
    y = -_INF if v == -1.0 else y
    y = _NAN if v < -1.0 else y
    return y if v < _INF else v


@_jit
def tanh_f64(x):
    """tanh(x) for float64."""
    v = np.float64(x)
    a = _from_bits64(_bits64(v) & _ABS_MASK)
    a = 20.0 if a > 20.0 else a  # tanh(20) rounds to 1
    t = _expm1_64(a + a)
    mid = a < 0.75
    q = (t if mid else 2.0) / (t + 2.0)
    q = q if mid else 1.0 - q
    z = a * a
    y = a + a * (z * _p64(z)) if a < 0.55 else q
    return _from_bits64(_bits64(y) | (_bits64(v) & _SIGN_MASK))


@_jit
def sigmoid_f64(x):
    """1 / (1 + exp(-x)) for float64, computed without overflow."""
    v = np.float64(x)
    e = exp_f64(-_from_bits64(_bits64(v) & _ABS_MASK))
    pos = v >= 0.0
    d = 1.0 + e
    de = (1.0 - d) + e  # d + de == 1 + e exactly
    q = (1.0 if pos else e) / d
    # first-order correction for de; 1/d is q (x >= 0) or 1 - q (x < 0)
    return q - q * (de * (q if pos else 1.0 - q))


# ------------------------------------------------------------------------------------ float32

_F = np.float32
_ZERO_F = _F(0.0)
_HALF_F = _F(0.5)
_ONE_F = _F(1.0)
_TWO_F = _F(2.0)
_LOG2E_F = _F(1.4426950408889634)
_LN2_HI_F = _F(0.693145751953125)  # 0x3f317200: k * _LN2_HI_F is exact for |k| < 2**8
_LN2_LO_F = _F(1.428606765330187e-06)
_SHIFT_F = _F(12582912.0)  # 1.5 * 2**23
_SHIFT_BITS_F = 0x4B400000
_SQRT_HALF_BITS_F = 0x3F3504F3
_MIN_NORMAL_F = _F(1.1754943508222875e-38)
_TWO24_F = _F(16777216.0)
_INF_F = _F(np.inf)
_NAN_F = _F(np.nan)
_ABS_MASK_F = 0x7FFFFFFF
_SIGN_MASK_F = -0x80000000
_EXP_HI_F = _F(89.0)
_EXP_LO_F = _F(-104.0)
_EXPM1_LO_F = _F(-20.0)
_TANH_HI_F = _F(10.0)
_TANH_MID_F = _F(0.75)
_TANH_SMALL_F = _F(0.55)

# expm1(r) ~= r + r*r*Q(r) for |r| <= ln2/2 (rel. error 2**-30.8)
_Q0_F = _F(0.5)
_Q1_F = _F(0.1666666716337204)
_Q2_F = _F(0.04166646674275398)
_Q3_F = _F(0.00833328627049923)
_Q4_F = _F(0.0013933642767369747)
_Q5_F = _F(0.00019907574460376054)

# log(1+f) = 2s + s*z*T(z) (rel. error 2**-28.5)
_T0_F = _F(0.6666668653488159)
_T1_F = _F(0.39988717436790466)
_T2_F = _F(0.2958204746246338)

# tanh(a) ~= a + a*z*P(z), |a| < 0.55 (rel. error 2**-27.8)
_P0_F = _F(-0.3333333134651184)
_P1_F = _F(0.13333120942115784)
_P2_F = _F(-0.05391069874167442)
_P3_F = _F(0.02131609059870243)
_P4_F = _F(-0.0066212862730026245)


@_inline
def _q32(r):
    return _Q0_F + r * (_Q1_F + r * (_Q2_F + r * (_Q3_F + r * (_Q4_F + r * _Q5_F))))


@_inline
def _t32(z):
    return _T0_F + z * (_T1_F + z * _T2_F)


@_inline
def _p32(z):
    return _P0_F + z * (_P1_F + z * (_P2_F + z * (_P3_F + z * _P4_F)))


# Numba widens int32 arithmetic to int64; the np.int32(...) wrappers below mark where the
# value is known to fit, so LLVM keeps 16 lanes of int32 instead of two vectors of int64.


@_inline
def _reduce32(v):
    kf = v * _LOG2E_F + _SHIFT_F
    k = np.int32(_bits32(kf) - _SHIFT_BITS_F)
    kd = kf - _SHIFT_F
    hi = v - kd * _LN2_HI_F
    lo = kd * _LN2_LO_F
    r = hi - lo
    return k, r, (hi - r) - lo


@_inline
def _scale32(p, k):
    k1 = k >> 1
    return p * _from_bits32((k1 + 127) << 23) * _from_bits32((k - k1 + 127) << 23)


@_inline
def _expm1_32(v):
    v = _EXP_HI_F if v > _EXP_HI_F else v
    v = _EXPM1_LO_F if v < _EXPM1_LO_F else v
    k, r, c = _reduce32(v)
    w = r * r * _q32(r) + c
    kn = k if k < 30 else np.int32(30)
    t = _ONE_F - _from_bits32((127 - kn) << 23)
    y = (t + r) + w if k == 1 else t + (r + w)
    return _scale32(y, k)


@_inline
def _log32(u, kadj, c):
    ui = _bits32(u)
    k = np.int32(ui - _SQRT_HALF_BITS_F) >> 23
    m = _from_bits32(ui - (k << 23))
    kd = (_from_bits32(k + _SHIFT_BITS_F) - _SHIFT_F) + kadj
    f = m - _ONE_F
    s = f / (_TWO_F + f)
    z = s * s
    hfsq = _HALF_F * f * f
    return kd * _LN2_HI_F + (f - (hfsq - (s * (hfsq + z * _t32(z)) + (kd * _LN2_LO_F + c))))


@_jit
def exp_f32(x):
    """exp(x) for float32."""
    v = np.float32(x)
    v = _EXP_HI_F if v > _EXP_HI_F else v
    v = _EXP_LO_F if v < _EXP_LO_F else v
    k, r, c = _reduce32(v)
    return _scale32(_ONE_F + (r + (r * r * _q32(r) + c)), k)


@_jit
def expm1_f32(x):
    """exp(x) - 1 for float32, accurate for small |x|."""
    v = np.float32(x)
    y = _expm1_32(v)
    return v if v == _ZERO_F else y


@_jit
def log_f32(x):
    """Natural logarithm for float32."""
    v = np.float32(x)
    tiny = v < _MIN_NORMAL_F
    y = _log32(v * _TWO24_F if tiny else v, _F(-24.0) if tiny else _ZERO_F, _ZERO_F)
    y = -_INF_F if v == _ZERO_F else y
    y = _NAN_F if v < _ZERO_F else y
    return y if v < _INF_F else v


@_jit
def log1p_f32(x):
    """log(1 + x) for float32, accurate for small |x|."""
    v = np.float32(x)
    u = _ONE_F + v
    c = (_ONE_F - (u - v)) if u >= _TWO_F else (v - (u - _ONE_F))
    y = _log32(u, _ZERO_F, c / u)
    y = v if v == _ZERO_F else y
    y = -_INF_F if v == -_ONE_F else y
    y = _NAN_F if v < -_ONE_F else y
    return y if v < _INF_F else v


@_jit
def tanh_f32(x):
    """tanh(x) for float32."""
    v = np.float32(x)
    a = _from_bits32(_bits32(v) & _ABS_MASK_F)
    a = _TANH_HI_F if a > _TANH_HI_F else a
    t = _expm1_32(a + a)
    mid = a < _TANH_MID_F
    q = (t if mid else _TWO_F) / (t + _TWO_F)
    q = q if mid else _ONE_F - q
    z = a * a
    y = a + a * (z * _p32(z)) if a < _TANH_SMALL_F else q
    return _from_bits32(_bits32(y) | (_bits32(v) & _SIGN_MASK_F))


@_jit
def sigmoid_f32(x):
    """1 / (1 + exp(-x)) for float32, computed without overflow."""
    v = np.float32(x)
    e = exp_f32(-_from_bits32(_bits32(v) & _ABS_MASK_F))
    pos = v >= _ZERO_F
    d = _ONE_F + e
    de = (_ONE_F - d) + e
    q = (_ONE_F if pos else e) / d
    return q - q * (de * (q if pos else _ONE_F - q))


FUNCTIONS = {
    ("exp", "float64"): exp_f64,
    ("exp", "float32"): exp_f32,
    ("expm1", "float64"): expm1_f64,
    ("expm1", "float32"): expm1_f32,
    ("log", "float64"): log_f64,
    ("log", "float32"): log_f32,
    ("log1p", "float64"): log1p_f64,
    ("log1p", "float32"): log1p_f32,
    ("tanh", "float64"): tanh_f64,
    ("tanh", "float32"): tanh_f32,
    ("sigmoid", "float64"): sigmoid_f64,
    ("sigmoid", "float32"): sigmoid_f32,
}
