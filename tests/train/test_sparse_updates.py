"""Row-wise updates of gathered tables: sparse SGD against dense SGD (bit for bit), LazyAdam
against a numpy reference, numba against numpy, and no table-sized buffer in the numba step."""

import re

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.numba.backend import prepare
from graphcomp.backends.numba.kernels import PREFETCH_AHEAD
from graphcomp.backends.numba.placement import choose_driver, known_work
from graphcomp.ops import apply
from graphcomp.runtime.program import build_program

VOCAB, DIM = 12, 3
# Repeated ids (3 three times), a negative one (-1 is row 11) and rows never touched.
ID_BATCHES = [np.array([[3, 0], [3, -1], [5, 3]]), np.array([[7, 7], [0, 11], [2, 2]]),
              np.array([[3, 3], [3, 3], [1, 4]])]
BACKENDS = ["numpy", "numba"]


def _table(dtype="float64"):
    return np.random.default_rng(0).standard_normal((VOCAB, DIM)).astype(dtype)


def _embedding_step(optimizer, backend, dtype="float64", extra_output=False):
    """A tiny model whose only parameter is gathered once: loss = sum(tanh(rows) * weights)."""
    with gc.Graph():
        ids = gc.placeholder((None, 2), "int64", name="ids")
        table = gc.parameter(_table(dtype), name="table")
        weights = gc.constant(np.linspace(-1.0, 2.0, DIM).astype(dtype))
        rows = gc.take(table, ids, axis=0)
        loss = gc.sum(gc.tanh(rows) * weights)
        updates = optimizer.updates(loss, [table])
        outputs = [loss, table * 1.0] if extra_output else [loss]
        step = gc.compile([ids], outputs, updates=updates, backend=backend)
    return step, table, updates


def _train(optimizer, backend, dtype="float64", extra_output=False):
    step, table, updates = _embedding_step(optimizer, backend, dtype, extra_output)
    for ids in ID_BATCHES:
        step(ids)
    return table.value, updates


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sparse_sgd_equals_dense_sgd_bit_for_bit(backend, dtype):
    sparse, updates = _train(gc.optim.SGD(lr=0.3), backend, dtype)
    dense, dense_updates = _train(gc.optim.SGD(lr=0.3, sparse=False), backend, dtype)
    assert updates[0][1].node.op == "sparse_sgd"
    assert dense_updates[0][1].node.op == "subtract"
    np.testing.assert_array_equal(sparse, dense)
    untouched = [6, 8, 9, 10]
    np.testing.assert_array_equal(sparse[untouched], _table(dtype)[untouched])


def test_sgd_with_momentum_or_weight_decay_stays_dense():
    for optimizer in (gc.optim.SGD(lr=0.1, momentum=0.9), gc.optim.SGD(lr=0.1, weight_decay=0.1)):
        _, _, updates = _embedding_step(optimizer, "numpy")
        assert updates[0][1].node.op != "sparse_sgd"


def _tanh_rows_grad(table, ids, weights):
    """The loss's gradient with respect to each gathered row (the test model's)."""
    return (1.0 - np.tanh(table[ids]) ** 2) * weights


def reference_lazy_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    """LazyAdam's documented rule, written with numpy: moments and rows move only where the
    batch's ids touch; the bias corrections use the global step count."""
    table = _table()
    m, v = np.zeros_like(table), np.zeros_like(table)
    weights = np.linspace(-1.0, 2.0, DIM)
    for t, ids in enumerate(ID_BATCHES, start=1):
        keys = np.where(ids < 0, ids + VOCAB, ids).ravel()
        grad_rows = _tanh_rows_grad(table, keys, weights)
        touched = np.unique(keys)
        g = np.zeros_like(table)
        np.add.at(g, keys, grad_rows)
        m[touched] = b1 * m[touched] + (1 - b1) * g[touched]
        v[touched] = b2 * v[touched] + (1 - b2) * g[touched] ** 2
        m_hat, v_hat = m[touched] / (1 - b1**t), v[touched] / (1 - b2**t)
        table[touched] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return table


