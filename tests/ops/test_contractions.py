"""einsum, tensordot, dot, inner, kron and cross (graphcomp/ops/contractions.py).

Each case is one expression written once against a module ``m``: run with ``m = numpy`` on
arrays it is the reference, with ``m = graphcomp`` on tensors it builds the graph. Every case
is checked for values (numpy backend), float64 finite-difference gradients and numba equal to
numpy. A ``"B"`` in a shape is a symbolic dim, bound to ``graphcomp.testing.cases.BATCH``
at call time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.testing.cases import Case, check_gradient, check_value, on_both_backends


def _e(subscripts: str) -> Callable:
    return lambda m, *xs: m.einsum(subscripts, *xs)


CASES: dict[str, Case] = {
    "einsum batched matmul": Case(_e("bij,bjk->bik"), ((3, 4, 5), (3, 5, 2))),
    "einsum a b.T": Case(_e("ij,kj->ik"), ((3, 4), (5, 4))),
    "einsum attention": Case(_e("bhqd,bhkd->bhqk"), ((2, 3, 4, 5), (2, 3, 6, 5))),
    "einsum attention, symbolic batch": Case(_e("bhqd,bhkd->bhqk"),
                                             (("B", 2, 4, 3), ("B", 2, 6, 3))),
    "einsum symbolic rows": Case(_e("nij,jk->nik"), (("B", 3, 4), (4, 2))),
    "einsum symbolic summed with others": Case(_e("nij,nij->j"), (("B", 3, 4), ("B", 3, 4))),
    "einsum symbolic summed in a product": Case(_e("nij,njk->ik"), (("B", 3, 4), ("B", 4, 2))),
    "einsum symbolic free with others": Case(_e("nij,jk->kin"), (("B", 3, 4), (4, 2))),
    "einsum matrix-vector": Case(_e("ij,j->i"), ((3, 4), (4,))),
    "einsum several summed": Case(_e("ijk,jkl->li"), ((2, 3, 4), (3, 4, 5))),
    "einsum chain of three": Case(_e("ab,bc,cd->ad"), ((2, 3), (3, 4), (4, 5))),
    "einsum shared by three": Case(_e("ab,ab,b->a"), ((2, 3), (2, 3), (3,))),
    "einsum implicit": Case(_e("ij,jk"), ((2, 3), (3, 4))),
    "einsum implicit order": Case(_e("ba"), ((2, 3),)),
    "einsum transpose": Case(_e("ijk->kij"), ((2, 3, 4),)),
    "einsum sum": Case(_e("ij->"), ((2, 3),)),
    "einsum trace": Case(_e("ii"), ((3, 3),)),
    "einsum diagonal": Case(_e("ii->i"), ((3, 3),)),
    "einsum repeated index in a product": Case(_e("iij,jk->ik"), ((3, 3, 2), (2, 4))),
    "einsum outer": Case(_e("i,j->ij"), ((3,), (4,))),
    "einsum dot": Case(_e("i,i"), ((4,), (4,))),
    "einsum batched dot": Case(_e("bi,bi->b"), ((3, 4), (3, 4))),
    "einsum scalar operand": Case(lambda m, s, x: m.einsum(",i->i", s, x), ((), (3,))),
    "einsum size 1 broadcasts": Case(_e("ij,j->i"), ((3, 1), (4,))),
    "einsum ellipsis": Case(_e("...ij,...jk->...ik"), ((2, 3, 4), (4, 5))),
    "einsum ellipsis broadcasts": Case(_e("...i,...i"), ((2, 3), (4, 1, 3))),
    "einsum ellipsis, symbolic batch": Case(_e("...ij,jk->...ik"), (("B", 2, 3), (3, 4))),
    "einsum index only in one operand": Case(_e("ij,jk->k"), ((2, 3), (3, 4))),
    "tensordot int": Case(lambda m, a, b: m.tensordot(a, b), ((2, 3, 4), (3, 4, 5))),
    "tensordot 0": Case(lambda m, a, b: m.tensordot(a, b, 0), ((2,), (3,))),
    "tensordot pairs": Case(lambda m, a, b: m.tensordot(a, b, axes=([0, 2], [2, 1])),
                            ((2, 3, 4), (5, 4, 2))),
    "tensordot int pair": Case(lambda m, a, b: m.tensordot(a, b, (1, 0)), ((3, 4), (4, 2))),
    "dot 0-d": Case(lambda m, a, b: m.dot(a, b), ((), (2, 3))),
    "dot 1-d": Case(lambda m, a, b: m.dot(a, b), ((4,), (4,))),
    "dot 2-d 1-d": Case(lambda m, a, b: m.dot(a, b), ((3, 4), (4,))),
    "dot 1-d 2-d": Case(lambda m, a, b: m.dot(a, b), ((3,), (3, 4))),
    "dot 2-d": Case(lambda m, a, b: m.dot(a, b), ((3, 4), (4, 2))),
    "dot N-d": Case(lambda m, a, b: m.dot(a, b), ((2, 3, 4), (5, 4, 2))),
    "dot symbolic rows": Case(lambda m, a, b: m.dot(a, b), (("B", 4), (4, 3))),
    "inner 1-d": Case(lambda m, a, b: m.inner(a, b), ((4,), (4,))),
    "inner N-d": Case(lambda m, a, b: m.inner(a, b), ((2, 3, 4), (5, 4))),
    "inner 0-d": Case(lambda m, a, b: m.inner(a, b), ((3,), ())),
    "kron": Case(lambda m, a, b: m.kron(a, b), ((2, 3), (4, 2))),
    "kron ranks differ": Case(lambda m, a, b: m.kron(a, b), ((3,), (2, 2))),
    "cross": Case(lambda m, a, b: m.cross(a, b), ((4, 3), (3,))),
    "cross axis": Case(lambda m, a, b: m.cross(a, b, axis=0), ((3, 2), (3, 2))),
    "cross, symbolic batch": Case(lambda m, a, b: m.cross(a, b), (("B", 3), ("B", 3))),
}


@pytest.fixture(scope="module")
def numba_results() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return on_both_backends(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_matches_numpy(name: str):
    check_value(CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name: str):
    check_gradient(CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_matches_numpy(name: str, numba_results):
    on_numba, on_numpy = numba_results[name]
    np.testing.assert_allclose(on_numba, on_numpy, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("subscripts", ["bij,bjk->bik", "ij,kj->ik", "bhqd,bhkd->bhqk",
                                        "nij,jk->nik"])
def test_contractions_are_one_matmul(subscripts: str):
    shapes = {"bij,bjk->bik": ((None, 4, 5), (None, 5, 2)), "ij,kj->ik": ((3, 4), (5, 4)),
              "bhqd,bhkd->bhqk": ((None, 2, 4, 3), (None, 2, 6, 3)),
              "nij,jk->nik": ((None, 3, 4), (4, 2))}[subscripts]
    with gc.Graph() as g:
        a, b = (gc.placeholder(s, "float32") for s in shapes)
        out = gc.einsum(subscripts, a, b)
        ops = [node.op for node in g.nodes()]
    assert out.dtype == np.float32
    assert ops.count("matmul") == 1
    assert not {"multiply", "reduce_sum"} & set(ops)


def test_integers_stay_integers():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.arange(12, dtype=np.int64).reshape(3, 4)
    with gc.Graph():
        x = gc.placeholder((2, 3), "int64")
        y = gc.placeholder((3, 4), "int64")
        outs = [gc.einsum("ij,jk->ik", x, y), gc.dot(x, y), gc.kron(x, y)]
        f = gc.compile([x, y], outs, backend="numpy")
    for got, want in zip(f(a, b), [np.einsum("ij,jk->ik", a, b), a @ b, np.kron(a, b)],
                         strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("call", "message"), [
    (lambda a, b: gc.einsum("ij,jk", a), "name 2 operands, but 1 were given"),
    (lambda a, b: gc.einsum(a, [0, 1], b, [1, 2]), "subscripts string first"),
    (lambda a, b: gc.einsum("ij"), "at least one operand"),
    (lambda a, b: gc.einsum("ij,j1->i", a, b), "contain '1'"),
    (lambda a, b: gc.einsum("ijk,jk->i", a, b), "has 3 indices for an operand of rank 2"),
    (lambda a, b: gc.einsum("ij,jk->iq", a, b), "output index 'q' .* is in no operand"),
    (lambda a, b: gc.einsum("ij,jk->ii", a, b), "output index 'i' repeated"),
    (lambda a, b: gc.einsum("ij,ij->ij", a, b), "index 'j' has size 3 in operand 0 but 4"),
    (lambda a, b: gc.einsum("...j->j", a), "needs '...' too"),
    (lambda a, b: gc.einsum("...i...", a), "more than one '...'"),
    (lambda a, b: gc.einsum("ii", gc.placeholder((None, None))), "static size on both axes"),
    (lambda a, b: gc.tensordot(a, b, ([1], [1])), "axis 1 of a has size 3 but axis 1 of b"),
    (lambda a, b: gc.tensordot(a, b, 3), "rank >= 3"),
    (lambda a, b: gc.tensordot(a, b, ([0, 1], [0])), "2 axes of a but 1 of b"),
    (lambda a, b: gc.tensordot(a, b, ([1, 1], [0, 0])), "repeated axis"),
    (lambda a, b: gc.dot(a, b[0]), "axis 1 of a has size 3 but axis 0 of b has size 4"),
    (lambda a, b: gc.cross(a, b), "3-vectors, but axis -1 of b has size 4"),
    (lambda a, b: gc.cross(b, b), "axis -1 of a has size 4"),
    (lambda a, b: gc.kron(a, b), "symbolic"),
])
def test_errors_name_what_is_wrong_and_where(call: Callable, message: str):
    with gc.Graph():
        a = gc.placeholder((None, 3), "float64", name="a")
        b = gc.placeholder((3, 4), "float64", name="b")
        with pytest.raises(gc.ShapeError, match=message) as caught:
            call(a, b)
    assert "test_contractions.py" in str(caught.value)
