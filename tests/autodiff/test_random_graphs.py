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


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


@st.composite
def random_graph(draw):
    """A recipe: leaf shapes, then (op, operand indices) steps over a growing pool."""
    n_leaves = draw(st.integers(1, 3))
    leaves = [draw(st.sampled_from(LEAF_SHAPES)) for _ in range(n_leaves)]
    symbolic = draw(st.booleans())
    steps = []
    shapes = list(leaves)
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(UNARY)))
            i = draw(st.integers(0, len(shapes) - 1))
            steps.append((name, (i,)))
        else:
            name = draw(st.sampled_from(sorted(BINARY)))
            i = draw(st.integers(0, len(shapes) - 1))
            j = draw(st.integers(0, len(shapes) - 1))
            if not _broadcastable(shapes[i], shapes[j]):
                continue
            steps.append((name, (i, j)))
        shapes.append(None)  # filled when the graph is built
        shapes[-1] = _shape_after(steps[-1], shapes)
    seed = draw(st.integers(0, 2**31 - 1))
    return leaves, symbolic, steps, seed


def _shape_after(step, shapes):
    name, args = step
    dummy = [np.zeros(shapes[i]) for i in args]
    if name in UNARY:
        x = dummy[0]
        return {
            "sum_keep": lambda: x.sum(-1, keepdims=True).shape if x.ndim else x.shape,
            "max_last": lambda: x.sum(-1, keepdims=True).shape if x.ndim else x.shape,
            "mean0": lambda: x.sum(0).shape if x.ndim else x.shape,
            "transpose": lambda: x.T.shape,
        }.get(name, lambda: x.shape)()
    return np.broadcast_shapes(dummy[0].shape, dummy[1].shape)


@settings(max_examples=100, deadline=None)
@given(random_graph())
def test_random_graph_gradients_match_finite_differences(recipe):
    leaves, symbolic, steps, seed = recipe
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in leaves]
    with gc.Graph():
        pool, feed = [], {}
        for k, (shape, value) in enumerate(zip(leaves, values, strict=True)):
            if k % 2 == 0:
                declared = ("B",) + shape[1:] if symbolic and len(shape) == 2 else shape
                leaf = gc.placeholder(declared, "float64", name=f"x{k}")
                feed[leaf] = value
            else:
                leaf = gc.parameter(value, name=f"w{k}")
            pool.append(leaf)
        wrt = list(pool)
        for name, args in steps:
            fn = UNARY.get(name) or BINARY[name]
            pool.append(fn(*[pool[i] for i in args]))
        out = pool[-1]
        report = gc.check_grads(out, wrt, feed, rtol=1e-6, atol=1e-7, raise_on_failure=False)
    assert report.passed, f"steps={steps}\n{report}"
