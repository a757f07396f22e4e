"""gc.init: shapes, dtypes, scales and reproducibility of the initialisers."""

import math

import numpy as np
import pytest

import graphcomp as gc


def test_glorot_uniform_bounds_and_reproducibility():
    w = gc.init.glorot_uniform((300, 200), seed=0)
    assert w.shape == (300, 200) and w.dtype == np.float32
    limit = math.sqrt(6 / 500)
    assert w.min() >= -limit and w.max() <= limit and w.max() > 0.95 * limit
    np.testing.assert_array_equal(w, gc.init.glorot_uniform((300, 200), seed=0))
    assert not np.array_equal(w, gc.init.glorot_uniform((300, 200), seed=1))


@pytest.mark.parametrize("initializer, shape, std", [
    (gc.init.he_normal, (400, 300), math.sqrt(2 / 400)),
    (gc.init.glorot_normal, (400, 300), math.sqrt(2 / 700)),
    (gc.init.he_normal, (64, 32, 3, 3), math.sqrt(2 / (32 * 9))),
])
def test_normal_initializers_have_the_right_scale(initializer, shape, std):
    w = initializer(shape, seed=0, dtype="float64")
    assert w.shape == shape and w.dtype == np.float64
    assert abs(w.std() / std - 1) < 0.05 and abs(w.mean()) < 0.1 * std


def test_simple_initializers():
    assert gc.init.zeros((2, 3)).sum() == 0 and gc.init.ones((4,), "float64").dtype == np.float64
    w = gc.init.normal((10000,), seed=0, std=0.5, mean=1.0)
    assert abs(w.mean() - 1.0) < 0.02 and abs(w.std() - 0.5) < 0.02
    u = gc.init.uniform((1000,), seed=0, low=2.0, high=3.0)
    assert u.min() >= 2.0 and u.max() < 3.0
    assert gc.init.fans((5,)) == (5, 5) and gc.init.fans((8, 4, 3, 3)) == (36, 72)


def test_generator_seed_and_parameter():
    rng = np.random.default_rng(7)
    a, b = gc.init.he_normal((3, 3), rng), gc.init.he_normal((3, 3), rng)
    assert not np.array_equal(a, b)
    with gc.Graph():
        W1 = gc.parameter(gc.init.glorot_uniform((784, 256), seed=0), name="W1")
    assert W1.shape == (784, 256) and W1.dtype == np.float32
