"""Registry-generated: every differentiable primitive's VJP against central finite differences.

Each op's ``samples`` give the cases (shapes with broadcasting, symbolic dims, inputs away from
kinks). Each case is checked in float64 at first and second order with rtol 1e-6; cases with
symbolic dims run both with static and with symbolic placeholders.
"""

import zlib

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import dtypes
from graphcomp.ops import REGISTRY, Sample, apply
from graphcomp.testing import check_grads

F64 = np.dtype("float64")


def _mentions_symbol(value):
    if isinstance(value, str):
        return True
    if isinstance(value, tuple):
        return any(_mentions_symbol(v) for v in value)
    return False


def _cases():
    for name, op in sorted(REGISTRY.items()):
        if op.kind == "source" or not op.differentiable:
            continue
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        for i, sample in enumerate(op.samples(rng, F64)):
            if not sample.smooth:
                continue  # e.g. a cast to int: nothing to differentiate
            symbolic_attrs = any(_mentions_symbol(v) for v in sample.attrs.values())
            if not symbolic_attrs:
                yield pytest.param(name, sample, False, id=f"{name}-{i}-static")
            if any(sample.symbolic):
                yield pytest.param(name, sample, True, id=f"{name}-{i}-symbolic")


CASES = list(_cases())


def _build(name: str, sample: Sample, symbolic: bool):
    placeholders = []
    for k, arg in enumerate(sample.args):
        names = sample.symbolic[k] if symbolic and k < len(sample.symbolic) else {}
        shape = tuple(names.get(axis, d) for axis, d in enumerate(arg.shape))
        placeholders.append(gc.placeholder(shape, arg.dtype, name=f"arg{k}"))
    out = apply(name, *placeholders, **sample.attrs)
    feed = dict(zip(placeholders, sample.args, strict=True))
    wrt = [p for p in placeholders if dtypes.is_float(p.dtype)]
    return out, wrt, feed


@pytest.mark.parametrize(("name", "sample", "symbolic"), CASES)
@pytest.mark.parametrize("order", [1, 2])
def test_vjp_matches_finite_differences(name, sample, symbolic, order):
    with gc.Graph(name=name):
        out, wrt, feed = _build(name, sample, symbolic)
        assert wrt, f"sample of {name} has no float input to differentiate"
        report = check_grads(out, wrt, feed, rtol=1e-6, atol=1e-7, order=order,
                             raise_on_failure=False)
    assert report.passed, str(report)


def test_every_registry_op_is_differentiable_or_explicitly_not():
    for name, op in REGISTRY.items():
        if op.kind == "source":
            continue
        if op.differentiable:
            assert op.vjp is not None, f"{name} is differentiable but has no VJP rule"
            assert op.samples is not None, f"{name} has no samples for its VJP test"
            smooth = [s for s in op.samples(np.random.default_rng(0), F64) if s.smooth]
            assert smooth, f"{name} has no smooth sample, so its VJP is never checked"
        else:
            assert op.vjp is None, f"{name} is registered non-differentiable but has a VJP"


def test_known_non_differentiable_ops_are_registered_as_such():
    expected = {"argmax", "dim_size", "stop_gradient", "less", "less_equal", "greater",
                "greater_equal", "equal", "not_equal"}
    assert expected <= {n for n, op in REGISTRY.items() if not op.differentiable}


def test_every_differentiable_op_is_covered_by_the_generated_cases():
    covered = {c.values[0] for c in CASES}
    wanted = {n for n, op in REGISTRY.items() if op.kind != "source" and op.differentiable}
    assert covered == wanted
