"""A Numba compile off the caller's path, while the numpy backend serves the calls.

``gc.compile(..., compile_mode="background")`` checks the options and the cache folder, then
returns. Where a hint in the cache (``warm_hint``) says that an identical program was compiled
before, it first plans the modules on the calling thread (the passes and the code generator,
which import no numba) and loads a cache holding every module there and then (a warm start).
Otherwise a daemon thread of this process (``BackgroundCompile``) plans, writes one ``CompileJob``
per generated module (several for a program with scans: its segments and scan bodies) and
starts ``python -m graphcomp.backends.numba.compile_job JOB...`` (``COMPILE_NICE`` lower in
priority than the caller), which compiles them into the shared kernel cache. If the process
still runs after ``WARM_UP_AFTER_SECONDS``, the thread imports numba meanwhile. Once the
process has ended, the thread loads the compiled modules from the cache; the caller's next
call waits for that load (``await_load``, ~0.1-0.5 s) and runs the compiled code. The calling
thread never waits for numba's import or for the compile. The process is not waited for at
exit: a script that ends first leaves it to fill the cache for the next run.

While the process compiles, the calls on numpy run numpy's OpenBLAS with one thread fewer
(``BackgroundCompile.serving``, on the caller's thread): the process keeps a core busy, and a
BLAS thread that waits for a descheduled partner made each GEMM several times slower (mlp,
2 cores: 100 interpreted steps 2.99 s against numpy's 0.55 s; docs/performance.md, "Interpreted
steps while compiling"). The count is restored at the first call after the process has ended,
or when the function is dropped (``drop``).

>>> # executable, pending = start_compile(program, {}); ...; pending.done() and pending.finish()
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from graphcomp.backends.numba.cache import WARM_PREFIX, cache_dir, writable_cache
from graphcomp.errors import CompileError, CompileWarning, GraphcompError
from graphcomp.passes.convolution import CONV_CHOICES
from graphcomp.runtime.function import BLAS_RESTORES
from graphcomp.runtime.program import Program

ERROR_TAIL = 2000  # characters of the process's error output a failure quotes
PYTHON = sys.executable  # the interpreter that runs the compile (a test may replace it)
OPTIONS = ("fastmath", "driver_jit", "conv")  # compile_numba's keyword options
# The thread imports numba this long after starting the process (``_warm_up``), so a short
# run (the main job's 860 steps take ~0.3 s) does not share the interpreter lock with it.
WARM_UP_AFTER_SECONDS = 1.5
# Added to this process's niceness for the compiling process (and its compile helper): where
# the cores are short, the calls on numpy keep theirs and the compile takes what is left.
COMPILE_NICE = 5
# How long the caller waits for the load once the process has ended (a load that compiles,
# as a scan's native loop with driver_jit=True does, leaves the calls on numpy meanwhile).
LOAD_WAIT_SECONDS = 2.0

_exiting = threading.Event()  # set at exit: a thread still planning starts no process
atexit.register(_exiting.set)


def start_compile(program: Program, options: dict[str, Any]
                  ) -> tuple[Any, BackgroundCompile | None]:
    """``(None, pending)``: the compile of ``program`` started in a thread of its own. Or
    ``(executable, None)`` when the cache holds every module already (a warm start: loading
    them here, ~0.7 s for mlp-digits, beats stepping on numpy while a thread loads them,
    measured in docs/performance.md); ``(None, None)`` where it cannot hand its kernels over
    (no writable cache: the caller compiles eagerly, warned here)."""
    check_options(options)
    if not writable_cache():
        warnings.warn(CompileWarning(
            f"the kernel cache {cache_dir()} is not writable, so a background compile could "
            "not hand its kernels over: compiling in this process instead"), stacklevel=3)
        return None, None
    hint = warm_hint(program, options)
    if not hint.exists():  # a cold compile: the thread plans, the caller returns at once
        return None, BackgroundCompile.start(program, options, hint=hint)
    started = time.perf_counter()
    from graphcomp.backends.numba.backend import plan_modules

    try:
        planned = plan_modules(program, **options)  # numba-free: ~0.1 s for mlp-digits
    except GraphcompError:
        return None, BackgroundCompile.start(program, options)  # the thread reports it
    if all(_all_compiled(module) for module in planned[1]):
        return _load(program, options, planned[0], started), None
    return None, BackgroundCompile.start(program, options, planned, hint)


def warm_hint(program: Program, options: dict[str, Any]) -> Path:
    """The file whose presence says that the cache held (or received) every module of a
    program like ``program``: only then does ``start_compile`` plan on the caller's thread,
    to load a warm cache at once. Planning (with the code generator's imports and the
    cache key's llvmlite import) cost 0.15-0.3 s before a cold start's first result
    (2026-12-07). The name hashes each scheduled node's op, attributes, shape, dtype and
    inputs, and the options, in a few milliseconds; a wrong hint only costs time: a cold
    program then plans on the caller's thread as before, a warm one loads in the thread."""
    digest = hashlib.sha256(repr(sorted(options.items())).encode())
    for node in program.schedule:
        inputs = tuple(i.id for i in node.inputs)
        text = repr((node.id, node.op, sorted(node.attrs.items()), node.shape, node.dtype,
                     inputs))
        digest.update(text.encode())
    for nodes in (program.inputs, program.outputs):
        digest.update(repr([n.id for n in nodes]).encode())
    digest.update(repr([(p.id, v.id) for p, v in program.updates]).encode())
    return cache_dir() / f"{WARM_PREFIX}{digest.hexdigest()[:32]}"


def note_warm(program: Program, options: dict[str, Any]) -> None:
    """Leave ``warm_hint``'s file for ``program``, whose modules an eager compile has just
    put in the cache."""
    _touch(warm_hint(program, options))


def _touch(hint: Path) -> None:
    with contextlib.suppress(OSError):  # only a hint: without it, a later start plans later
        hint.touch()


def _load(program: Program, options: dict[str, Any], generated: Any, started: float) -> Any:
    """The compiled function from the cache (``generated``: ``generate_module``'s result, or
    None for a program with scans, whose stages load through ``compile_numba``)."""
    from graphcomp.backends.numba.backend import compile_generated, compile_numba

    if generated is None:
        return compile_numba(program, **options)
    lp, memory, module = generated
    return compile_generated(program, lp, memory, module, started)


def check_options(options: dict[str, Any]) -> None:
    """``CompileError`` for an option ``compile_numba`` does not know, as an eager compile
    raises it (checked here: the thread's errors only become warnings)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CompileError(f"unknown option(s) for backend 'numba': {', '.join(unknown)}")
    conv = options.get("conv", "auto")
    if conv not in CONV_CHOICES:
        raise CompileError(f"conv must be one of {', '.join(CONV_CHOICES)}, got {conv!r}")


def _all_compiled(module: Any) -> bool:
    """Whether the cache holds the compiled code of every module of ``module`` (a
    ``GeneratedModule``): each library, and the driver's module when it compiles anything
    itself (an njit driver, row segments)."""
    from graphcomp.backends.numba.cache import has_compiled

    compiled = list(module.libraries)
    if module.driver_jit or (module.program is not None and module.program.segments):
        compiled.append(module.source)
    return all(has_compiled(text) for text in compiled)


class BackgroundCompile:
    """One program being compiled by a thread of this process (and the process it starts)."""

    def __init__(self, program: Program, options: dict[str, Any], planned: Any = None,
                 hint: Path | None = None) -> None:
        self._program = program
        self._options = dict(options)
        self._planned = planned  # plan_modules' result when the caller planned already
        self._hint = hint  # warm_hint's file, written once every module is compiled
        self._process: subprocess.Popen | None = None
        self._folder: Path | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._process_known = threading.Event()  # started, or known not to be needed
        self.started = time.perf_counter()
        self.used_process = False  # whether another process compiled (else: a warm cache)
        self._process_ended = threading.Event()
        self._blas_threads: int | None = None  # the count before serving() lowered it
        self._serving_thread = 0  # the thread that lowered it (the calls' thread)
        self._dropped = False  # the function is gone: nothing to load
        self._load_awaited = False
        # seconds from ``started`` to the process's end and to the loaded code (benchmarks)
        self.process_seconds: float | None = None
        self.ready_seconds: float | None = None

    @staticmethod
    def start(program: Program, options: dict[str, Any], planned: Any = None,
              hint: Path | None = None) -> BackgroundCompile:
        """Start the thread that compiles ``program`` (``planned``: its modules, when the
        caller has planned them; ``hint``: ``warm_hint``'s file)."""
        pending = BackgroundCompile(program, options, planned, hint)
        threading.Thread(target=pending._run, name="graphcomp-background-compile",
                         daemon=True).start()
        return pending

    @property
    def pid(self) -> int | None:
        """The compiling process's id (None when the cache held everything or the thread
        failed before starting it); waits until the thread has decided."""
        self._process_known.wait()
        return None if self._process is None else self._process.pid

    def await_load(self) -> None:
        """Called on the caller's thread before each call on numpy: once the process has
        ended, wait (the first time only, at most ``LOAD_WAIT_SECONDS``) for the thread to load
        its modules. Waiting leaves the thread the interpreter lock: beside a numpy step loop
        it held it in turns, and mlp's load of ~0.4 s took 3-6 s (docs/performance.md,
        "Background mode at 10,000 steps")."""
        if self._process_ended.is_set() and not self._load_awaited:
            self._load_awaited = True
            self._done.wait(LOAD_WAIT_SECONDS)

    def done(self) -> bool:
        """Whether the compiled function is ready (or the compile has failed)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for ``done``; whether it is."""
        return self._done.wait(timeout)

    def serving(self) -> None:
        """Called on the caller's thread before each call that runs on numpy: one BLAS thread
        fewer while the compiling process runs, the former count once it has ended."""
        if self._process_ended.is_set() or self._done.is_set():
            if self._blas_threads is not None:
                _set_blas_threads(self._blas_threads)
                self._blas_threads = None
        elif self._blas_threads is None and (self._process is not None
                                             or not self._process_known.is_set()):
            # also while the thread plans: it keeps a core busy before the process does
            self._blas_threads = _lower_blas_threads()
            self._serving_thread = threading.get_ident()

    def drop(self) -> None:
        """The function is gone (a finalizer): nothing to load, and the BLAS thread count goes
        back now on the thread that lowered it, or else at that thread's next graphcomp call
        (``restore_blas_threads``): OpenBLAS's count is not changed under a running GEMM."""
        self._dropped = True
        threads, self._blas_threads = self._blas_threads, None
        if threads is None:
            return
        if threading.get_ident() == self._serving_thread:
            _set_blas_threads(threads)
        else:
            with _restore_lock:
                BLAS_RESTORES.append((self._serving_thread, threads))

    def finish(self) -> Any:
        """The compiled function (loaded by the thread); ``CompileError`` saying what went
        wrong when the process failed or was killed, or the thread's own error."""
        self._done.wait()
        self.serving()  # restores the BLAS thread count
        if self._error is not None:
            raise self._error
        return self._result

    def _run(self) -> None:
        try:
            self._result = self._compile()
        except BaseException as exc:  # reported by finish, on the caller's thread
            self._error = exc
        finally:
            self._process_known.set()
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
            self.ready_seconds = time.perf_counter() - self.started
            self._done.set()

    def _compile(self) -> Any:
        from graphcomp.backends.numba.backend import plan_modules

        planned = self._planned or plan_modules(self._program, **self._options)
        generated, modules = planned
        missing = [m for m in modules if not _all_compiled(m)]
        if missing and not _exiting.is_set():
            self._start_process(missing)
        self._process_known.set()
        if self._process is not None:
            try:
                code = self._process.wait(timeout=WARM_UP_AFTER_SECONDS)
            except subprocess.TimeoutExpired:
                if not _exiting.is_set():
                    _warm_up()  # while the process compiles: the load after it is short
                code = self._process.wait()
            self.process_seconds = time.perf_counter() - self.started
            self._process_ended.set()
            if code != 0:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
                raise CompileError(f"the background compile {how}{self._errors()}")
        if self._dropped:
            return None
        result = _load(self._program, self._options, generated, self.started)
        if self._hint is not None:
            _touch(self._hint)
        return result

    def _start_process(self, modules: list[Any]) -> None:
        """Write one job per module and start the process that compiles them."""
        from graphcomp.backends.numba.compile_job import CompileJob

        folder = self._folder = Path(tempfile.mkdtemp(prefix="graphcomp-compile-"))
        jobs = []
        for i, module in enumerate(modules):
            job = folder / f"job{i}.json"
            job.write_text(CompileJob.of(module).to_json())
            jobs.append(str(job))
        atexit.register(_remove_if_read, folder)
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache_dir())}
        # the process leaves the warm hint itself: the caller may end before it loads
        hint = ["--hint", str(self._hint)] if self._hint is not None else []
        with open(folder / "errors.txt", "wb") as errors:
            self._process = subprocess.Popen(
                [PYTHON, "-m", "graphcomp.backends.numba.compile_job", *hint, *jobs],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        _lower_priority(self._process.pid)
        self.used_process = True

    def _errors(self) -> str:
        assert self._folder is not None
        try:
            text = (self._folder / "errors.txt").read_text(errors="replace").strip()
        except OSError:
            return ""
        return f":\n{text[-ERROR_TAIL:]}" if text else ""


_restore_lock = threading.Lock()  # guards function.BLAS_RESTORES


def restore_blas_threads() -> None:
    """Give back the BLAS threads of dropped functions that this thread lowered (called at
    the start of a call of any function; cheap when there is nothing to do)."""
    me = threading.get_ident()
    with _restore_lock:
        mine = [threads for thread, threads in BLAS_RESTORES if thread == me]
        BLAS_RESTORES[:] = [(t, n) for t, n in BLAS_RESTORES if t != me]
    for threads in mine:
        _set_blas_threads(threads)


def _lower_priority(pid: int) -> None:
    """Raise process ``pid``'s niceness by ``COMPILE_NICE`` (where the system allows)."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0) + COMPILE_NICE
        os.setpriority(os.PRIO_PROCESS, pid, min(nice, 19))
    except (AttributeError, OSError):  # not POSIX, or the process has ended already
        pass


def _warm_up() -> None:
    """Import numba, the backend and numba's lowering registries (~0.5 s, most of a warm
    load: docs/performance.md, "Background mode at 10,000 steps"), so that loading the
    compiled modules once the process has ended takes little more than reading them."""
    from numba.core.registry import cpu_target

    import graphcomp.backends.numba.backend  # noqa: F401

    cpu_target.target_context.refresh()


def _lower_blas_threads() -> int | None:
    """Lower numpy's OpenBLAS thread count by one (to at least 1); the former count, or None
    when it was 1 or cannot be set."""
    from graphcomp.backends.numba.blas import blas_thread_count

    counts = blas_thread_count()
    if counts is None:
        return None
    threads = int(counts[0]())
    if threads <= 1:
        return None
    counts[1](threads - 1)
    return threads


def _set_blas_threads(threads: int) -> None:
    from graphcomp.backends.numba.blas import blas_thread_count

    counts = blas_thread_count()
    if counts is not None:
        counts[1](threads)


def _remove_if_read(folder: Path) -> None:
    """At exit: the jobs' folder, once the compiling process has read every job (it goes on
    writing its errors to the open, unlinked file)."""
    if not any(folder.glob("job*.json")):
        shutil.rmtree(folder, ignore_errors=True)
