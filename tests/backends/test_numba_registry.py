"""Every registry op, forward and gradient, on "numba" against the "numpy" oracle.

All samples of all ops go into one graph per dtype (symbols renamed per sample so that they
stay independent), compiled once: compile time, not arithmetic, dominates these tests. Each
function is called twice, the second time with every symbolic axis doubled, so the same
compiled code must serve a new binding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import REGISTRY, apply
from graphcomp.ops.sources import SOURCE_OPS

DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-5, "float64": 1e-10}
OPS = sorted(set(REGISTRY) - SOURCE_OPS)


def _rename(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
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


class Suite:
    """One graph holding every sample's op (and gradient), compiled on both backends."""

    def __init__(self, dtype: str) -> None:
        self.entries: list[tuple[str, int, int, bool]] = []  # op, sample, first output, grads
        self.feeds: list[np.ndarray] = []
        self.doubled: list[np.ndarray] = []
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
        self.numba = gc.compile(placeholders, outputs, backend="numba")
        self.results = {}
        for label, feeds in (("first", self.feeds), ("doubled", self.doubled)):
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
