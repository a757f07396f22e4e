"""Hypothesis builds random differentiable graphs; gc.grad must agree with finite differences."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphcomp as gc

LEAF_SHAPES = [(2, 3), (3,), (2, 1), ()]

UNARY = {
    "tanh": gc.tanh,
    "sin": gc.sin,
    "sigmoid": gc.sigmoid,
    "exp_tanh": lambda x: gc.exp(gc.tanh(x)),
    "log_1p_sq": lambda x: gc.log1p(x * x),
    "sqrt_1p_sq": lambda x: gc.sqrt(1.0 + x * x),
    "square": gc.square,
    "negative": gc.negative,
    "abs": gc.abs,
    "softplus": gc.softplus,
    "sum_keep": lambda x: gc.sum(x, axis=-1, keepdims=True) if x.ndim else x,
    "mean0": lambda x: gc.mean(x, axis=0) if x.ndim else x,
    "max_last": lambda x: gc.max(x, axis=-1, keepdims=True) if x.ndim else x,
    "transpose": lambda x: x.T,
    "softmax": lambda x: gc.softmax(x, axis=-1) if x.ndim else x,
    "gram": lambda x: x @ x.T if x.ndim else x,
    "slice_last": lambda x: x[..., 1:] if _static_last(x, 2) else x,
    "concat_last": lambda x: gc.concatenate([x, gc.sin(x)], axis=-1) if _static_last(x, 1) else x,
    "take_last": lambda x: gc.take(x, [2, 0, 0], axis=x.ndim - 1) if _static_last(x, 3) else x,
    "pad_last": lambda x: gc.pad(x, [(0, 0)] * (x.ndim - 1) + [(1, 2)]) if x.ndim else x,
    "reshape_flat": lambda x: x.reshape(-1) if all(isinstance(d, int) for d in x.shape) else x,
}

BINARY = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / (1.0 + b * b),
    "power": lambda a, b: (1.0 + a * a) ** gc.tanh(b),
    "maximum": gc.maximum,
    "where": lambda a, b: gc.where(a > b, a * b, a - b),
}


def _static_last(x, at_least):
    return x.ndim > 0 and isinstance(x.shape[-1], int) and x.shape[-1] >= at_least


def _leaves(shapes, symbolic, rng):
    """Placeholders (even positions) and parameters (odd) of the given shapes."""
    pool = []
    for k, shape in enumerate(shapes):
        if k % 2 == 0:
            declared = ("B",) + shape[1:] if symbolic and len(shape) == 2 else shape
            pool.append(gc.placeholder(declared, "float64", name=f"x{k}"))
        else:
            pool.append(gc.parameter(rng.standard_normal(shape), name=f"w{k}"))
    return pool


def _feed(pool, shapes, rng):
    """Values for the placeholders; B takes the size the ops tied it to, else the leaf's own."""
    feed = {}
    for leaf, shape in zip(pool, shapes, strict=False):
        if leaf.op == "placeholder":
            size = [d if isinstance(d, int) else s for d, s in zip(leaf.shape, shape, strict=True)]
            feed[leaf] = rng.standard_normal(size)
    return feed


@st.composite
def random_graph(draw):
    """A recipe: leaf shapes, then (op, operand indices) steps over a growing pool.

    Each step is tried on a scratch copy of the graph being described; a step the shape rules
    refuse (operands that do not broadcast, say) is left out.
    """
    leaves = [draw(st.sampled_from(LEAF_SHAPES)) for _ in range(draw(st.integers(1, 3)))]
    symbolic = draw(st.booleans())
    steps = []
    with gc.Graph(name="scratch"):
        pool = _leaves(leaves, symbolic, np.random.default_rng(0))
        for _ in range(draw(st.integers(1, 6))):
            table = UNARY if draw(st.booleans()) else BINARY
            name = draw(st.sampled_from(sorted(table)))
            arity = 1 if table is UNARY else 2
            args = tuple(draw(st.integers(0, len(pool) - 1)) for _ in range(arity))
            try:
                pool.append(table[name](*[pool[i] for i in args]))
            except gc.ShapeError:
                continue
            steps.append((name, args))
    seed = draw(st.integers(0, 2**31 - 1))
    return leaves, symbolic, steps, seed


@settings(max_examples=100, deadline=None)
@given(random_graph())
def test_random_graph_gradients_match_finite_differences(recipe):
    leaves, symbolic, steps, seed = recipe
    rng = np.random.default_rng(seed)
    with gc.Graph():
        pool = _leaves(leaves, symbolic, rng)
        wrt = list(pool)
        for name, args in steps:
            fn = UNARY.get(name) or BINARY[name]
            pool.append(fn(*[pool[i] for i in args]))
        out = pool[-1]
        feed = _feed(wrt, leaves, rng)
        report = gc.check_grads(out, wrt, feed, rtol=1e-6, atol=1e-7, raise_on_failure=False)
    assert report.passed, f"steps={steps}\n{report}"
