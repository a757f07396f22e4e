"""Compiling a Python driver's kernels in two processes: this one and a helper.

Each kernel is a cached module of its own (codegen), so the kernels of a job with a Python
driver are independent compiles. When enough of them are not cached yet, ``start_helper``
starts ``python -m graphcomp.backends.numba.compile_job --share FILE``, which compiles a share
of them into the shared kernel cache while this process compiles the rest; this process then
waits for the helper and loads its share from the cache (``compile_job._compile_kernels``).

The share is a set of whole *groups*: kernels that import the same library module (the
fast-math library, the random generator) go to one process, so no module is compiled, and no
cache entry written, by both. A module this process has compiled already in this job (a row
segment's C entry compiles its callees as the driver's module runs) keeps its whole group
here. The helper only touches the modules of its share; this process checks their artefacts
against the manifests the helper wrote before loading them. A helper that fails or is killed
costs a ``CompileWarning``, and its share is compiled here.

When it pays (``HELPER_POLICY``): a new process costs ~1 s before it compiles anything
(Python, numpy, numba and graphcomp imports), and on a machine whose cores are all busy a
second compiling process only competes with this one (cnn-digits' step at load 6-9 on 2
cores: 22.7 s alone, 40.6 s with a helper, 2026-12-07). So the helper starts only with >= 2
usable cores of which ``MIN_IDLE_CORES`` were idle while this process ran the compile's passes
and code generation (``/proc/stat``; elsewhere the 1-minute load average, which counts this
process, and which lags: on a quiet machine just after another compile it read as busy), a
writable cache folder, and an estimated >= ``MIN_SHARE_SECONDS`` of work to
hand it. ``GRAPHCOMP_COMPILE_HELPER=0`` turns it off, ``=1`` starts one whenever the kernels
form two groups.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphcomp.errors import CompileWarning

__all__ = ["Helper", "compile_share", "note_compile_start", "start_helper"]

ENV_VAR = "GRAPHCOMP_COMPILE_HELPER"
PYTHON = sys.executable  # the helper's interpreter (a test may replace it)
# Estimated compile seconds of a kernel module: a fixed part plus a part per line of its text
# (a rough scale, not a fit: cnn-digits' kernels took 0.15-0.7 s each, docs/performance.md).
# It only orders the groups and decides whether a helper is worth starting.
SECONDS_PER_MODULE = 0.15
SECONDS_PER_LINE = 0.01
STARTUP_SECONDS = 1.0  # a helper's start: interpreter and imports, before its first compile
MIN_SHARE_SECONDS = 1.5
MIN_IDLE_CORES = 0.75
# Idle cores are measured over the compile's passes and code generation (``_idle_cores``):
# the 1-minute load average lags, so a quiet machine just after another compile read as busy.
MIN_WINDOW_SECONDS = 0.1
MAX_WINDOW_SECONDS = 60.0
HELPER_TIMEOUT_SECONDS = 600.0
HELPER_POLICY = (f">= 2 usable cores, >= {MIN_IDLE_CORES} of them idle (over the compile's "
                 f"passes and code generation, else by the 1-minute load average), a "
                 f"writable cache, "
                 f">= {MIN_SHARE_SECONDS} s of estimated work for the helper after its "
                 f"{STARTUP_SECONDS} s start")
_IMPORT = re.compile(r"^from (gc_[0-9a-f]+) import ", re.MULTILINE)


@dataclass
class Helper:
    """A helper process that compiles ``groups`` of kernels (the driver's names for them)
    from the last one down, while this process compiles them from the first one up; each
    group is compiled by the process that claims it first (``claim``)."""

    process: subprocess.Popen
    groups: list[set[str]]
    entries: list[list[Path]]  # per group, the cache entries of its modules
    folder: Path
    done: bool = field(default=False)
    mine: set[int] = field(default_factory=set)  # the groups this process claimed

    def claim(self, index: int) -> bool:
        """Claim group ``index`` for this process; False when the helper has it."""
        if not claim(self.folder, index):
            return False
        self.mine.add(index)
        return True

    def wait(self) -> None:
        """Wait for the helper (once); on failure warn: the groups it claimed and did not
        compile are compiled here, as they miss the cache."""
        if self.done:
            return
        self.done = True
        try:
            code: int | None = self.process.wait(timeout=HELPER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        if code != 0:
            how = ("did not finish in time" if code is None else
                   f"was killed by signal {-code}" if code < 0 else f"exited with {code}")
            warnings.warn(f"graphcomp's compile helper process {how}{self._errors()}; the "
                          f"kernels it claimed are compiled in this process",
                          CompileWarning, stacklevel=4)
        from graphcomp.backends.numba.cache import verify_artefacts

        for index, entries in enumerate(self.entries):
            if index in self.mine:
                continue
            for entry in entries:  # numba then loads only what the helper recorded
                verify_artefacts(entry)
        shutil.rmtree(self.folder, ignore_errors=True)

    def stop(self) -> None:
        """End the helper if it still runs (this process failed first) and clean up."""
        if not self.done:
            self.done = True
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _errors(self) -> str:
        try:
            text = (self.folder / "errors.txt").read_text(errors="replace").strip()
        except OSError:
            return ""
        return f": {text.splitlines()[-1]}" if text else ""


def claim(folder: Path, index: int) -> bool:
    """Claim group ``index`` of the share in ``folder`` (atomic: a new folder); whether this
    process got it."""
    try:
        os.mkdir(folder / f"claim-{index}")
    except FileExistsError:
        return False
    return True


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int] | None:
    """Idle and total clock ticks since boot of the cores this process may use (Linux's
    ``/proc/stat``), or None where there is no such file."""
    try:
        usable = os.sched_getaffinity(0)
        with open("/proc/stat") as handle:
            lines = handle.read().splitlines()
    except (AttributeError, OSError):
        return None
    idle = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in usable:
            continue
        ticks = [int(value) for value in fields[:8]]  # user nice system idle iowait irq ...
        idle += ticks[3] + ticks[4]
        total += sum(ticks)
    return (idle, total) if total else None


_since: tuple[float, tuple[int, int] | None] = (time.monotonic(), _cpu_ticks())


def note_compile_start() -> None:
    """Start the window over which ``_cores_free`` measures idle cores (a compile's passes
    and code generation, before its kernels compile)."""
    global _since
    _since = (time.monotonic(), _cpu_ticks())


# others_busy_cores: one sample of (monotonic, /proc/stat ticks, process CPU) and its result
OTHERS_WINDOW_SECONDS = 0.5  # the shortest window measured (resampled at most this often)
OTHERS_STALE_SECONDS = 5.0  # an older sample only starts a new window
_others_sample: tuple[float, tuple[int, int], float] | None = None
_others_value: float | None = None


def others_busy_cores() -> float | None:
    """Cores that other processes kept busy over the last window (``/proc/stat``'s busy ticks
    of the usable cores less this process's CPU time, all its threads included), or None
    until a window of ``OTHERS_WINDOW_SECONDS`` to ``OTHERS_STALE_SECONDS`` exists or where
    there is no ``/proc/stat``. Resampled at most every ``OTHERS_WINDOW_SECONDS``, so cheap
    to call once a step. Unlike the load average it leaves out this process's own load (a
    loop's lane helper spinning beside it) and follows changes within a second.

    >>> value = others_busy_cores()  # None at first, then cores' worth of others' work
    """
    global _others_sample, _others_value
    now = time.monotonic()
    sample = _others_sample
    if sample is not None and now - sample[0] < OTHERS_WINDOW_SECONDS:
        return _others_value
    ticks = _cpu_ticks()
    if ticks is None:
        return None
    own = time.process_time()
    _others_value = None
    if sample is not None and now - sample[0] <= OTHERS_STALE_SECONDS:
        idle, total = ticks[0] - sample[1][0], ticks[1] - sample[1][1]
        if total > 0:
            busy = _usable_cores() * (total - idle) / total
            _others_value = max(0.0, busy - (own - sample[2]) / (now - sample[0]))
    _others_sample = (now, ticks, own)
    return _others_value


def _idle_cores() -> float | None:
    """How many usable cores were idle since ``note_compile_start`` (or this module's import),
    from ``/proc/stat``; None if unknown or if the window is shorter than
    ``MIN_WINDOW_SECONDS`` or older than ``MAX_WINDOW_SECONDS``."""
    began, before = _since
    now = _cpu_ticks()
    if before is None or now is None or not (
            MIN_WINDOW_SECONDS <= time.monotonic() - began <= MAX_WINDOW_SECONDS):
        return None
    idle, total = now[0] - before[0], now[1] - before[1]
    if total <= 0:
        return None
    return _usable_cores() * idle / total


def _cores_free() -> bool:
    """Whether >= 2 cores are usable and >= ``MIN_IDLE_CORES`` of them idle: measured over
    the compile's first part (``_idle_cores``), else by the 1-minute load average."""
    cores = _usable_cores()
    if cores < 2:
        return False
    idle = _idle_cores()
    if idle is None:
        try:
            idle = cores - os.getloadavg()[0]
        except OSError:  # no load average on this system: trust the core count
            idle = cores - 1.0
    return idle >= MIN_IDLE_CORES


def _estimate(text: str) -> float:
    return SECONDS_PER_MODULE + SECONDS_PER_LINE * text.count("\n")


def _groups(loaded: Any, job: Any, libraries: list[tuple[Any, Path]], busy: set[str]
            ) -> list[tuple[float, set[str], set[str]]]:
    """The uncompiled kernels as groups sharing no module: (estimated seconds, the driver's
    names, module names); a group with a module in ``busy`` (compiled here already) is left
    out: it stays in this process."""
    texts = {module.__name__: text for (module, _), text in zip(libraries, job.libraries,
                                                                strict=True)}
    imports = {name: set(_IMPORT.findall(text)) & set(texts) for name, text in texts.items()}
    merged: list[tuple[set[str], set[str]]] = []  # (driver names, module names)
    for name, signatures in job.kernel_signatures.items():
        function = getattr(loaded, name, None)
        module = str(getattr(getattr(function, "py_func", None), "__module__", ""))
        if module not in texts or not signatures:
            continue
        modules: set[str] = set()
        todo = [module]
        while todo:  # the module and every library module it imports, transitively
            current = todo.pop()
            if current not in modules:
                modules.add(current)
                todo += imports[current]
        names = {name}
        for group in [g for g in merged if g[1] & modules]:
            merged.remove(group)
            names |= group[0]
            modules |= group[1]
        merged.append((names, modules))
    return [(sum(_estimate(texts[m]) for m in modules), names, modules)
            for names, modules in merged if not modules & busy]


def _worth_it(groups: list[tuple[float, set[str], set[str]]], forced: bool) -> bool:
    """Whether the groups are enough work for two processes: >= 2 groups and, unless forced,
    >= ``MIN_SHARE_SECONDS`` of estimated work besides the largest group after the helper's
    start."""
    if len(groups) < 2:
        return False
    costs = sorted(cost for cost, _, _ in groups)
    return forced or sum(costs[:-1]) - STARTUP_SECONDS >= MIN_SHARE_SECONDS


def start_helper(loaded: Any, job: Any, libraries: list[tuple[Any, Path]],
                 busy: set[str]) -> Helper | None:
    """A helper compiling a share of ``job``'s kernels, or None where it does not pay (see
    ``HELPER_POLICY``). ``libraries``: the job's (module, entry path) pairs, in order; ``busy``:
    the library modules this process compiled something in during this job."""
    from graphcomp.backends.numba.cache import has_compiled, writable_cache

    setting = os.environ.get(ENV_VAR, "")
    if setting == "0" or (setting != "1" and not _cores_free()) or not writable_cache():
        return None
    busy = busy | {module.__name__ for (module, _), text in zip(libraries, job.libraries,
                                                                 strict=True)
                   if has_compiled(text)}
    groups = sorted(_groups(loaded, job, libraries, busy), key=lambda g: -g[0])
    if not _worth_it(groups, setting == "1"):
        return None
    texts = {module.__name__: text for (module, _), text in zip(libraries, job.libraries,
                                                                strict=True)}
    paths = {module.__name__: path for module, path in libraries}
    order = [module.__name__ for module, _ in libraries]
    share = [{"libraries": [texts[m] for m in order if m in modules],
              "functions": [[getattr(loaded, n).py_func.__module__,
                             getattr(loaded, n).py_func.__name__, job.kernel_signatures[n]]
                            for n in sorted(names)]}
             for _, names, modules in groups]
    try:
        return _spawn(share, [names for _, names, _ in groups],
                      [[paths[m] for m in order if m in modules] for _, _, modules in groups])
    except OSError as exc:  # no interpreter, no process: compile everything here
        warnings.warn(f"graphcomp could not start its compile helper process ({exc}); "
                      f"compiling in this process", CompileWarning, stacklevel=3)
        return None


def _spawn(share: list[dict], groups: list[set[str]], entries: list[list[Path]]) -> Helper:
    from graphcomp.backends.numba.cache import cache_dir

    folder = Path(tempfile.mkdtemp(prefix="graphcomp-share-"))
    (folder / "share.json").write_text(json.dumps(share))
    package_root = str(Path(__file__).resolve().parents[3])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache_dir()), ENV_VAR: "0",
           "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    try:
        with open(folder / "errors.txt", "wb") as errors:
            process = subprocess.Popen(
                [PYTHON, "-m", "graphcomp.backends.numba.compile_job", "--share",
                 str(folder / "share.json")],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Helper(process, groups, entries, folder)


def compile_share(path: Path) -> int:
    """The helper's side: claim groups from the last one down until one is taken; load each
    claimed group's modules, compile its functions' signatures, record the artefacts."""
    from graphcomp.backends.numba.cache import load_generated_module, record_compiled
    from graphcomp.backends.numba.compile_job import kernel_signature

    groups = json.loads(path.read_text())
    for index in reversed(range(len(groups))):
        if not claim(path.parent, index):
            break
        entries = [load_generated_module(text)[1] for text in groups[index]["libraries"]]
        for module_name, function_name, signatures in groups[index]["functions"]:
            function = getattr(sys.modules[module_name], function_name)
            for types in signatures:
                function.compile(kernel_signature(tuple(
                    t if isinstance(t, str) else (str(t[0]), int(t[1]), str(t[2]))
                    for t in types)))
        for entry in entries:
            record_compiled(entry)
    return 0