@pytest.mark.parametrize("backend", BACKENDS)
def test_lazy_adam_matches_numpy_reference(backend):
    result, updates = _train(gc.optim.LazyAdam(lr=0.05), backend)
    assert updates[0][1].node.op == "sparse_adam_step"
    np.testing.assert_allclose(result, reference_lazy_adam(0.05), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_fuses_lazy_adam_and_equals_numpy_bit_for_bit(dtype):
    # One kernel per table groups the ids once and writes both moments and the table
    # (sparse_kernels.fuse_lazy_adam), with the roundings of the three separate updates.
    step, _, _ = _embedding_step(gc.optim.LazyAdam(lr=0.05), "numba", dtype)
    fused = [line for line in step.source.splitlines() if re.search(
        r"k\d+\(.*# %\d+ sparse_moment, %\d+ sparse_moment, %\d+ sparse_adam_step$", line)]
    assert len(fused) == 1, step.source
    results = [_train(gc.optim.LazyAdam(lr=0.05), backend, dtype)[0] for backend in BACKENDS]
    np.testing.assert_array_equal(*results)


def test_lazy_adam_equals_adam_when_every_row_is_touched():
    ids = np.arange(VOCAB).reshape(-1, 2)
    results = []
    for optimizer in (gc.optim.LazyAdam(lr=0.05), gc.optim.Adam(lr=0.05)):
        step, table, _ = _embedding_step(optimizer, "numpy")
        for _ in range(3):
            step(ids)
        results.append(table.value)
    np.testing.assert_array_equal(*results)


def test_lazy_adam_falls_back_to_adam_for_dense_gradients():
    with gc.Graph():
        x = gc.placeholder((None, 2), "float64", name="x")
        w = gc.parameter(np.ones(2), name="w")
        loss = gc.mean(gc.square(x @ w))
        opt = gc.optim.LazyAdam(lr=0.1)
        updates = opt.updates(loss, [w])
    assert updates[0][1].node.op == "subtract"


@pytest.mark.parametrize("optimizer", [lambda: gc.optim.SGD(lr=0.3),
                                       lambda: gc.optim.LazyAdam(lr=0.05)])
def test_numba_equals_numpy_when_the_table_is_also_an_output(optimizer):
    # The table read by an output after the update: the kernel cannot write in place and
    # copies the table first; results must not change.
    results = [_train(optimizer(), backend, extra_output=True)[0] for backend in BACKENDS]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-14)


def _numba_memory(vocab):
    with gc.Graph():
        ids = gc.placeholder((None, 2), "int64", name="ids")
        table = gc.parameter(np.zeros((vocab, 4), "float32"), name="table")
        context = gc.parameter(np.zeros((vocab, 4), "float32"), name="context")
        rows = gc.take(table, ids[:, 0], axis=0) * gc.take(context, ids[:, 1], axis=0)
        loss = gc.mean(gc.softplus(-gc.sum(rows, axis=-1)))
        opt = gc.optim.LazyAdam(lr=0.01)
        step = gc.compile([ids], loss, updates=opt.updates(loss, [table, context]),
                          backend="numba")
    step(np.array([[1, 2], [2, 2], [vocab - 1, 0]]))
    executable = step._executable
    return executable.lp, executable.memory, step.source


def test_numba_step_allocates_nothing_of_the_tables_size():
    lp, memory, source = _numba_memory(vocab=5000)
    sizes = [slot.size[0] for slot in memory.slots if not slot.size[1]]
    assert sizes and max(sizes) < 5000, sizes
    # Nor do the kernels: their scratch (the ids' hash table and chains, a row of sums)
    # follows the ids and the row length, never the table's rows (``size``).
    allocations = re.findall(r"np\.(?:empty|full|zeros)\((.*)", source)
    assert any("bits" in a for a in allocations)
    assert not [a for a in allocations if re.search(r"\bsize\b", a)], allocations
    # Every table and moment is updated in place by its row-wise kernel.
    in_place_ops = sorted(lp.ops[value].op for value in memory.in_place)
    assert in_place_ops.count("sparse_moment") == 4
    assert in_place_ops.count("sparse_adam_step") == 2


def _planned_embedding_step(vocab, optimizer=None):
    with gc.Graph():
        ids = gc.placeholder((64,), "int64", name="ids")
        table = gc.parameter(np.zeros((vocab, 4), "float32"), name="table")
        loss = gc.sum(gc.tanh(gc.take(table, ids, axis=0)))
        updates = (optimizer or gc.optim.SGD(lr=0.1)).updates(loss, [table])
        program = build_program([ids], [loss], updates)
    lp, plan, memory = prepare(program)
    assert {"sparse_sgd", "sparse_adam_step"} & {lp.ops[v].op for v in memory.in_place}
    return lp, plan, memory


