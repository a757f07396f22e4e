"""Philox4x32-10, the counter-based generator of ``gc.random``, and the maps from its words.

Written once, as plain unsigned arithmetic that runs on numpy ``uint64`` arrays (vectorised,
the numpy backend) and on numba ``uint64`` scalars (the numba backend copies this file's text
into each generated module that draws numbers, like ``fastmath.py``). Every value holds a
32-bit word in a ``uint64``: a product of two words then never overflows, and its high and low
halves are a shift and a mask. The constants are ``np.uint64`` so that numba never mixes
signed and unsigned integers (which it would promote to float64).

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011): a 4-word counter and a 2-word key; ten rounds, each two 32x32->64-bit products and
a permutation, with the key bumped by the Weyl constants between rounds. The known-answer
vectors of the Random123 distribution are checked in ``tests/random/test_philox.py``.

>>> words = philox4x32_10(*[np.zeros(1, np.uint64)] * 6)
>>> [hex(int(w[0])) for w in words]
['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
"""

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
SHIFT8 = np.uint64(8)
SHIFT5 = np.uint64(5)
SHIFT6 = np.uint64(6)
TWO_POW_26 = np.uint64(1 << 26)
INV_TWO_POW_24 = 1.0 / (1 << 24)
INV_TWO_POW_53 = 1.0 / (1 << 53)
TWO_PI = 6.283185307179586
# Taylor coefficients of cos and sin on [-pi/4, pi/4]: the first omitted terms (x**18/18!,
# x**19/19!) are below 2e-18, a fiftieth of an ulp of the results.
_C = [(-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 1))) for k in range(9)]
_S = [(-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2))) for k in range(9)]
C0, C1, C2, C3, C4, C5, C6, C7, C8 = _C
S0, S1, S2, S3, S4, S5, S6, S7, S8 = _S


def philox4x32_10(c0, c1, c2, c3, k0, k1):  # type: ignore[no-untyped-def]
    """The four output words of counter ``(c0, c1, c2, c3)`` under key ``(k0, k1)``.

    Arguments and results are 32-bit words held in ``uint64`` (arrays or numba scalars).
    """
    for _ in range(10):
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> SHIFT32) ^ c1 ^ k0, p1 & MASK32,
                          (p0 >> SHIFT32) ^ c3 ^ k1, p0 & MASK32)
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def uniform24(word):  # type: ignore[no-untyped-def]
    """The top 24 bits of a word as a float in [0, 1): exact in float32."""
    return (word >> SHIFT8) * INV_TWO_POW_24


def uniform53(high, low):  # type: ignore[no-untyped-def]
    """27 bits of ``high`` and 26 of ``low`` as a float64 in [0, 1): exact, 2**-53 apart."""
    return ((high >> SHIFT5) * TWO_POW_26 + (low >> SHIFT6)) * INV_TWO_POW_53


def bounded32(word, span):  # type: ignore[no-untyped-def]
    """``floor(word * span / 2**32)``: a word mapped onto ``[0, span)`` for ``span <= 2**32``
    (multiply-shift; each value is hit by floor or ceil of 2**32/span words)."""
    return (word * span) >> SHIFT32


def sincos_turns(u):  # type: ignore[no-untyped-def]
    """``(cos(2 pi u), sin(2 pi u))`` for float64 ``u`` in [0, 1), by exact reduction to the
    nearest quarter turn and Taylor polynomials on [-pi/4, pi/4]. Selects are products with
    booleans, so the same arithmetic runs on arrays and on scalars."""
    q = np.floor(4.0 * u + 0.5)  # nearest quarter turn, 0..4; 4u and f below are exact
    x = TWO_PI * (u - 0.25 * q)
    z = x * x
    c = C8
    s = S8
    for c_k, s_k in ((C7, S7), (C6, S6), (C5, S5), (C4, S4), (C3, S3), (C2, S2), (C1, S1),
                     (C0, S0)):
        c = c_k + z * c
        s = s_k + z * s
    s = x * s
    m = q - 4.0 * np.floor(0.25 * q)  # the quadrant, 0..3
    m0, m1, m2, m3 = m == 0.0, m == 1.0, m == 2.0, m == 3.0
    return m0 * c - m1 * s - m2 * c + m3 * s, m0 * s + m1 * c - m2 * s - m3 * c
