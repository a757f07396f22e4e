"""Parameters and optimizer state stay on the device between steps and are copied back only
when read; inputs may be device arrays and outputs stay on the device (``device_call``, and
the ``Function`` itself with ``copy_outputs="device"``)."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends.cuda import device_call

pytestmark = pytest.mark.needs_numba_cuda


def _adam_step(backend: str):
    rng = np.random.default_rng(2)
    with gc.Graph() as graph:
        x = gc.placeholder((None, 3), "float64", name="x")
        W = gc.parameter(rng.standard_normal((3, 2)), name="W")
        loss = gc.sum(gc.tanh(x @ W) ** 2)
        updates = gc.optim.Adam(0.1).updates(loss, [W])
        step = gc.compile([x], loss, updates=updates, backend=backend)
    return graph, step, W


@pytest.fixture(scope="module")
def steps():
    return _adam_step("cuda"), _adam_step("numpy")


def test_new_values_stay_on_the_device_until_read(steps) -> None:
    (graph, step, W), (_, reference, W_ref) = steps
    store = graph.parameter_values
    xv = np.arange(12.0).reshape(4, 3) / 10
    for _ in range(3):  # the first call takes the checked path, the next ones the fast one
        np.testing.assert_allclose(step(xv), reference(xv), rtol=1e-10)
    executable = step._executable
    updated = executable._updated  # W and Adam's moments and step count
    assert len(updated) >= 3
    assert all(store.deferred_by(sid) is executable for sid in updated)
    stale = store.raw(W.node.id).copy()  # the host array still holds an older value
    assert not np.allclose(stale, W_ref.value)
    np.testing.assert_allclose(W.value, W_ref.value, rtol=1e-10)  # read: fetched
    assert store.deferred_by(W.node.id) is None
    assert all(store.deferred_by(sid) is executable for sid in updated if sid != W.node.id)
    store.fetch_all()
    reference_store = reference.program.graph.parameter_values  # built alike: same ids
    for sid in updated:  # the optimizer state, fetched, equals numpy's
        np.testing.assert_allclose(store[sid], reference_store[sid], rtol=1e-10)


def test_host_writes_and_other_backends_see_the_device_values() -> None:
    with gc.Graph():
        x = gc.placeholder((3,), "float64", name="x")
        w = gc.parameter(np.ones(3), name="w")
        step = gc.compile([x], gc.sum(w * x), updates=[(w, w - 0.5 * x)], backend="cuda")
        on_numpy = gc.compile([x], w * x, backend="numpy")
        on_numba = gc.compile([x], w * x, backend="numba")
    ones = np.ones(3)
    for _ in range(3):
        step(ones)
    np.testing.assert_allclose(on_numba(ones), -0.5)  # the numba fast path fetches first
    for _ in range(2):
        step(ones)
        np.testing.assert_allclose(on_numba(ones), on_numpy(ones))
    np.testing.assert_allclose(on_numpy(ones), -1.5)
    w.assign(np.full(3, 2.0))  # a host write is uploaded before the next step
    assert step(ones) == 6.0
    assert step(ones) == 4.5
    np.testing.assert_allclose(w.value, 1.0)


def test_device_arrays_in_and_out() -> None:
    from numba import cuda

    with gc.Graph():
        x = gc.placeholder((None, 2), "float32", name="x")
        b = gc.parameter(np.array([1.0, -1.0], "float32"), name="b")
        y = gc.exp(x) + b
        outputs = [y, gc.sum(y)]
        step = gc.compile([x], outputs, updates=[(b, b * 2.0)], backend="cuda")
        reference = gc.compile([x], outputs, backend="numpy")
    xv = np.linspace(-1, 1, 6, dtype="float32").reshape(3, 2)
    want = reference(xv)
    on_device = device_call(step)
    got = on_device(cuda.to_device(xv))
    assert got[0].shape == (3, 2) and not isinstance(got[0], np.ndarray)
    np.testing.assert_allclose(got[0].copy_to_host(), want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1].copy_to_host().reshape(()), want[1], rtol=1e-5)
    np.testing.assert_allclose(b.value, [2.0, -2.0])
    host = device_call(step, outputs="numpy")(x=cuda.to_device(xv))
    assert isinstance(host[1], np.ndarray) and host[1].shape == ()
    np.testing.assert_allclose(host[0], np.exp(xv) + [2.0, -2.0], rtol=1e-5)
    via_function = step(cuda.to_device(xv))  # the Function reads a device input too
    np.testing.assert_allclose(via_function[0], np.exp(xv) + [4.0, -4.0], rtol=1e-5)
    with pytest.raises(gc.InputError, match="device array of dtype float64"):
        on_device(cuda.to_device(xv.astype("float64")))
    with pytest.raises(gc.InputError, match="C-contiguous"):
        on_device(cuda.to_device(np.ones((2, 3), "float32")).T)
    with pytest.raises(gc.CompileError, match="backend='cuda'"):
        device_call(reference)


def _two_inputs(copy_outputs):
    with gc.Graph():
        x = gc.placeholder((None, 2), "float32", name="x")
        z = gc.placeholder((None,), "float32", name="z")
        b = gc.parameter(np.array([1.0, -1.0], "float32"), name="b")
        y = x * b + z[:, None]
        step = gc.compile([x, z], [y, gc.sum(y)], updates=[(b, b * 2.0)], backend="cuda",
                          copy_outputs=copy_outputs)
    return step, b


@pytest.fixture(scope="module")
def two_input_steps():
    return _two_inputs(True), _two_inputs("device")


def _no_host_copies(monkeypatch):
    """Fail on any host copy of a caller's device array; record what the backend reads."""
    from graphcomp.backends.cuda import device

    def no_copy(array):
        raise AssertionError("a device argument was copied to the host")

    read = []
    as_device_array = device.as_device_array

    def recording(array):
        read.append(array)
        return as_device_array(array)

    monkeypatch.setattr(device, "copy_to_host", no_copy)
    monkeypatch.setattr(device, "as_device_array", recording)
    return read


