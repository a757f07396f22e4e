"""Every registry op, forward and gradient, on "numba" against the "numpy" oracle.

All samples of all ops go into one graph per dtype (symbols renamed per sample so that they
stay independent), compiled once: compile time, not arithmetic, dominates these tests. Each
function is called with the sample sizes, with every symbolic axis doubled, and with every
symbolic axis cut to 1 and to 0, so the same compiled code must serve new bindings. At size 0
a max or argmax over a symbolic axis has no value: both backends must refuse it alike, and the
other samples are compared with those kept at their sizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import REGISTRY, apply
from graphcomp.ops.reductions import NO_IDENTITY
from graphcomp.ops.sources import SOURCE_OPS

DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-5, "float64": 1e-10}
OPS = sorted(set(REGISTRY) - SOURCE_OPS)


def _rename(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):  # a symbol, or a product of symbols such as "N*3"
        return "*".join(mapping.get(part, part) for part in value.split("*"))
    if isinstance(value, tuple):
        return tuple(_rename(v, mapping) for v in value)
    return value


def _cases(dtype: str) -> list[tuple[str, int, Any]]:
    rng = np.random.default_rng(7)
    cases = []
    for name in OPS:
        samples = REGISTRY[name].samples
        for k, sample in enumerate(samples(rng, np.dtype(dtype)) if samples else []):
            cases.append((name, k, sample))
    return cases


def _cut(array: np.ndarray, axes: dict[int, str], size: int) -> np.ndarray:
    return array[tuple(slice(0, size) if a in axes else slice(None) for a in range(array.ndim))]


def _reduces_a_symbol(name: str, attrs: dict, axes: dict[int, str]) -> bool:
    """Whether a sample of a no-identity reduction reduces one of its symbolic axes."""
    if name not in NO_IDENTITY:
        return False
    reduced = attrs["axes"] if name == "reduce_max" else (attrs["axis"],)
    return any(a in axes for a in reduced)


class Suite:
    """One graph holding every sample's op (and gradient), compiled on both backends."""

    def __init__(self, dtype: str) -> None:
        self.entries: list[tuple[str, int, int, bool]] = []  # op, sample, first output, grads
        self.feeds: list[np.ndarray] = []
        self.doubled: list[np.ndarray] = []
        self.ones: list[np.ndarray] = []
        self.zeros: list[np.ndarray] = []  # size 0 where the sample allows it
        self.all_zeros: list[np.ndarray] = []
        placeholders = []
        outputs = []
        rng = np.random.default_rng(11)
        with gc.Graph(name=f"registry_{dtype}"):
            for case_index, (name, k, sample) in enumerate(_cases(dtype)):
                symbolic = sample.symbolic or tuple({} for _ in sample.args)
                mapping = {s: f"{s}_{case_index}" for axes in symbolic for s in axes.values()}
                args = []
                for arg, axes in zip(sample.args, symbolic, strict=True):
                    shape = tuple(mapping[axes[a]] if a in axes else d
                                  for a, d in enumerate(arg.shape))
                    node = gc.placeholder(shape, arg.dtype)
                    placeholders.append(node)
                    args.append(node)
                    self.feeds.append(arg)
                    doubled = arg
                    for axis in axes:
                        doubled = np.concatenate([doubled, doubled], axis=axis)
                    self.doubled.append(doubled)
                    self.ones.append(_cut(arg, axes, 1))
                    self.all_zeros.append(_cut(arg, axes, 0))
                    empty_max = _reduces_a_symbol(name, sample.attrs, symbolic[0])
                    self.zeros.append(arg if empty_max else _cut(arg, axes, 0))
                attrs = {key: _rename(v, mapping) for key, v in sample.attrs.items()}
                out = apply(name, *args, **attrs)
                first = len(outputs)
                outputs.append(out)
                op = REGISTRY[name]
                wrt = [a for a in args if a.dtype.kind == "f"]
                with_grads = op.differentiable and sample.smooth and out.dtype.kind == "f" and wrt
                if with_grads:
                    weight = gc.constant(rng.standard_normal(out.shape if all(
                        isinstance(d, int) for d in out.shape) else ()).astype(out.dtype))
                    loss = gc.sum(out * weight)
                    outputs.extend(gc.grad(loss, wrt))
                self.entries.append((name, k, first, bool(with_grads)))
        self.oracle = gc.compile(placeholders, outputs, backend="numpy")
        # float32: the direct conv kernels, which sum the filter gradient in float64 as the
        # oracle does; im2col's BLAS product sums it in float32 (seen 7.6e-5 relative on a
        # cancelling sample), checked at its own tolerance in test_numba_conv_im2col.py.
        conv = "auto" if dtype == "float64" else "direct"
        self.numba = gc.compile(placeholders, outputs, backend="numba", conv=conv)
        self.results = {}
        for label, feeds in (("first", self.feeds), ("doubled", self.doubled),
                             ("size 1", self.ones), ("size 0", self.zeros)):
            self.results[label] = (self.oracle(*feeds), self.numba(*feeds))
        self.count = len(outputs)


@pytest.fixture(scope="module", params=DTYPES)
def suite(request: pytest.FixtureRequest) -> Suite:
    return Suite(request.param)


def _compare(expected: np.ndarray, actual: np.ndarray, dtype: str, what: str) -> None:
    assert actual.shape == expected.shape, what
    assert actual.dtype == expected.dtype, what
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-2,
                                   err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


@pytest.mark.parametrize("op_name", OPS)
def test_op_matches_numpy_forward_and_gradient(suite: Suite, op_name: str) -> None:
    dtype = "float32" if "float32" in suite.numba.program.graph.name else "float64"
    entries = [e for e in suite.entries if e[0] == op_name]
    assert entries, f"{op_name} has no samples"
    for label, (expected, actual) in suite.results.items():
        for index, (name, k, first, _) in enumerate(suite.entries):
            if name != op_name:
                continue
            last = suite.entries[index + 1][2] if index + 1 < len(suite.entries) else suite.count
            for position in range(first, last):
                what = f"{op_name} sample {k} output {position - first} ({label} call)"
                _compare(expected[position], actual[position], dtype, what)


def test_every_output_was_compiled_into_one_driver(suite: Suite) -> None:
    assert suite.numba.source is not None and "def step(" in suite.numba.source
    # Structurally equal kernels are emitted once.
    assert suite.numba.source.count("\ndef k") < suite.count


def test_a_max_over_an_empty_axis_is_refused_alike(suite: Suite) -> None:
    with pytest.raises(gc.InputError, match="an empty axis has no") as expected:
        suite.oracle(*suite.all_zeros)
    with pytest.raises(gc.InputError, match="an empty axis has no") as actual:
        suite.numba(*suite.all_zeros)
    assert str(actual.value) == str(expected.value)
