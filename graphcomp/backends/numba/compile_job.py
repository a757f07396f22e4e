"""What Numba compiles for one generated module, as plain data, and compiling it.

A ``CompileJob`` is the driver module's source, the library modules it imports (kernels and
helpers, each cached on its own: codegen) and the entry points to compile with their argument
types (the njit driver's, or each kernel's for a Python driver). It is JSON, so the same job
runs in this process (``compile_job``) or in another one
(``python -m graphcomp.backends.numba.compile_job JOB.json``, the background compile of
``gc.compile(..., compile_mode="background")``): both write the same kernel cache entry.

>>> job = CompileJob("def step(x):\\n    return x\\n", True, [("float64", 1)], {})
>>> CompileJob.from_json(job.to_json()) == job
True
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphcomp.backends.numba.cache import (
    load_generated_module,
    own_dispatchers,
    record_compiled,
)
from graphcomp.backends.numba.parallel import Helper, compile_share, start_helper
from graphcomp.backends.numba.program import ValueType

ArraySpec = tuple[str, int]  # dtype name, ndim (C-contiguous)


@dataclass(frozen=True)
class CompileJob:
    """A generated module and the typed entry points Numba compiles in it."""

    source: str
    driver_jit: bool
    driver_arguments: list[ArraySpec]  # the njit driver's parameters
    kernel_signatures: dict[str, list[tuple[ValueType, ...]]] = field(default_factory=dict)
    # The modules ``source`` imports, each after every module it imports (codegen).
    libraries: list[str] = field(default_factory=list)
    uses_lanes: bool = False  # the driver takes the lanes (their helper thread's code)

    @staticmethod
    def of(module: Any) -> CompileJob:
        """The job of a ``codegen.GeneratedModule``."""
        kernels = {name: sorted(signatures, key=repr)
                   for name, signatures in sorted(module.kernel_signatures.items())}
        return CompileJob(module.source, module.driver_jit,
                          [(np.dtype(a.dtype).name, a.ndim) for a in module.arguments], kernels,
                          list(module.libraries), bool(module.uses_lanes))

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "driver_jit": self.driver_jit,
                           "driver_arguments": self.driver_arguments,
                           "kernel_signatures": self.kernel_signatures,
                           "libraries": self.libraries, "uses_lanes": self.uses_lanes})

    @staticmethod
    def from_json(text: str) -> CompileJob:
        data = json.loads(text)

        def value_type(t: Any) -> ValueType:
            return t if isinstance(t, str) else (str(t[0]), int(t[1]), str(t[2]))

        return CompileJob(
            data["source"], bool(data["driver_jit"]),
            [(str(d), int(n)) for d, n in data["driver_arguments"]],
            {name: [tuple(value_type(t) for t in types) for types in signatures]
             for name, signatures in data["kernel_signatures"].items()},
            [str(text) for text in data.get("libraries", [])], bool(data.get("uses_lanes")))


def driver_signature(arguments: list[ArraySpec]) -> tuple:
    """Numba types of the njit driver's parameters."""
    from numba import from_dtype, types

    return tuple(types.Array(from_dtype(np.dtype(d)), n, "C") for d, n in arguments)


def kernel_signature(types: tuple) -> tuple:
    """Numba types of one kernel signature (scalars by dtype name, arrays as triples)."""
    from numba import from_dtype
    from numba import types as nb

    return tuple(from_dtype(np.dtype(t)) if isinstance(t, str)
                 else nb.Array(from_dtype(np.dtype(t[0])), t[1], t[2]) for t in types)


def compile_job(job: CompileJob) -> tuple[Any, Any, bool]:
    """Compile the job's entry points (or load them from the cache): (module, driver, whether
    everything came from the cache). The library modules load first (each after those it
    imports), then the driver's module; at the end, the artefacts of the driver's module and
    of every library this job compiled something in are recorded."""
    libraries = [load_generated_module(text) for text in job.libraries]
    # Library functions may be shared with a program compiled before, which closed its
    # kernels to new types: open them again (a row segment's C entry compiles its callees
    # while the driver's module runs).
    for module, _ in libraries:
        for function in own_dispatchers(module):
            function.disable_compile(False)
    compiled_before = [_compiles(module) for module, _ in libraries]
    loaded, path = load_generated_module(job.source)
    driver = loaded.step if job.driver_jit else loaded.bind
    cache_hit = False
    if hasattr(driver, "compile"):
        cache_hit = _compile_driver(driver, job)
    elif not job.driver_jit and not _jit_disabled():
        busy = {module.__name__ for (module, _), before
                in zip(libraries, compiled_before, strict=True) if _compiles(module) > before}
        helper = start_helper(loaded, job, libraries, busy)
        try:
            cache_hit = _compile_kernels(loaded, job, helper)
        finally:
            if helper is not None:
                helper.stop()
    for (module, library_path), before in zip(libraries, compiled_before, strict=True):
        if _compiles(module) > before:  # new artefacts (a module used as it was: none)
            record_compiled(library_path)
    record_compiled(path)
    return loaded, driver, cache_hit


