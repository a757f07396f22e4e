"""Where a Python-driver step goes: views alone, GEMMs alone, calls with prebuilt arguments.

    python benchmarks/driver_variants/python_driver_parts.py rnn

Records the driver's native calls once (kernels and ``np.dot``, with their argument arrays),
then times: the step as it runs today; the bound step with every call a no-op (its own
Python work: ``bind()`` makes the buffer views once per binding, the step only the views of
its inputs); the recorded calls replayed through the dispatchers and through the compiled
entry points; the products alone (``np.dot`` and the module's ``gemm_*`` kernels, counted
in ``dots``), with 2 and with 1 BLAS thread.

``asis_us`` runs the executable, which lends split products the lane helper (lanes.py); the
recorded and no-op steps pass a disabled lanes array, so their products run whole.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from numba import typeof
from threadpoolctl import threadpool_limits
from workload_module import driver_arguments, generate_module, median_step_us, prepared_step

from graphcomp.backends.numba.backend import NumbaExecutable, _kernel_signature
from graphcomp.backends.numba.cache import load_generated_module, record_compiled


class _NumpyWithDot:
    """Stands in for ``np`` in the generated module, with ``dot`` replaced."""

    def __init__(self, dot) -> None:
        self.dot = dot

    def __getattr__(self, name: str):
        return getattr(np, name)


def main() -> None:
    work = sys.argv[1]
    problem, prepared = prepared_step(work)
    program, lp, _, memory = prepared
    module = generate_module(prepared, driver_jit=False)
    loaded, path = load_generated_module(module.source)
    for name, signatures in module.kernel_signatures.items():
        for types in signatures:
            getattr(loaded, name).compile(_kernel_signature(types))
    record_compiled(path)
    exe = NumbaExecutable(program, lp, memory, module, loaded.bind, 0.0, False)
    inputs = list(problem.inputs)
    exe.run(inputs, {})
    step, args = driver_arguments(exe, inputs)

    namespace = loaded.__dict__
    kernels = {name: namespace[name] for name in module.kernel_signatures}
    calls: list[tuple] = []

    def recording(fn):
        def call(*a):
            calls.append((fn, a))
            return fn(*a)
        return call

    namespace.update({name: recording(k) for name, k in kernels.items()})
    namespace["np"] = _NumpyWithDot(recording(np.dot))
    step(*args)
    entry_calls = [(fn, a) if fn is np.dot
                   else (fn.overloads[tuple(typeof(x) for x in a)].entry_point, a)
                   for fn, a in calls]

    def noop(*a):
        return 0

    namespace.update({name: noop for name in kernels})
    namespace["np"] = _NumpyWithDot(noop)
    products = {np.dot, *[k for name, k in kernels.items() if name.startswith("gemm")]}
    result = {"work": work, "calls": len(calls), "dots": sum(f in products for f, _ in calls)}
    result["views_only_us"] = median_step_us(lambda: step(*args))
    namespace.update(kernels)
    namespace["np"] = np

    def replay(recorded, only_dots=False):
        def run():
            for fn, a in recorded:
                if not only_dots or fn in products:
                    fn(*a)
        return run

    result["asis_us"] = median_step_us(lambda: exe.run(inputs, {}))
    result["prebuilt_dispatch_us"] = median_step_us(replay(calls))
    result["prebuilt_entry_us"] = median_step_us(replay(entry_calls))
    result["dots_only_us"] = median_step_us(replay(calls, only_dots=True))
    with threadpool_limits(limits=1):
        result["dots_only_1thread_us"] = median_step_us(replay(calls, only_dots=True))
        result["asis_1thread_us"] = median_step_us(lambda: exe.run(inputs, {}))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
