"""Philox4x32-10 against the known-answer vectors of the Random123 distribution (kat_vectors),
on numpy arrays and compiled by numba, and the word-to-number maps."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from graphcomp.ops import philox

# (counter, key, expected output): Random123's kat_vectors, philox4x32 with 10 rounds.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_known_answers_on_numpy_arrays(counter, key, expected):
    words = philox.philox4x32_10(*[np.array([v], np.uint64) for v in (*counter, *key)])
    assert [int(w[0]) for w in words] == list(expected)


def test_known_answers_compiled_by_numba():
    compiled = njit(philox.philox4x32_10)
    for counter, key, expected in KNOWN_ANSWERS:
        words = compiled(*[np.uint64(v) for v in (*counter, *key)])
        assert [int(w) for w in words] == list(expected)


def test_uniform_maps_hit_both_ends_exactly():
    top = np.array([0xFFFFFFFF], np.uint64)
    zero = np.array([0], np.uint64)
    assert philox.uniform24(zero)[0] == 0.0
    assert philox.uniform24(top)[0] == 1.0 - 2.0**-24
    assert np.float32(philox.uniform24(top)[0]) < 1.0
    assert philox.uniform53(top, top)[0] == 1.0 - 2.0**-53


def test_bounded32_splits_the_words_evenly():
    words = np.arange(0, 2**32, 2**20, dtype=np.uint64)  # 4096 evenly spaced words
    counts = np.bincount(philox.bounded32(words, np.uint64(8)).astype(np.int64))
    assert counts.tolist() == [512] * 8


def test_sincos_turns_matches_numpy_to_a_few_1e_16():
    u = np.concatenate([np.linspace(0.0, 1.0, 10001, endpoint=False), [1.0 - 2.0**-53]])
    cos, sin = philox.sincos_turns(u)
    np.testing.assert_allclose(cos, np.cos(2 * np.pi * u), rtol=0, atol=1e-15)
    np.testing.assert_allclose(sin, np.sin(2 * np.pi * u), rtol=0, atol=1e-15)
    cos, sin = philox.sincos_turns(np.array([0.0, 0.25, 0.5, 0.75]))  # exact at quarter turns
    assert cos.tolist() == [1.0, 0.0, -1.0, 0.0]
    assert sin.tolist() == [0.0, 1.0, 0.0, -1.0]
