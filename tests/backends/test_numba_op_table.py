"""The numba op table accounts for every registry op, and only for registry ops.

Registry-driven: an op added to ``graphcomp.ops`` without a line in
``graphcomp/backends/numba/op_table.py`` fails here (and the reverse).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from graphcomp.backends.numba import fastmath
from graphcomp.backends.numba.op_table import (
    FASTMATH_FUNCTIONS,
    OP_TABLE,
    OpKernel,
    register_kernel,
)
from graphcomp.ops import REGISTRY

SUFFIX = {"float32": "f32", "float64": "f64"}
FASTMATH_DEFS = set(re.findall(r"^def (\w+)\(", Path(fastmath.__file__).read_text(), re.M))


def test_every_registered_op_has_an_entry_and_every_entry_an_op():
    assert sorted(set(REGISTRY) - set(OP_TABLE)) == [], "ops the numba backend does not know"
    assert sorted(set(OP_TABLE) - set(REGISTRY)) == [], "table entries for no registered op"


@pytest.mark.parametrize("name", sorted(OP_TABLE))
def test_an_entry_is_a_template_exactly_when_the_op_is_elementwise(name: str):
    entry = OP_TABLE[name]
    assert (entry.kind == "elementwise") == (REGISTRY[name].kind == "elementwise")
    assert bool(entry.template) == (entry.kind == "elementwise")
    assert entry.template or entry.note, f"{name}: say in one line how it runs"


@pytest.mark.parametrize("name", sorted(n for n, e in OP_TABLE.items() if e.fastmath))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_fastmath_helper_exists_in_fastmath_py_for_both_dtypes(name: str, dtype: str):
    helper = OP_TABLE[name].helper(np.dtype(dtype))
    assert helper in FASTMATH_DEFS
    assert helper == f"{OP_TABLE[name].fastmath}_{SUFFIX[dtype]}"


def test_the_fastmath_names_of_the_op_table_are_fastmath_py_s_helpers():
    # op_table keeps the names, so that generating code needs no numba (fastmath.py does)
    assert {key: f.__name__ for key, f in fastmath.FUNCTIONS.items()} == FASTMATH_FUNCTIONS


def test_register_kernel_refuses_a_second_entry_and_an_unregistered_op(
    monkeypatch: pytest.MonkeyPatch,
):
    with pytest.raises(ValueError, match="'tanh' already has a numba kernel"):
        register_kernel("tanh", "np.tanh({0})")
    with pytest.raises(ValueError, match="'no_such_op' is not a registered elementwise op"):
        register_kernel("no_such_op", "{0}")
    monkeypatch.delitem(OP_TABLE, "matmul")
    with pytest.raises(ValueError, match="'matmul' is not a registered elementwise op"):
        register_kernel("matmul", "{0} * {1}")
    assert "no_such_op" not in OP_TABLE and "matmul" not in OP_TABLE


def test_an_entry_names_the_fastmath_helper_its_template_calls():
    with pytest.raises(ValueError, match=r"fastmath\.py has no 'erf' helper"):
        OpKernel("elementwise", "{fastmath}({0})", fastmath="erf")
    with pytest.raises(ValueError, match="calls tanh_f32 by name"):
        OpKernel("elementwise", "tanh_f32({0})")
    with pytest.raises(ValueError, match=re.escape("must call {fastmath}")):
        OpKernel("elementwise", "np.tanh({0})", fastmath="tanh")
    with pytest.raises(ValueError, match="needs a template"):
        OpKernel("elementwise")
    with pytest.raises(ValueError, match="only elementwise entries have a template"):
        OpKernel("loop nest", "{0}")
