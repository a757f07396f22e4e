"""The on-disk cache of generated kernel modules.

A generated module becomes a real file ``<cache_dir>/gc_<key>.py`` (numba can only cache
functions that live in a real file), where ``key`` hashes the source together with the
graphcomp, numba, llvmlite, numpy and Python versions and the host CPU. Numba's
``njit(cache=True)`` then keeps the compiled code in ``__pycache__`` beside it, so a second
process compiles nothing.

Nothing on disk is trusted blindly:

- The ``.py`` entry is written atomically (a temporary file in the same folder, then a rename)
  and is compared byte for byte with the source graphcomp generated before use; a corrupt,
  truncated or foreign entry is rewritten. The module executes the verified text held in
  memory, never whatever the file holds at import time, and no ``.pyc`` is read or written.
- Numba unpickles its ``.nbi``/``.nbc`` artefacts without any check: a truncated or garbage file
  makes the first call crash with ``UnpicklingError``/``EOFError`` instead of recompiling
  (measured with numba 0.68). So after a successful compile the backend calls
  ``record_compiled(path)``, which writes a manifest of the artefacts' sha256 hashes; before
  every load, artefacts that do not match their manifest (or have none) are deleted, and numba
  silently recompiles.

The codegen calls, in order::

    module, path = load_generated_module(source)   # verified entry, imported
    ...compile the module's njit functions (eager signatures)...
    record_compiled(path)                          # manifest; warns once if numba cached nothing

If the cache folder cannot be written, or numba refuses to cache a function, a ``CacheWarning``
says so once per module and graphcomp carries on without a persistent cache.

>>> module, path = load_generated_module("def add_one(x):\\n    return x + 1\\n")
>>> module.add_one(1), path.name.startswith("gc_")
(2, True)
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.abc
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
import uuid
import warnings
from pathlib import Path

from graphcomp.errors import CacheWarning

__all__ = [
    "CacheWarning", "cache_dir", "cache_info", "clear_cache", "load_generated_module",
    "module_key", "record_compiled", "verify_artefacts",
]

ENV_VAR = "GRAPHCOMP_CACHE_DIR"
PREFIX = "gc_"
_ARTEFACT_SUFFIXES = (".nbi", ".nbc")
_MANIFEST_SUFFIX = ".manifest.json"
_HEADER = "# graphcomp kernel module {key} -- generated, do not edit\n"

_warned: set[str] = set()
_fallback_dir: Path | None = None


# ---------------------------------------------------------------- locations and keys


def cache_dir() -> Path:
    """The cache folder: ``$GRAPHCOMP_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphcomp`` (default
    ``~/.cache/graphcomp``). Created (private to the user) on demand.

    >>> cache_dir().is_dir()
    True
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base).expanduser() / "graphcomp"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path.resolve()


@functools.cache
def _environment_fingerprint() -> str:
    import llvmlite
    import llvmlite.binding as llvm
    import numba
    import numpy

    from graphcomp import __version__

    parts = [
        f"graphcomp={__version__}",
        f"numba={numba.__version__}",
        f"llvmlite={llvmlite.__version__}",
        f"numpy={numpy.__version__}",
        f"python={sys.version_info.major}.{sys.version_info.minor}",
        f"cpu={llvm.get_host_cpu_name()}",
        f"features={llvm.get_host_cpu_features().flatten()}",
    ]
    return "\n".join(parts)


def module_key(source: str) -> str:
    """The hex sha256 naming the cache entry of ``source`` on this machine and software stack.

    >>> len(module_key("x = 1\\n"))
    64
    """
    digest = hashlib.sha256()
    digest.update(_environment_fingerprint().encode())
    digest.update(b"\0")
    digest.update(source.encode())
    return digest.hexdigest()


def _numba_cache_path(entry: Path) -> Path:
    """Where numba keeps the compiled artefacts of ``entry`` (mirrors numba's locators)."""
    from numba.core import caching, config

    cache_dir = getattr(config, "CACHE_DIR", "")
    if cache_dir:
        locator = caching.UserProvidedCacheLocator
        return Path(cache_dir) / locator.get_suitable_cache_subpath(str(entry))
    return entry.parent / "__pycache__"


