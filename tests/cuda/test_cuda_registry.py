"""Every registry op, forward and gradient, on backend='cuda' against the numpy oracle.

Like tests/backends/test_numba_registry.py: every sample of every op (and the gradient of a
weighted sum of it) goes into one graph per dtype, compiled once; called once at the sample
sizes and once with every symbolic axis doubled. Ops without a device kernel run through
the documented host fallback (op_table.HOST_FALLBACK), so this checks that path too.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.cuda.op_table import HOST_FALLBACK
from graphcomp.ops import REGISTRY, apply
from graphcomp.ops.sources import SOURCE_OPS

pytestmark = pytest.mark.needs_numba_cuda
RTOL = {"float32": 1e-5, "float64": 1e-10}
OPS = sorted(set(REGISTRY) - SOURCE_OPS)


def _rename(value, mapping):
    if isinstance(value, str):
        return "*".join(mapping.get(part, part) for part in value.split("*"))
    if isinstance(value, tuple):
        return tuple(_rename(v, mapping) for v in value)
    return value


def _build(dtype: str):
    rng = np.random.default_rng(7)
    weights = np.random.default_rng(11)
    placeholders, outputs, labels, feeds, doubled = [], [], [], [], []
    with gc.Graph(name=f"cuda_registry_{dtype}"):
        for case, name in enumerate(OPS):
            samples = REGISTRY[name].samples
            for k, sample in enumerate(samples(rng, np.dtype(dtype)) if samples else []):
                symbolic = sample.symbolic or tuple({} for _ in sample.args)
                mapping = {s: f"{s}_{case}_{k}" for axes in symbolic for s in axes.values()}
                args = []
                for arg, axes in zip(sample.args, symbolic, strict=True):
                    shape = tuple(mapping[axes[a]] if a in axes else d
                                  for a, d in enumerate(arg.shape))
                    args.append(gc.placeholder(shape, arg.dtype))
                    feeds.append(arg)
                    twice = arg
                    for axis in axes:
                        twice = np.concatenate([twice, twice], axis=axis)
                    doubled.append(twice)
                placeholders += args
                out = apply(name, *args, **{key: _rename(v, mapping)
                                            for key, v in sample.attrs.items()})
                outputs.append(out)
                labels.append(f"{name} sample {k}")
                wrt = [a for a in args if a.dtype.kind == "f"]
                if (REGISTRY[name].differentiable and sample.smooth and out.dtype.kind == "f"
                        and wrt):
                    known = all(isinstance(d, int) for d in out.shape)
                    weight = gc.constant(weights.standard_normal(
                        out.shape if known else ()).astype(out.dtype))
                    grads = gc.grad(gc.sum(out * weight), wrt)
                    outputs += grads
                    labels += [f"{name} sample {k} gradient {i}" for i in range(len(grads))]
        cuda_fn = gc.compile(placeholders, outputs, backend="cuda")
        numpy_fn = gc.compile(placeholders, outputs, backend="numpy")
    return cuda_fn, numpy_fn, labels, feeds, doubled


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_op_matches_numpy_forward_and_gradient(dtype: str) -> None:
    cuda_fn, numpy_fn, labels, feeds, doubled = _build(dtype)
    for call, arrays in (("sample sizes", feeds), ("symbols doubled", doubled)):
        for label, got, want in zip(labels, cuda_fn(*arrays), numpy_fn(*arrays), strict=True):
            what = f"{label} ({call})"
            assert got.shape == want.shape and got.dtype == want.dtype, what
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=RTOL[dtype],
                                           atol=RTOL[dtype] * 1e-2, err_msg=what)
            else:
                np.testing.assert_array_equal(got, want, err_msg=what)
    host = {c.function for c in cuda_fn._executable.host_calls}
    assert host <= set(HOST_FALLBACK)
    assert "matmul" not in {c.function for c in cuda_fn._executable.host_calls
                            if all(cuda_fn._executable.lp.ops[i].ndim == 2
                                   for i in cuda_fn._executable.lp.ops[c.node].inputs)}
