"""A Numba compile in another process, while the numpy backend serves the calls.

``gc.compile(..., compile_mode="background")`` runs the passes and the code generator here
(fast), writes the module's ``CompileJob`` to a temporary file and starts
``python -m graphcomp.backends.numba.compile_job JOB`` on it. That process compiles the entry
points into the shared kernel cache; when it has ended, ``finish`` compiles the same job here,
which loads everything from the cache (a warm start). The process is not waited for: a script
that ends first leaves it to fill the cache for the next run.

>>> # executable, pending = start_compile(program, {}); ...; pending.done() and pending.finish()
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from graphcomp.backends.numba.backend import (
    NumbaExecutable,
    compile_generated,
    compile_numba,
    generate_module,
)
from graphcomp.backends.numba.cache import cache_dir, has_compiled, writable_cache
from graphcomp.backends.numba.compile_job import CompileJob
from graphcomp.backends.numba.stages import has_loops
from graphcomp.errors import CompileError, CompileWarning
from graphcomp.runtime.program import Program

ERROR_TAIL = 2000  # characters of the process's error output a failure quotes
PYTHON = sys.executable  # the interpreter that runs the compile (a test may replace it)


def start_compile(program: Program, options: dict[str, Any]
                  ) -> tuple[NumbaExecutable | None, BackgroundCompile | None]:
    """``(executable, None)`` when compiling here is as quick (the cache holds the module: a
    warm start) or the only way (no writable cache, with a ``CompileWarning``); else
    ``(None, pending)`` with the compile started in another process."""
    started = time.perf_counter()
    if has_loops(program):  # several modules (backends/numba/stages.py): compiled here
        return compile_numba(program, **options), None
    generated = generate_module(program, **options)
    lp, memory, module = generated
    if _all_compiled(module):
        return compile_generated(program, lp, memory, module, started), None
    if not writable_cache():
        warnings.warn(CompileWarning(
            f"the kernel cache {cache_dir()} is not writable, so a background compile could "
            "not hand its kernels over: compiling in this process instead"), stacklevel=3)
        return compile_generated(program, lp, memory, module, started), None
    return None, BackgroundCompile.start(program, generated)


def _all_compiled(module: Any) -> bool:
    """Whether the cache holds the compiled code of every module of ``module`` (a
    ``GeneratedModule``): each library, and the driver's module when it compiles anything
    itself (an njit driver, row segments)."""
    compiled = list(module.libraries)
    if module.driver_jit or (module.program is not None and module.program.segments):
        compiled.append(module.source)
    return all(has_compiled(text) for text in compiled)


class BackgroundCompile:
    """One module being compiled by another process."""

    def __init__(self, program: Program, generated: tuple[Any, Any, Any], folder: Path,
                 process: subprocess.Popen, started: float) -> None:
        self._program = program
        self._generated = generated
        self._folder = folder
        self._process = process
        self.started = started

    @staticmethod
    def start(program: Program, generated: tuple[Any, Any, Any]) -> BackgroundCompile:
        """Write the generated module's job and start the process that compiles it."""
        folder = Path(tempfile.mkdtemp(prefix="graphcomp-compile-"))
        job = folder / "job.json"
        job.write_text(CompileJob.of(generated[2]).to_json())
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache_dir())}
        with open(folder / "errors.txt", "wb") as errors:
            process = subprocess.Popen(
                [PYTHON, "-m", "graphcomp.backends.numba.compile_job", str(job)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        atexit.register(_remove_if_read, folder)
        return BackgroundCompile(program, generated, folder, process, time.perf_counter())

    @property
    def pid(self) -> int:
        """The compiling process's id."""
        return self._process.pid

    def done(self) -> bool:
        """Whether the compiling process has ended (successfully or not)."""
        return self._process.poll() is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the process to end (at most ``timeout`` seconds); whether it has."""
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def finish(self) -> NumbaExecutable:
        """The compiled function, loaded from the cache the process filled; ``CompileError``
        saying what went wrong when the process failed or was killed."""
        code = self._process.wait()
        try:
            if code != 0:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
                raise CompileError(f"the background compile {how}{self._errors()}")
            lp, memory, module = self._generated
            return compile_generated(self._program, lp, memory, module, self.started)
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _errors(self) -> str:
        try:
            text = (self._folder / "errors.txt").read_text(errors="replace").strip()
        except OSError:
            return ""
        return f":\n{text[-ERROR_TAIL:]}" if text else ""


def _remove_if_read(folder: Path) -> None:
    """At exit: the job's folder, once the compiling process has read its job (it goes on
    writing its errors to the open, unlinked file)."""
    if not (folder / "job.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