def _artefacts(entry: Path) -> list[Path]:
    folder = _numba_cache_path(entry)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob(f"{entry.stem}.*") if p.suffix in _ARTEFACT_SUFFIXES and p.is_file()
    )


def _manifest_path(entry: Path) -> Path:
    return _numba_cache_path(entry) / f"{entry.stem}{_MANIFEST_SUFFIX}"


# ---------------------------------------------------------------- atomic files


def _write_atomically(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    With ``replace=False`` an existing file is left alone (create-if-absent), so two processes
    writing the same entry do not bump its modification time, which numba's index checks.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:16]}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            except OSError:  # a filesystem without hard links
                if not path.exists():
                    os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- loading


class _VerifiedSourceLoader(importlib.abc.Loader):
    """Executes the exact text graphcomp generated, compiled with the cache file as its name."""

    def __init__(self, text: str, path: Path) -> None:
        self._text = text
        self._path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        code = compile(self._text, str(self._path), "exec", dont_inherit=True)
        exec(code, module.__dict__)

    def get_source(self, fullname: str) -> str:
        return self._text


def _warn_once(topic: str, message: str) -> None:
    if topic in _warned:
        return
    _warned.add(topic)
    warnings.warn(message, CacheWarning, stacklevel=3)


def _uncached_dir(reason: OSError, wanted: Path | str) -> Path:
    """A private folder for this process when the cache folder cannot be written."""
    global _fallback_dir
    if _fallback_dir is None:
        _fallback_dir = Path(tempfile.mkdtemp(prefix="graphcomp-uncached-"))
        atexit.register(shutil.rmtree, _fallback_dir, True)
    _warn_once(
        "cache-dir",
        f"graphcomp cannot write its kernel cache at {wanted} ({reason}); compiled kernels are "
        f"kept in {_fallback_dir} for this process only, so every new process compiles again. "
        f"Set {ENV_VAR} to a writable folder.",
    )
    return _fallback_dir


def _place_entry(path: Path, text: bytes) -> None:
    """Make ``path`` hold exactly ``text``: create it, keep it, or rewrite a bad one."""
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        _write_atomically(path, text, replace=False)
        existing = path.read_bytes()
    if existing != text:
        _write_atomically(path, text)
        _discard_artefacts(path)


def load_generated_module(source: str) -> tuple[types.ModuleType, Path]:
    """Import graphcomp-generated ``source`` from its cache file; returns (module, file path).

    The module is registered in ``sys.modules`` as ``gc_<key>`` before it executes: numba's
    cached code refers to its module by that name when a later process loads it.

    >>> module, path = load_generated_module("def double(x):\\n    return 2 * x\\n")
    >>> module.double(21), module.__name__ == path.stem
    (42, True)
    """
    key = module_key(source)
    name = f"{PREFIX}{key}"
    text = _HEADER.format(key=key) + source
    wanted: Path | str = os.environ.get(ENV_VAR) or "the user cache folder"
    try:
        folder = cache_dir()
        path = folder / f"{name}.py"
        _place_entry(path, text.encode())
    except OSError as exc:
        path = _uncached_dir(exc, wanted) / f"{name}.py"
        _place_entry(path, text.encode())
    verify_artefacts(path)

    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded, path
    loader = _VerifiedSourceLoader(text, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    return module, path


# ---------------------------------------------------------------- numba artefacts


def _discard_artefacts(entry: Path) -> int:
    removed = 0
    for artefact in [*_artefacts(entry), _manifest_path(entry)]:
        try:
            artefact.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def verify_artefacts(entry: Path) -> bool:
    """True when numba's artefacts for ``entry`` all match their manifest (or there are none).

    Artefacts that do not (unrecorded, changed, truncated: say a function numba compiled after
    the manifest was written) are deleted, so that numba recompiles them instead of unpickling
    files graphcomp did not record; the recorded ones stay. Returns False when any was deleted.

    >>> verify_artefacts(cache_dir() / "gc_no_such_module.py")
    True
    """
    artefacts = _artefacts(entry)
    if not artefacts:
        _manifest_path(entry).unlink(missing_ok=True)
        return True
    try:
        recorded = json.loads(_manifest_path(entry).read_text())["files"]
        if not isinstance(recorded, dict):
            raise TypeError("manifest files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError):
        _discard_artefacts(entry)
        return False
    intact = True
    for artefact in artefacts:
        if recorded.get(artefact.name) != _sha256_file(artefact):
            artefact.unlink(missing_ok=True)
            intact = False
    return intact


def _uncached_functions(module: types.ModuleType, entry: Path) -> list[str]:
    from numba.core.dispatcher import Dispatcher

    indexes = {p.name for p in _artefacts(entry) if p.suffix == ".nbi"}
    missing = []
    for value in vars(module).values():
        if isinstance(value, Dispatcher) and value.signatures:
            qualname = value.py_func.__qualname__
            if not any(n.startswith(f"{entry.stem}.{qualname}-") for n in indexes):
                missing.append(qualname)
    return sorted(missing)


def record_compiled(path: Path) -> bool:
    """Record the hashes of numba's artefacts for the module at ``path``, after compiling it.

    Call it once the module's functions are compiled (a cache hit may call it too: an unchanged
    manifest is not rewritten). Warns once, with a ``CacheWarning``, if numba cached nothing
    for some compiled function; returns True when every compiled function is cached.

    >>> module, path = load_generated_module("x = 1\\n")
    >>> record_compiled(path)
    True
    """
    path = Path(path)
    artefacts = _artefacts(path)
    files = {p.name: _sha256_file(p) for p in artefacts}
    manifest = _manifest_path(path)
    if files:
        try:
            if json.loads(manifest.read_text())["files"] == files:
                files = {}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if files:
            record = {"module": path.stem, "files": files}
            _write_atomically(manifest, json.dumps(record, indent=1, sort_keys=True).encode())
    module = sys.modules.get(path.stem)
    missing = _uncached_functions(module, path) if module is not None else []
    if missing:
        _warn_once(
            f"uncached:{path.stem}",
            f"numba did not cache {', '.join(missing)} of generated module {path}; every new "
            f"process will compile it again (see numba's warning for the reason)",
        )
    return not missing


# ---------------------------------------------------------------- the CLI's view


def _entry_files(folder: Path) -> list[Path]:
    """Every file in ``folder`` that belongs to the graphcomp cache (nothing else is touched)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob(f"{PREFIX}*.py") if p.is_file()]
    files += [p for p in folder.glob(f".{PREFIX}*.tmp") if p.is_file()]
    for entry in folder.glob(f"{PREFIX}*.py"):
        numba_folder = _numba_cache_path(entry)
        if numba_folder.is_dir():
            files += [p for p in numba_folder.glob(f"{entry.stem}.*") if p.is_file()]
    pycache = folder / "__pycache__"
    if pycache.is_dir():  # artefacts (and numba's temporaries) of entries already removed
        files += [p for p in pycache.glob(f"{PREFIX}*") if p.is_file()]
        files += [p for p in pycache.glob(f".{PREFIX}*.tmp") if p.is_file()]
    return sorted(set(files))


def cache_info() -> dict[str, object]:
    """Where the cache is, how many modules it holds and how many bytes it uses.

    >>> sorted(cache_info())
    ['bytes', 'entries', 'path']
    """
    folder = cache_dir()
    files = _entry_files(folder)
    total = 0
    for file in files:
        try:
            total += file.stat().st_size
        except FileNotFoundError:
            pass
    entries = sum(1 for p in folder.glob(f"{PREFIX}*.py") if p.is_file())
    return {"path": str(folder), "entries": entries, "bytes": total}


def clear_cache() -> int:
    """Delete every graphcomp cache file (and numba's artefacts of them); returns the count.

    >>> isinstance(clear_cache(), int)
    True
    """
    removed = 0
    for file in _entry_files(cache_dir()):
        try:
            file.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
