"""Random numbers in the graph: Philox4x32-10 draws whose state the graph owns.

>>> import graphcomp as gc
>>> with gc.Graph(seed=3):
...     x = gc.placeholder((None, 4), "float32", name="x")
...     noisy = x + gc.random.normal(x.shape, "float32", std=0.1)
>>> f = gc.compile([x], noisy, backend="numpy")
>>> a, b = f(x=[[0.0] * 4]), f(x=[[0.0] * 4])
>>> bool((a != b).all())
True

See ``docs/randomness.md``.
"""

from graphcomp.random.distributions import bernoulli, normal, randint, uniform
from graphcomp.random.state import seed, state

__all__ = ["bernoulli", "normal", "randint", "seed", "state", "uniform"]