def _compiles(module: Any) -> int:
    """How many signatures the functions of ``module`` compiled (not loaded) so far."""
    return sum(sum(f.stats.cache_misses.values()) for f in own_dispatchers(module))


def _jit_disabled() -> bool:
    """Whether numba runs everything as plain Python (``NUMBA_DISABLE_JIT=1``)."""
    from numba.core import config

    return bool(getattr(config, "DISABLE_JIT", False))


def _compile_driver(driver: Any, job: CompileJob) -> bool:
    """Compile an njit driver; whether it came from the cache (or this process had it)."""
    signature = driver_signature(job.driver_arguments)
    if signature in driver.signatures:  # this process compiled the same module already
        return True
    driver.compile(signature)
    driver.disable_compile()
    return sum(driver.stats.cache_hits.values()) > 0


def _compile_kernels(loaded: Any, job: CompileJob, helper: Helper | None = None) -> bool:
    """Compile every kernel signature a Python driver calls; whether nothing was compiled
    anew (everything loaded from the cache, or compiled already by this process). With a
    ``helper`` process (parallel.py), this process compiles the kernels outside its groups,
    then claims groups from the first one up; once the helper has one, it waits for the
    helper and loads the rest from the cache (or compiles them, if the helper failed)."""
    groups = helper.groups if helper is not None else []
    shared = set().union(*groups)
    counts = _compile_names(loaded, job, [n for n in job.kernel_signatures if n not in shared])
    left: list[str] = []
    for index, names in enumerate(groups):
        if left or not helper.claim(index):  # type: ignore[union-attr]
            left += sorted(names)
            continue
        counts = [a + b for a, b in zip(counts, _compile_names(loaded, job, sorted(names)),
                                        strict=True)]
    if helper is not None:
        helper.wait()
        counts = [a + b for a, b in zip(counts, _compile_names(loaded, job, left), strict=True)]
    for name, signatures in job.kernel_signatures.items():
        if signatures:  # only now: one helper may call another with new types
            getattr(loaded, name).disable_compile()
    loaded_or_known, misses = counts
    return loaded_or_known > 0 and misses == 0


def _compile_names(loaded: Any, job: CompileJob, names: list[str]) -> list[int]:
    """Compile the signatures of kernels ``names``: [loaded or known, compiled] counts."""
    loaded_or_known = misses = 0
    for name in names:
        if not job.kernel_signatures[name]:
            continue
        kernel = getattr(loaded, name)
        for types in job.kernel_signatures[name]:
            signature = kernel_signature(types)
            if signature in kernel.signatures:  # shared with a program compiled before
                loaded_or_known += 1
                continue
            hits_before = sum(kernel.stats.cache_hits.values())
            misses_before = sum(kernel.stats.cache_misses.values())
            kernel.compile(signature)
            loaded_or_known += sum(kernel.stats.cache_hits.values()) - hits_before
            misses += sum(kernel.stats.cache_misses.values()) - misses_before
    return [loaded_or_known, misses]


def main(argv: list[str]) -> int:
    """Compile the jobs in the files ``argv``, in order (the background compile's process:
    a program with scans is several modules), or with ``--share FILE``, a helper's share of
    another process's job. ``--hint FILE`` first: touch that file (the program's warm hint,
    background.py's ``warm_hint``) once every job has compiled, so that the next start loads
    the warm cache on its calling thread even when the caller ended before this process."""
    if argv[:1] == ["--share"]:
        return compile_share(Path(argv[1]))
    hint = None
    if argv[:1] == ["--hint"]:
        hint, argv = Path(argv[1]), argv[2:]
    jobs = []
    for name in argv:
        path = Path(name)
        jobs.append(CompileJob.from_json(path.read_text()))
        path.unlink(missing_ok=True)  # read: the folder may go once the caller has stopped
    for job in jobs:
        compile_job(job)
    if any(job.uses_lanes for job in jobs):
        _compile_lane_helper()
    if hint is not None:
        with contextlib.suppress(OSError):  # only a hint: without it, a start plans later
            hint.touch()
    return 0


def _compile_lane_helper() -> None:
    """Compile the lanes' helper thread into the cache (the background compile's process):
    the caller's lane worker would otherwise compile it while loading the modules, ~1.4 s of
    CPU for mlp (docs/performance.md, "Background mode at 10,000 steps")."""
    from graphcomp.backends.numba.blas import numpy_blas
    from graphcomp.backends.numba.lanes.worker import SUPPORTED, compile_serve

    library = numpy_blas()
    if library is not None and SUPPORTED and not _jit_disabled():
        compile_serve(library)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
