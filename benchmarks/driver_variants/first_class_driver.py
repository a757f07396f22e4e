"""An njit driver that receives its callees as first-class functions, against the Python driver.

    python benchmarks/driver_variants/first_class_driver.py rnn MODE

MODE: ``python`` (today's Python driver), ``fc_addr`` (njit driver; every distinct
callee/signature is a ``FunctionType`` argument, passed as an object holding the compiled cfunc
wrapper's address), ``fc_optnone`` (the same, driver compiled with ``_dbg_optnone=True``),
``fc_dispatcher`` (the dispatchers themselves passed as the arguments). Set
``GRAPHCOMP_CACHE_DIR`` to a fresh folder and run twice for cold and warm. Prints one JSON line:
``compile_s`` (module load and numba compile, passes excluded), driver cache ``hits``,
``step_us`` (median).

The callee signatures come from one run of the Python driver with recording wrappers; a 2-D
argument written ``x.T`` in the driver is typed F-order (numba types a transpose as F even
where numpy's flags say both). The njit driver is ``bind()`` and its ``step`` closure made one
function (the step's arguments, then bind's); its ``np.dot`` calls become the module's own
``gemm_*`` kernel for the dtype, and split products get a disabled lanes array (whole
products on the calling thread).
"""

from __future__ import annotations

import json
import re
import sys
import time

import numpy as np
from numba import typeof, types
from workload_module import driver_arguments, generate_module, median_step_us, prepared_step

from graphcomp.backends.numba.backend import NumbaExecutable, _kernel_signature
from graphcomp.backends.numba.cache import load_generated_module, record_compiled
from graphcomp.backends.numba.expressions import DTYPE_SUFFIX

CALL = re.compile(r"^(\s+)(k\d+|copy_flat|gemm_\w+|np\.dot)\(")


class _Address:
    """A first-class function argument numba unboxes by asking for its wrapper address."""

    def __init__(self, address: int, function_type: types.FunctionType) -> None:
        self._numba_type_ = function_type
        self.address = address

    def __wrapper_address__(self) -> int:
        return self.address