def _work_of_embedding_step(vocab):
    lp, plan, memory = _planned_embedding_step(vocab)
    return known_work(lp, plan, memory.in_place), known_work(lp, plan)


def test_the_step_driver_does_not_depend_on_the_tables_size():
    # A row update in place counts the rows it touches; the njit/Python driver choice
    # (placement.choose_driver) then does not flip with the vocabulary.
    small, large = _work_of_embedding_step(50), _work_of_embedding_step(50_000)
    assert small[0] == large[0] < 64 * 4 * 10
    assert large[1] >= 50_000 * 4 > small[1]  # counting the table (not in place) would


def test_a_step_with_lazy_adam_row_updates_gets_a_python_driver():
    # Its three update kernels per table are long to compile, and an njit driver would
    # compile them again; a short step with SGD's row updates keeps its njit driver.
    lp, plan, memory = _planned_embedding_step(50, gc.optim.LazyAdam(lr=0.1))
    assert choose_driver(lp, plan, None, memory.in_place) is False
    assert choose_driver(lp, plan, True, memory.in_place) is True  # unless asked for
    lp, plan, memory = _planned_embedding_step(50)
    assert choose_driver(lp, plan, None, memory.in_place) is True


# Wide rows (a cache line or more: the kernels hint rows ahead) and many ids: hash-table
# probing, long chains of repeated ids, negative ids, ids of the last rows.
WIDE_TABLE = np.random.default_rng(3).standard_normal((40, 20))
WIDE_IDS = np.random.default_rng(4).integers(-40, 40, 300)


def _row_update_outputs(backend):
    with gc.Graph():
        table = gc.placeholder((40, 20), "float64", name="table")
        ids = gc.placeholder((300,), "int64", name="ids")
        rows = gc.placeholder((300, 20), "float64", name="rows")
        scalar = gc.constant(np.float64(0.3))
        outputs = [gc.take(table, ids, axis=0), apply("sparse_sgd", table, ids, rows, scalar),
                   apply("sparse_moment", table, ids, rows, beta=0.9, power=2),
                   apply("sparse_adam_step", table, table * table, table * table + 1.0, ids,
                         scalar, scalar, scalar, eps=1e-8)]
        return gc.compile([table, ids, rows], outputs, backend=backend)


@pytest.fixture(scope="module")
def row_update_functions():
    return {backend: _row_update_outputs(backend) for backend in BACKENDS}


def test_wide_row_gathers_and_updates_match_numpy(row_update_functions):
    rows = np.random.default_rng(5).standard_normal((300, 20))
    got, want = (row_update_functions[b](WIDE_TABLE, WIDE_IDS, rows) for b in ("numba", "numpy"))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert "prefetch(" in row_update_functions["numba"].source


def test_a_bad_id_within_the_prefetch_distance_still_raises(row_update_functions):
    ids = WIDE_IDS.copy()
    ids[PREFETCH_AHEAD + 2] = 40  # hinted while earlier rows are copied, then checked
    with pytest.raises(gc.InputError, match="out of range"):
        row_update_functions["numba"](WIDE_TABLE, ids, np.zeros((300, 20)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_update_refuses_an_id_out_of_range(backend):
    with gc.Graph():
        table = gc.placeholder((4, 2), "float64", name="table")
        ids = gc.placeholder((None,), "int64", name="ids")
        rows = gc.placeholder((None, 2), "float64", name="rows")
        new = apply("sparse_sgd", table, ids, rows, gc.constant(np.float64(0.5)))
        f = gc.compile([table, ids, rows], new, backend=backend)
    good = f(np.zeros((4, 2)), np.array([1, -4]), np.ones((2, 2)))
    np.testing.assert_array_equal(good, [[-0.5, -0.5], [-0.5, -0.5], [0, 0], [0, 0]])
    with pytest.raises(gc.InputError, match="out of range"):
        f(np.zeros((4, 2)), np.array([1, 4]), np.ones((2, 2)))
