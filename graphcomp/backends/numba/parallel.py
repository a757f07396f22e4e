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
(Python, numpy, numba and graphcomp imports), so the helper starts only with >= 2 usable
cores, a writable cache folder, and an estimated >= ``MIN_SHARE_SECONDS`` of work to hand it.
``GRAPHCOMP_COMPILE_HELPER=0`` turns it off, ``=1`` starts one whenever there are two groups.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphcomp.errors import CompileWarning

__all__ = ["Helper", "compile_share", "start_helper"]

ENV_VAR = "GRAPHCOMP_COMPILE_HELPER"
PYTHON = sys.executable  # the helper's interpreter (a test may replace it)
# Estimated compile seconds of a kernel module: a fixed part plus a part per line of its text
# (fitted on cnn-digits' and mlp-dropout-bn-digits' kernels, docs/performance.md).
SECONDS_PER_MODULE = 0.15
SECONDS_PER_LINE = 0.01
STARTUP_SECONDS = 1.0  # a helper's start: interpreter and imports, before its first compile
MIN_SHARE_SECONDS = 1.5
HELPER_TIMEOUT_SECONDS = 600.0
HELPER_POLICY = (f">= 2 usable cores, a writable cache, >= {MIN_SHARE_SECONDS} s of estimated "
                 f"work for the helper after its {STARTUP_SECONDS} s start")
_IMPORT = re.compile(r"^from (gc_[0-9a-f]+) import ", re.MULTILINE)


@dataclass
class Helper:
    """A helper process compiling the kernels ``names`` (the driver's names for them)."""

    process: subprocess.Popen
    names: set[str]
    entries: list[Path]  # the cache entries of the modules it compiles
    folder: Path
    done: bool = field(default=False)

    def wait(self) -> None:
        """Wait for the helper (once); on failure warn, and this process compiles its share."""
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
            warnings.warn(f"graphcomp's compile helper process {how}{self._errors()}; its "
                          f"{len(self.names)} kernel(s) are compiled in this process",
                          CompileWarning, stacklevel=4)
        from graphcomp.backends.numba.cache import verify_artefacts

        for entry in self.entries:  # numba then loads only what the helper recorded
            verify_artefacts(entry)
        self._clean()

    def stop(self) -> None:
        """End the helper if it still runs (this process failed first) and clean up."""
        if not self.done:
            self.done = True
            self.process.kill()
            self.process.wait()
        self._clean()

    def _errors(self) -> str:
        try:
            text = (self.folder / "errors.txt").read_text(errors="replace").strip()
        except OSError:
            return ""
        return f": {text.splitlines()[-1]}" if text else ""

    def _clean(self) -> None:
        for name in ("share.json", "errors.txt"):
            (self.folder / name).unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
        module = getattr(getattr(function, "py_func", None), "__module__", None)
        if module not in texts or not signatures:
            continue
        modules, todo = set(), [module]
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


def _choose_share(groups: list[tuple[float, set[str], set[str]]], forced: bool
                  ) -> tuple[set[str], set[str]]:
    """The helper's share (driver names, module names): whole groups, largest first, up to
    half of the work left after the helper's start."""
    total = sum(cost for cost, _, _ in groups)
    target = (total - STARTUP_SECONDS) / 2
    names: set[str] = set()
    modules: set[str] = set()
    share = 0.0
    for cost, group_names, group_modules in sorted(groups, key=lambda g: -g[0])[1:]:
        if share + cost <= target or (forced and not names):
            names |= group_names
            modules |= group_modules
            share += cost
    if not forced and share < MIN_SHARE_SECONDS:
        return set(), set()
    return names, modules


def start_helper(loaded: Any, job: Any, libraries: list[tuple[Any, Path]],
                 busy: set[str]) -> Helper | None:
    """A helper compiling a share of ``job``'s kernels, or None where it does not pay (see
    ``HELPER_POLICY``). ``libraries``: the job's (module, entry path) pairs, in order; ``busy``:
    the library modules this process compiled something in during this job."""
    from graphcomp.backends.numba.cache import has_compiled, writable_cache

    setting = os.environ.get(ENV_VAR, "")
    if setting == "0" or (setting != "1" and _usable_cores() < 2) or not writable_cache():
        return None
    busy = busy | {module.__name__ for (module, _), text in zip(libraries, job.libraries,
                                                                 strict=True)
                   if has_compiled(text)}
    names, modules = _choose_share(_groups(loaded, job, libraries, busy), setting == "1")
    if not names:
        return None
    share = {"libraries": [text for (module, _), text in zip(libraries, job.libraries,
                                                              strict=True)
                           if module.__name__ in modules],
             "functions": [[getattr(loaded, n).py_func.__module__,
                            getattr(loaded, n).py_func.__name__, job.kernel_signatures[n]]
                           for n in sorted(names)]}
    return _spawn(share, names, [path for module, path in libraries
                                 if module.__name__ in modules])


def _spawn(share: dict, names: set[str], entries: list[Path]) -> Helper:
    from graphcomp.backends.numba.cache import cache_dir

    folder = Path(tempfile.mkdtemp(prefix="graphcomp-share-"))
    (folder / "share.json").write_text(json.dumps(share))
    package_root = str(Path(__file__).resolve().parents[3])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache_dir()), ENV_VAR: "0",
           "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    with open(folder / "errors.txt", "wb") as errors:
        process = subprocess.Popen(
            [PYTHON, "-m", "graphcomp.backends.numba.compile_job", "--share",
             str(folder / "share.json")],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
    return Helper(process, names, entries, folder)


def compile_share(path: Path) -> int:
    """The helper's side: load the share's modules, compile its functions' signatures, record
    the artefacts."""
    from graphcomp.backends.numba.cache import load_generated_module, record_compiled
    from graphcomp.backends.numba.compile_job import kernel_signature

    share = json.loads(path.read_text())
    modules = {}
    for text in share["libraries"]:
        module, entry = load_generated_module(text)
        modules[module.__name__] = entry
    for module_name, function_name, signatures in share["functions"]:
        function = getattr(sys.modules[module_name], function_name)
        for types in signatures:
            function.compile(kernel_signature(tuple(
                t if isinstance(t, str) else (str(t[0]), int(t[1]), str(t[2])) for t in types)))
    for entry in modules.values():
        record_compiled(entry)
    return 0