def _split_arguments(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += (ch in "([") - (ch in ")]")
        current += ch
    return [*parts, current.strip()]


def _recorded_calls(loaded, module, step, args) -> list[tuple[str, tuple]]:
    """(callee name, numba argument types) of every native call of one Python-driver step."""
    namespace = loaded.__dict__
    originals = {name: namespace[name] for name in module.kernel_signatures}
    recorded: list[tuple[str, tuple]] = []

    def recording(name, fn):
        def call(*a):
            recorded.append((name, tuple(typeof(x) for x in a)))
            return fn(*a)
        return call

    def record_dot(a, b, out):
        # The njit driver calls the module's gemm kernel for this dtype instead.
        return recording(f"gemm_{DTYPE_SUFFIX[out.dtype.name]}", np.dot)(a, b, out)

    class NumpyWithDot:
        dot = staticmethod(record_dot)

        def __getattr__(self, name):
            return getattr(np, name)

    namespace.update({name: recording(name, fn) for name, fn in originals.items()})
    namespace["np"] = NumpyWithDot()
    step(*args)
    namespace.update(originals)
    namespace["np"] = np
    return recorded


def _first_class_source(source: str, recorded, optnone: bool) -> tuple[str, dict]:
    """The module with an njit ``step`` taking one function argument per callee signature."""
    lines = _flat_driver(source.splitlines())
    start = next(i for i, line in enumerate(lines) if line.startswith("def step("))
    arguments: dict[tuple, str] = {}
    calls = iter(recorded)
    for i in range(start + 1, len(lines)):
        match = CALL.match(lines[i])
        if not match:
            continue
        name, signature = next(calls)
        assert match.group(2) in (name, "np.dot"), (match.group(2), name)
        code = lines[i].split("  #")[0]
        texts = _split_arguments(code[match.end():code.rindex(")")])
        signature = tuple(
            t.copy(layout="F" if text.endswith(".T") else "C")
            if isinstance(t, types.Array) and t.ndim > 1 else t
            for text, t in zip(texts, signature, strict=True))
        count = sum(1 for other, _ in arguments if other == name)
        argument = arguments.setdefault((name, signature), f"f_{name}_{count}")
        lines[i] = CALL.sub(lambda m, a=argument: f"{m.group(1)}{a}(", lines[i])
    lines[start] = f"{lines[start][:-2]}, {', '.join(arguments.values())}):"
    lines[start - 1] = ("@njit(cache=True, _dbg_optnone=True)" if optnone
                        else "@njit(cache=True)")
    assert next(calls, None) is None
    return "\n".join(lines) + "\n", arguments


def _flat_driver(lines: list[str]) -> list[str]:
    """The module's lines with ``bind()`` and its ``step`` closure as one ``def step`` taking the
    step's parameters, then bind's: bind's views first, then the step's body."""
    bind = next(i for i, line in enumerate(lines) if line.startswith("def bind("))
    inner = next(i for i in range(bind, len(lines)) if lines[i].startswith("    def step("))
    end = next(i for i in range(inner, len(lines)) if lines[i] == "    return step")
    bind_params = lines[bind][len("def bind("):-2]
    step_params = lines[inner][len("    def step("):-2]
    flat = [f"def step({step_params}, {bind_params}):", lines[inner + 1][4:]]
    flat += lines[bind + 2:inner] + [line[4:] for line in lines[inner + 2:end]]
    return lines[:bind] + flat + lines[end + 1:]


def main() -> None:
    work, mode = sys.argv[1], sys.argv[2]
    problem, prepared = prepared_step(work)
    program, lp, _, memory = prepared
    module = generate_module(prepared, driver_jit=False)
    inputs = list(problem.inputs)
    clock = time.perf_counter()
    loaded, path = load_generated_module(module.source)
    for name, signatures in module.kernel_signatures.items():
        for signature in signatures:
            getattr(loaded, name).compile(_kernel_signature(signature))
    record_compiled(path)
    kernel_seconds = time.perf_counter() - clock
    exe = NumbaExecutable(program, lp, memory, module, loaded.bind, kernel_seconds, False)
    if mode == "python":
        compile_s = kernel_seconds
        hits = sum(sum(getattr(loaded, n).stats.cache_hits.values())
                   for n in module.kernel_signatures)

        def run():
            exe.run(inputs, {})
    else:
        step, step_args = driver_arguments(exe, inputs)
        # The njit driver takes the bound step's arguments, then bind()'s.
        args = [*step_args, *exe._states[()].tail]
        source, arguments = _first_class_source(
            module.source, _recorded_calls(loaded, module, step, step_args),
            mode == "fc_optnone")
        clock = time.perf_counter()
        first_class, path = load_generated_module(source)
        functions, function_types = [], []
        for name, signature in arguments:
            dispatcher = getattr(first_class, name)
            dispatcher.compile(signature)
            compiled = dispatcher.overloads[signature]
            function_type = types.FunctionType(compiled.signature)
            function_types.append(function_type)
            if mode == "fc_dispatcher":
                functions.append(dispatcher)
            else:
                address = compiled.library.get_pointer_to_function(
                    compiled.fndesc.llvm_cfunc_wrapper_name)
                functions.append(_Address(address, function_type))
        first_class.step.compile(tuple(typeof(a) for a in args) + tuple(function_types))
        record_compiled(path)
        compile_s = kernel_seconds + time.perf_counter() - clock
        hits = sum(first_class.step.stats.cache_hits.values())
        full = (*args, *functions)
        step = first_class.step

        def run():
            step(*full)
    print(json.dumps({"work": work, "mode": mode, "compile_s": round(compile_s, 3), "hits": hits,
                      "step_us": median_step_us(run)}))


if __name__ == "__main__":
    main()
