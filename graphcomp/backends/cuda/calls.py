"""``device_call``: a ``backend="cuda"`` function called with device arrays in and out.

A ``Function`` of this backend reads device-array inputs in place too, and returns device
arrays when compiled with ``copy_outputs="device"``. ``device_call(step)`` gives the same
for a function compiled otherwise: inputs are numpy arrays or device arrays
(``__cuda_array_interface__``: numba-cuda, CuPy, PyTorch...; on the simulator, numba-cuda's
simulated arrays), read on the device; outputs are device arrays (views of the function's
device buffers, valid until its next call) or, with ``outputs="numpy"``, fresh host arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from graphcomp.errors import CompileError
from graphcomp.runtime.binding import check_inputs, match_arguments


def device_call(function: Any, outputs: Literal["device", "numpy"] = "device"
                ) -> Callable[..., Any]:
    """A call of ``function`` (compiled with ``backend="cuda"``) that reads device arrays in
    place and returns device arrays (``outputs="device"``) or numpy arrays.

    Parameter updates stay on the device, as with the function's own calls; checks and
    errors are the function's (dtypes must match exactly: a device array is not converted).

    >>> # step = gc.compile([x], loss, updates=..., backend="cuda")
    >>> # run = device_call(step); loss_on_device = run(x_on_device)
    """
    from graphcomp.backends.cuda.backend import CudaExecutable

    executable = getattr(function, "_executable", None)
    if not isinstance(executable, CudaExecutable):
        raise CompileError(f"device_call needs a function compiled with backend='cuda', not "
                           f"{getattr(function, 'backend', type(function).__name__)!r}")
    if outputs not in ("device", "numpy"):
        raise CompileError(f"outputs must be 'device' or 'numpy', not {outputs!r}")
    program = function.program

    def call(*args: Any, **kwargs: Any) -> Any:
        with function._lock:
            values = match_arguments(program.inputs, args, kwargs)
            arrays, binding = check_inputs(program.inputs, values, program.dims,
                                           device_arrays=True)
            results = executable.run_on_device(arrays, binding, host=outputs == "numpy")
        return results[0] if function._single_output else results

    return call
