"""Generated identifiers are short, valid and unique whatever the user named things.

A ~2,000-character parameter name once went into the generated argument names and made LLVM
fail to parse the module (``RuntimeError: LLVM IR parsing error``). Names of any length or
alphabet, Python keywords and names two nodes share must all compile, give the numpy oracle's
results, and leave the user's names untouched where the user sees them (the parameter store).
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.names import MAX_NAME, identifier

AWKWARD = ["w" * 2000, "Gewichte ßäö", "λ", "class", "2nd layer", "W", "W", "", "__", "match"]


def _identifiers(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


def _train_step(backend: str, driver_jit: bool | None = None):
    rng = np.random.default_rng(3)
    with gc.Graph():
        x = gc.placeholder((None, 3), "float64", name="lambda " * 300)
        h = x
        params = []
        for k, name in enumerate(AWKWARD):
            w = gc.parameter(rng.normal(size=(3, 3)) * 0.5, name=name or None)
            params.append(w)
            h = gc.tanh(h @ w) if k % 2 else h @ w
        loss = gc.mean(h * h)
        grads = gc.grad(loss, params)
        options = {} if driver_jit is None else {"driver_jit": driver_jit}
        step = gc.compile([x], [loss], updates=[(p, p - 0.1 * g) for p, g in zip(params, grads,
                                                                              strict=True)],
                          backend=backend, **options)
    return step, params


@pytest.mark.parametrize("driver_jit", [True, False])
def test_awkward_user_names_compile_and_match_the_oracle(driver_jit: bool):
    x = np.random.default_rng(0).normal(size=(5, 3))
    step, params = _train_step("numba", driver_jit)
    oracle, oracle_params = _train_step("numpy")
    for _ in range(3):
        (loss,) = step(x)
        (expected,) = oracle(x)
        np.testing.assert_allclose(loss, expected, rtol=1e-10)
    for p, q in zip(params, oracle_params, strict=True):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-10)
    assert [p.name for p in params][:1] == ["w" * 2000]  # the user's name is kept for the user


def test_every_generated_identifier_is_short_ascii_and_not_a_keyword():
    step, _ = _train_step("numba")
    names = _identifiers(step.source)
    longest = max(names, key=len)
    # MAX_NAME of the user's text, a two-letter prefix and a short uniqueness suffix
    assert len(longest) <= MAX_NAME + 6, longest
    assert all(n.isascii() and n.isidentifier() for n in names)


@pytest.mark.parametrize(("text", "expected"), [
    ("hidden weights/0", "hidden_weights_0"),
    ("class", "class_"),
    ("match", "match_"),
    ("ß∂ƒ", "v"),
    ("2nd", "v2nd"),
    ("w" * 2000, "w" * MAX_NAME),
])
def test_identifier(text: str, expected: str):
    assert identifier(text) == expected
