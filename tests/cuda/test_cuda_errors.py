"""backend='cuda' where it cannot run says what is missing and how to simulate; the op table
accounts for every registry op. These tests need no numba-cuda."""

from __future__ import annotations

import subprocess
import sys

import pytest

import graphcomp as gc
from graphcomp.backends.cuda import device
from graphcomp.backends.cuda.op_table import HOST_FALLBACK, coverage


def _compile() -> None:
    x = gc.placeholder((3,), "float64", name="x")
    gc.compile([x], gc.exp(x), backend="cuda")


def test_without_numba_cuda_the_error_names_the_package_and_the_simulator(monkeypatch) -> None:
    monkeypatch.setattr(device, "numba_cuda_installed", lambda: False)
    with pytest.raises(gc.CompileError, match=r"numba-cuda.*not installed.*NUMBA_ENABLE_CUDASIM"):
        _compile()


@pytest.mark.needs_numba_cuda
def test_without_a_gpu_the_error_says_so(monkeypatch) -> None:
    from numba import cuda

    monkeypatch.setattr(device, "simulator_requested", lambda: False)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(gc.CompileError, match=r"no usable CUDA driver or GPU.*CUDASIM"):
        _compile()


def test_every_registry_op_has_a_kernel_or_a_documented_fallback() -> None:
    found = coverage()
    assert not [name for name, how in found.items() if how == "missing"]
    assert all(HOST_FALLBACK[name] for name, how in found.items() if how == "host")
    assert found["tanh"] == found["reduce_sum"] == found["matmul"] == "device"


def test_importing_graphcomp_imports_no_cuda_code() -> None:
    code = ("import sys, graphcomp, graphcomp.backends.cuda.device; "
            "print(any(m.startswith(('numba', 'numba_cuda')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_cuda_backend_is_registered() -> None:
    from graphcomp.backends.base import available_backends

    assert "cuda" in available_backends()


def test_cublas_is_chosen_only_on_a_real_device(monkeypatch) -> None:
    monkeypatch.setattr(device, "simulator_requested", lambda: True)
    assert device.gemm_library() is None  # the simulator runs the tiled kernel
    monkeypatch.setattr(device, "simulator_requested", lambda: False)
    monkeypatch.setenv("GRAPHCOMP_CUDA_GEMM", "tiled")
    assert device.gemm_library() is None  # asked for the tiled kernel
    monkeypatch.delenv("GRAPHCOMP_CUDA_GEMM")
    monkeypatch.setattr(device.importlib.util, "find_spec",
                        lambda name: None if name == "cupy" else object())
    assert device.gemm_library() is None  # no CuPy


class _Described:
    """An object that describes device memory the way CuPy or PyTorch arrays do."""

    def __init__(self, shape, typestr, strides=None) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "strides": strides,
                                         "data": (0, False), "version": 3}


def test_device_array_arguments_are_checked_not_converted() -> None:
    from graphcomp.runtime.binding import DeviceArgument, check_inputs

    with gc.Graph():
        x = gc.placeholder((None, 3), "float32", name="x")
    nodes, dims = [x.node], x.graph.dims
    arrays, binding = check_inputs(nodes, [_Described((4, 3), "<f4")], dims, device_arrays=True)
    assert isinstance(arrays[0], DeviceArgument) and list(binding.values()) == [4]
    assert arrays[0].shape == (4, 3) and arrays[0].ndim == 2
    check_inputs(nodes, [_Described((4, 3), "<f4", (12, 4))], dims, device_arrays=True)
    with pytest.raises(gc.InputError, match="C-contiguous"):
        check_inputs(nodes, [_Described((4, 3), "<f4", (4, 16))], dims, device_arrays=True)
    with pytest.raises(gc.InputError, match="device array of dtype float64"):
        check_inputs(nodes, [_Described((4, 3), "<f8")], dims, device_arrays=True)
    with pytest.raises(gc.InputError, match="axis 1 must be 3"):
        check_inputs(nodes, [_Described((4, 2), "<f4")], dims, device_arrays=True)


def test_device_outputs_need_a_backend_with_a_device() -> None:
    with gc.Graph():
        x = gc.placeholder((3,), "float64", name="x")
        for backend in ("numpy", "numba"):
            with pytest.raises(gc.CompileError, match=rf"copy_outputs='device'.*{backend!r}"):
                gc.compile([x], gc.exp(x), backend=backend, copy_outputs="device")
        with pytest.raises(gc.CompileError, match="True, False or 'device'"):
            gc.compile([x], gc.exp(x), backend="numpy", copy_outputs="host")


def test_the_train_command_without_numba_cuda_says_so_in_one_line(monkeypatch, capsys) -> None:
    from graphcomp import cli

    monkeypatch.setattr(device, "numba_cuda_installed", lambda: False)
    status = cli.main(["train", "mlp-digits", "--backend", "cuda", "--epochs", "1",
                       "--no-progress"])
    error = capsys.readouterr().err
    assert status == 1 and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert "numba-cuda package, which is not installed" in error
    assert "NUMBA_ENABLE_CUDASIM=1" in error
