"""The modules of a compiled function: a driver module and the library modules it imports.

Each distinct kernel and helper is a cached module of its own, named by the hash of its text
(docs/architecture.md, "Module layout of generated code"): a model's evaluation function
finds its training step's kernels compiled, and a changed callee renames its importers.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba import render
from graphcomp.backends.numba.backend import prepare
from graphcomp.backends.numba.codegen import generate
from graphcomp.runtime.program import build_program
from graphcomp.testing import library_modules, uses_native_driver

RNG = np.random.default_rng(3)
X = RNG.normal(size=(6, 4))


def _model() -> tuple[gc.Tensor, gc.Tensor, list]:
    x = gc.placeholder((None, 4), "float64", name="x")
    w = gc.parameter(RNG.normal(size=(4, 3)) * 0.5, name="w")
    loss = gc.mean(gc.tanh(x @ w) * gc.exp(x @ w))
    return x, loss, [w]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHCOMP_CACHE_DIR", str(tmp_path / "cache"))


def test_an_evaluation_function_shares_the_training_step_s_kernels(fresh_cache):
    from graphcomp.train.examples import mlp

    labels = RNG.integers(0, 3, 6)
    with gc.Graph():
        model = mlp((4, 8, 3), dtype="float64")
        grads = gc.grad(model.loss, model.params)
        updates = [(p, p - 0.1 * g) for p, g in zip(model.params, grads, strict=True)]
        outputs = [model.loss, model.accuracy]
        step = gc.compile([model.x, model.y], outputs, updates=updates, backend="numba")
        evaluate = gc.compile([model.x, model.y], outputs, backend="numba")
        reference = gc.compile([model.x, model.y], outputs, backend="numpy")
    shared = set(library_modules(step)) & set(library_modules(evaluate))
    assert sum("def kernel(" in text for text in shared) >= 1
    assert not uses_native_driver(evaluate)  # computes no gradient: no relinking
    np.testing.assert_allclose(evaluate(X, labels), reference(X, labels), rtol=1e-12)
    step(X, labels)
    np.testing.assert_allclose(evaluate(X, labels), reference(X, labels), rtol=1e-12)


def test_a_changed_callee_changes_the_text_of_every_module_importing_it(monkeypatch):
    # numba keys a cached function by its own file: an importer that kept its name after its
    # callee changed would run code compiled against the old callee.
    with gc.Graph():
        x, loss, _ = _model()
    program = build_program([x], [loss])
    before = generate(*prepare(program))
    original = render.fastmath_source
    monkeypatch.setattr(render, "fastmath_source", lambda: original() + "\n# changed\n")
    after = generate(*prepare(program))
    kernels_before = {t for t in before.libraries if "tanh_f64" in t and "def kernel(" in t}
    kernels_after = {t for t in after.libraries if "tanh_f64" in t and "def kernel(" in t}
    assert kernels_before and kernels_after and not kernels_before & kernels_after
    assert before.source != after.source


def test_a_kernel_module_holds_no_node_ids():
    # The same kernel in two graphs (other node ids) is one module.
    texts = []
    for extra in (0, 5):
        with gc.Graph():
            for _ in range(extra):
                gc.placeholder((2,), "float64")
            x, loss, _ = _model()
        texts.append({t for t in generate(*prepare(build_program([x], [loss]))).libraries
                      if "def kernel(" in t})
    assert texts[0] == texts[1]


def test_a_gather_of_ids_of_two_ranks_compiles_one_specialisation():
    """take's ids and rows are passed flat: ids [N] and [N, 3] call one compiled kernel."""
    from graphcomp.testing import module_globals

    with gc.Graph():
        table = gc.parameter(RNG.normal(size=(10, 4)), name="table")
        single = gc.placeholder((None,), "int64", name="single")
        windows = gc.placeholder((None, 3), "int64", name="windows")
        loss = gc.sum(gc.take(table, single, axis=0)) + gc.sum(gc.take(table, windows, axis=0))
        step = gc.compile([single, windows], loss, backend="numba", driver_jit=False)
        reference = gc.compile([single, windows], loss, backend="numpy")
    ids, grouped = np.array([1, -2, 3]), np.array([[0, 9, 9], [4, 5, 1], [2, 2, 7]])
    np.testing.assert_allclose(step(ids, grouped), reference(ids, grouped), rtol=1e-12)
    # Kernel modules are shared by every function of the process (other tests add their own
    # dtypes): count the specialisations for this table, float64 [rows, 4].
    kernels = [k for k in module_globals(step).values() if hasattr(k, "signatures")]
    assert kernels, "the driver's namespace holds its kernels"
    for kernel in kernels:
        mine = [s for s in kernel.signatures if str(s[0]) == "array(float64, 2d, C)"]
        assert len(mine) <= 1, kernel.signatures
    assert sum(len(k.signatures) for k in kernels) >= 1
