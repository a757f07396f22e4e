"""DRAFT"""

import numpy as np
from numba import njit

_jit = njit(inline="always", cache=False)

# ---------------------------------------------------------------- bit helpers


@_jit
def _bits_f64(x):
    return np.float64(x).view(np.int64)


@_jit
def _f64_from_bits(i):
    return np.int64(i).view(np.float64)


@_jit
def _bits_f32(x):
    return np.float32(x).view(np.int32)


@_jit
def _f32_from_bits(i):
    return np.int32(i).view(np.float32)


# ------------------------------------------------------------- f64 constants

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # 0x3fe62e42fee00000: k * _LN2_HI is exact for |k| < 2**21
_LN2_LO = 1.9082149292705877e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer held in the low bits
_SHIFT_BITS = 0x4338000000000000
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_MIN_NORMAL = 2.2250738585072014e-308
_TWO54 = 18014398509481984.0
_INF = np.inf
_NAN = np.nan
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
_SIGN_MASK = -0x8000000000000000

# expm1(r) ~ r + r*r*Q(r) on |r| <= ln2/2
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

# log(1+f) = 2s + s*z*T(z), s = f/(2+f), z = s*s
_T0 = 0.666666666666667
_T1 = 0.39999999999898506
_T2 = 0.2857142862637127
_T3 = 0.22222211077397896
_T4 = 0.18182892887251093
_T5 = 0.1533160796381572
_T6 = 0.14617736819453644


@_jit
def _q_f64(r):
    return _Q0 + r * (_Q1 + r * (_Q2 + r * (_Q3 + r * (_Q4 + r * (_Q5 + r * (
        _Q6 + r * (_Q7 + r * (_Q8 + r * (_Q9 + r * _Q10)))))))))


@_jit
def exp_f64(x):
    """exp(x) for float64."""
    x = 709.8 if x > 709.8 else x
    x = -746.0 if x < -746.0 else x
    kf = x * _LOG2E + _SHIFT
    k = _bits_f64(kf) - _SHIFT_BITS
    kd = kf - _SHIFT
    hi = x - kd * _LN2_HI
    lo = kd * _LN2_LO
    r = hi - lo
    c = (hi - r) - lo
    p = 1.0 + (r + (r * r * _q_f64(r) + c))
    k1 = k >> 1
    s1 = _f64_from_bits((k1 + 1023) << 52)
    s2 = _f64_from_bits((k - k1 + 1023) << 52)
    return p * s1 * s2