def test_a_function_reads_device_arguments_without_a_host_copy(two_input_steps, monkeypatch
                                                               ) -> None:
    from numba import cuda

    (step, b), _ = two_input_steps
    read = _no_host_copies(monkeypatch)
    xv = np.arange(6, dtype="float32").reshape(3, 2)
    zv = np.array([1.0, 2.0, 3.0], "float32")
    x_device, z_device = cuda.to_device(xv), cuda.to_device(zv)
    before = b.value.copy()
    y, total = step(x_device, z=z_device)  # the checked call: positional and keyword
    assert isinstance(y, np.ndarray) and y.shape == (3, 2)
    np.testing.assert_allclose(y, xv * before + zv[:, None])
    np.testing.assert_allclose(total, np.sum(xv * before + zv[:, None]), rtol=1e-6)
    np.testing.assert_allclose(b.value, before * 2.0)
    assert any(a is x_device for a in read) and any(a is z_device for a in read)
    read.clear()
    y = step(x_device, zv)[0]  # a device array and a numpy array together, twice
    y = step(x_device, zv)[0]
    np.testing.assert_allclose(y, xv * before * 4.0 + zv[:, None])
    assert sum(a is x_device for a in read) == 2


def test_a_function_checks_device_arguments(two_input_steps) -> None:
    from numba import cuda

    (step, _), (on_device, _) = two_input_steps
    x, z = cuda.to_device(np.ones((3, 2), "float32")), cuda.to_device(np.ones(3, "float32"))
    for f in (step, on_device):
        with pytest.raises(gc.InputError, match=r"placeholder 'x'.*device array of dtype float64"):
            f(cuda.to_device(np.ones((3, 2))), z)
        with pytest.raises(gc.InputError, match=r"placeholder 'x'.*C-contiguous"):
            f(cuda.to_device(np.ones((2, 3), "float32")).T, z)
        with pytest.raises(gc.InputError, match=r"placeholder 'x'.*axis 1 must be 2"):
            f(cuda.to_device(np.ones((3, 3), "float32")), z)
        with pytest.raises(gc.InputError, match=r"placeholder 'z'.*bound by placeholder 'x'"):
            f(x, cuda.to_device(np.ones(4, "float32")))


def test_device_outputs_from_the_function(two_input_steps, monkeypatch) -> None:
    from numba import cuda

    _, (step, b) = two_input_steps
    read = _no_host_copies(monkeypatch)
    xv = np.arange(6, dtype="float32").reshape(3, 2)
    zv = np.array([1.0, 2.0, 3.0], "float32")
    x_device = cuda.to_device(xv)
    for batch in (3, 2):  # two bindings of the symbolic batch
        before = b.value.copy()
        y, total = step(x_device[:batch], zv[:batch])
        assert not isinstance(y, np.ndarray) and y.shape == (batch, 2)
        want = xv[:batch] * before + zv[:batch, None]
        np.testing.assert_allclose(y.copy_to_host(), want)
        np.testing.assert_allclose(total.copy_to_host().reshape(()), want.sum(), rtol=1e-6)
        store = b.node.graph.parameter_values
        assert store.deferred_by(b.node.id) is step._executable  # not copied back yet
        np.testing.assert_allclose(b.value, before * 2.0)  # fetched when read
    assert [a.shape for a in read] == [(3, 2), (2, 2)]  # the caller's arrays, read in place
