"""The on-disk cache of generated kernel modules.

A generated module becomes a real file ``<cache_dir>/gc_<key>.py`` (numba can only cache
functions that live in a real file), where ``key`` hashes the source together with the
graphcomp, numba, llvmlite, numpy and Python versions and the host CPU. Numba's
``njit(cache=True)`` then keeps the compiled code in ``__pycache__`` beside it, so a second
process compiles nothing. A locator of graphcomp's own, first in numba's list, puts every
artefact of these modules there, whatever ``NUMBA_CACHE_DIR`` says, and never in numba's
user-wide folder (``~/.cache/numba``).

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
- Artefacts that match their manifest but still cannot be read (they were damaged before they
  were recorded), and artefacts numba cannot write, give a ``CacheWarning``: the function's
  artefacts are deleted and it is compiled again.
- Damaged structure heals: a ``__pycache__`` that is not a folder is moved aside (renamed
  ``__pycache__.quarantined-<id>``); an entry, manifest or artefact path that is a folder is
  removed.

The codegen calls, in order::

    module, path = load_generated_module(source)   # verified entry, imported
    ...compile the module's njit functions (eager signatures)...
    record_compiled(path)                          # manifest; warns once if numba cached nothing

If the cache folder (or its ``__pycache__``) cannot be written, entries it already holds are
still used: their verified artefacts are copied beside a copy of the entry in a private folder
of the user's (``<tmp>/graphcomp-<uid>/``, mode 0700, checked to be the user's own), where
new kernels are cached too; a ``CacheWarning`` says so once per process. If numba refuses to
cache a function, a ``CacheWarning`` says so once per module.

>>> module, path = load_generated_module("def add_one(x):\\n    return x + 1\\n")
>>> module.add_one(1), path.name.startswith("gc_")
(2, True)
"""

from __future__ import annotations

import atexit
import errno
import functools
import hashlib
import importlib.abc
import importlib.util
import json
import os
import shutil
import stat
import sys
import tempfile
import types
import uuid
import warnings
from pathlib import Path
from typing import Any

from graphcomp.errors import CacheError, CacheWarning

__all__ = [
    "CacheWarning", "cache_dir", "cache_info", "clear_cache", "load_generated_module",
    "module_key", "module_name", "record_compiled", "verify_artefacts",
]

ENV_VAR = "GRAPHCOMP_CACHE_DIR"
PREFIX = "gc_"
WARM_PREFIX = "warm-"  # a background compile's hint that a program's modules are all here
_ARTEFACT_SUFFIXES = (".nbi", ".nbc")
_MANIFEST_SUFFIX = ".manifest.json"
_QUARANTINED = ".quarantined-"
_HEADER = "# graphcomp kernel module {key} -- generated, do not edit\n"

_warned: set[str] = set()
_fallback_dir: Path | None = None
# Entry files this process has loaded: graphcomp's numba locator answers for these only.
_entries: set[str] = set()
_usable_folders: set[str] = set()


# ---------------------------------------------------------------- locations and keys


def cache_dir() -> Path:
    """The cache folder: ``$GRAPHCOMP_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphcomp`` (default
    ``~/.cache/graphcomp``). Created (private to the user) on demand; a ``CacheError`` when a
    file is in the way.

    >>> cache_dir().is_dir()
    True
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base).expanduser() / "graphcomp"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CacheError(
            f"the kernel cache path {path} is not a folder (a file is in the way); "
            f"set {ENV_VAR} to a folder"
        ) from None
    return path.resolve()


@functools.cache
def _environment_fingerprint() -> str:
    # numba's version from its package metadata (the same string as numba.__version__): a
    # background compile names its modules without importing numba (backends/numba/background.py)
    from importlib.metadata import version

    import llvmlite
    import llvmlite.binding as llvm
    import numpy

    from graphcomp import __version__

    parts = [
        f"graphcomp={__version__}",
        f"numba={version('numba')}",
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


def module_name(source: str) -> str:
    """The module (and file stem) name of ``source``'s cache entry: ``gc_<module_key>``.

    >>> module_name("x = 1\\n").startswith(PREFIX)
    True
    """
    return f"{PREFIX}{module_key(source)}"


def _numba_cache_path(entry: Path) -> Path:
    """Where numba keeps the compiled artefacts of ``entry`` (graphcomp's locator puts them
    there)."""
    return entry.parent / "__pycache__"


def _artefacts(entry: Path) -> list[Path]:
    """Numba's artefacts of ``entry``; anything with an artefact's name, files or not."""
    folder = _numba_cache_path(entry)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{entry.stem}.*") if p.suffix in _ARTEFACT_SUFFIXES)


def _manifest_path(entry: Path) -> Path:
    return _numba_cache_path(entry) / f"{entry.stem}{_MANIFEST_SUFFIX}"


@functools.cache
def _install_locator() -> None:
    """Put graphcomp's cache locator first in numba's list (once per process).

    It answers only for the entry files graphcomp loaded, and always with their
    ``__pycache__``: numba's own list would pick ``NUMBA_CACHE_DIR``, or fall back to the
    user-wide ``~/.cache/numba`` when ``__pycache__`` is not writable, both out of reach of the
    manifest and of ``graphcomp cache clear``. Writability is checked before an entry is placed,
    and a failed write becomes a ``CacheWarning`` (see ``_HealingCache``).
    """
    from numba.core import caching

    class GraphcompEntryLocator(caching.InTreeCacheLocator):
        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if py_file not in _entries:
                return None
            return cls(py_func, py_file)

    caching.CacheImpl._locator_classes.insert(0, GraphcompEntryLocator)


# ---------------------------------------------------------------- files


def _write_atomically(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    With ``replace=False`` an existing file is left alone (create-if-absent), so two processes
    writing the same entry do not bump its modification time, which numba's index checks.

    No ``fsync``: the rename keeps readers from seeing a half-written file, and whatever a
    crash may leave (an empty or short file) is caught on reading, as every entry is compared
    with its text and every artefact with its manifest's digest. An ``fsync`` per file cost
    4-8 ms here, 0.25-0.47 s of cnn-digits' cold compile (61 files; docs/performance.md).
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:16]}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
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


def _digest(path: Path) -> str | None:
    """The hex sha256 of the file at ``path``; None when it cannot be read as a file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _remove(path: Path) -> None:
    """Delete ``path``, a file or (damage) a whole folder standing where a file belongs."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (a probe: permission bits do not tell, for
    root or on a read-only mount)."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _warn_once(topic: str, message: str) -> None:
    if topic in _warned:
        return
    _warned.add(topic)
    warnings.warn(message, CacheWarning, stacklevel=3)


def _quarantine_non_folder(path: Path) -> None:
    """Move aside whatever stands at ``path`` where a folder belongs (kept, never deleted)."""
    if not os.path.lexists(path) or path.is_dir():
        return
    target = path.with_name(f"{path.name}{_QUARANTINED}{uuid.uuid4().hex[:8]}")
    os.rename(path, target)
    _warn_once(
        f"quarantine:{target}",
        f"graphcomp found a file at {path}, where its kernel cache keeps numba's compiled code, "
        f"and moved it to {target}; the kernels are compiled and cached again",
    )


# ---------------------------------------------------------------- the private folder


def _private_root() -> Path:
    """The user's own folder for kernels that the cache folder cannot take."""
    return Path(tempfile.gettempdir()) / f"graphcomp-{os.getuid()}"


def _ensure_private(folder: Path) -> None:
    """Create ``folder`` (mode 0700) or check that it is a real folder of this user's that no one
    else can write: numba unpickles what it finds there."""
    folder.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(errno.EACCES, "not a private folder of this user", str(folder))


def _private_dir(folder: Path | None) -> Path:
    """A writable folder of this user's for the kernels of cache ``folder``: kept across
    processes where possible, else one for this process, removed when it ends."""
    global _fallback_dir
    try:
        root = _private_root()
        _ensure_private(root)
        private = root / hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        _ensure_private(private)
        if _usable(private):
            return private
    except OSError:
        pass
    if _fallback_dir is None:
        _fallback_dir = Path(tempfile.mkdtemp(prefix="graphcomp-uncached-"))
        atexit.register(shutil.rmtree, _fallback_dir, True)
    return _fallback_dir


def has_compiled(source: str) -> bool:
    """Whether the cache folder holds recorded Numba artefacts of module ``source`` (loading
    them is a warm start; ``load_generated_module`` still verifies them)."""
    try:
        path = cache_dir() / f"{PREFIX}{module_key(source)}.py"
        return (path.is_file() and bool(_artefacts(path))
                and _read_manifest(_manifest_path(path)) is not None)
    except OSError:
        return False


def writable_cache() -> bool:
    """Whether new entries go into ``cache_dir()`` itself (not a private folder of this
    process), so that another process can compile into it for this one."""
    try:
        return _usable(cache_dir())
    except CacheError:
        return False


def _usable(folder: Path) -> bool:
    """Whether graphcomp and numba can write in ``folder`` and its ``__pycache__`` (a file
    standing where ``__pycache__`` belongs is moved aside first). A folder found usable is not
    probed again in this process: a later failure to write is a ``CacheWarning`` anyway."""
    if str(folder) in _usable_folders:
        return True
    if not _writable(folder):
        return False
    pycache = _numba_cache_path(folder / "entry.py")
    _quarantine_non_folder(pycache)
    if pycache.exists() and not _writable(pycache):
        return False
    _usable_folders.add(str(folder))
    return True


def _read_manifest(manifest: Path) -> dict[str, str] | None:
    """The artefact hashes a manifest records; None when it is missing or unreadable."""
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict):
        return None
    return {str(name): str(digest) for name, digest in files.items()}


def _write_manifest(entry: Path, files: dict[str, str]) -> None:
    manifest = _manifest_path(entry)
    if manifest.is_dir() and not manifest.is_symlink():
        _remove(manifest)
    record = {"module": entry.stem, "files": files}
    _write_atomically(manifest, json.dumps(record, indent=1, sort_keys=True).encode())


def _copy_verified(source: Path, target: Path) -> bool:
    """Copy the artefacts of read-only entry ``source`` that match its manifest beside
    ``target``, the same module's private copy; True when there were any."""
    try:
        if source.read_bytes() != target.read_bytes():
            return False
        recorded = _read_manifest(_manifest_path(source)) or {}
        blobs = {}
        for name, digest in recorded.items():
            if Path(name).name != name or not name.startswith(f"{source.stem}."):
                return False
            if Path(name).suffix not in _ARTEFACT_SUFFIXES:
                return False
            blob = (_numba_cache_path(source) / name).read_bytes()
            if hashlib.sha256(blob).hexdigest() != digest:
                return False
            blobs[name] = blob
        if not blobs:
            return False
        _numba_cache_path(target).mkdir(mode=0o700, exist_ok=True)
        for name, blob in blobs.items():
            _write_atomically(_numba_cache_path(target) / name, blob)
        _write_manifest(target, recorded)
    except OSError:
        return False
    return True


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


def _place_entry(path: Path, text: bytes) -> None:
    """Make ``path`` hold exactly ``text``: create it, keep it, or rewrite a bad one."""
    if os.path.lexists(path) and not path.is_file():
        _remove(path)
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        _write_atomically(path, text, replace=False)
        existing = path.read_bytes()
    if existing != text:
        _write_atomically(path, text)
        _discard_artefacts(path)


def _place(name: str, text: bytes) -> Path:
    """The verified entry file of module ``name``: in the cache folder, or in a private folder
    (seeded with the cache folder's verified artefacts) when that one cannot be written."""
    folder: Path | None = None
    try:
        folder = cache_dir()
        if _usable(folder):
            path = folder / f"{name}.py"
            _place_entry(path, text)
            verify_artefacts(path)
            return path
        reason = "it is read-only"
    except OSError as exc:
        reason = str(exc)
    private = _private_dir(folder)
    path = private / f"{name}.py"
    _place_entry(path, text)
    verify_artefacts(path)
    if private is not _fallback_dir and _artefacts(path):
        return path
    if folder is not None and _copy_verified(folder / f"{name}.py", path):
        return path
    lifetime = "for this process only" if private is _fallback_dir else "for this user"
    wanted = folder or os.environ.get(ENV_VAR) or "the user cache folder"
    _warn_once(
        "cache-dir",
        f"graphcomp cannot write its kernel cache at {wanted} ({reason}); kernels that are not "
        f"cached there are kept in {private} {lifetime}. Set {ENV_VAR} to a writable folder.",
    )
    return path


def _execute(name: str, text: str, path: Path) -> types.ModuleType:
    """Run the verified ``text`` as module ``name``, registered in ``sys.modules`` first."""
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
    return module


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
    path = _place(name, text.encode())

    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded, path
    _install_locator()
    _entries.add(str(path))
    try:
        module = _execute(name, text, path)
    except Exception as exc:  # eager signatures load cached code while the module runs
        if not _artefacts(path):
            raise
        _warn_unreadable(path, "its functions", exc)
        _discard_artefacts(path)
        module = _execute(name, text, path)
    _heal_dispatchers(module, path)
    return module, path


# ---------------------------------------------------------------- numba artefacts


def _discard_artefacts(entry: Path, prefix: str | None = None) -> int:
    """Delete the artefacts of ``entry`` (only those whose name starts with ``prefix``, if
    given; else the manifest too); returns how many."""
    doomed = [p for p in _artefacts(entry) if prefix is None or p.name.startswith(prefix)]
    if prefix is None:
        doomed.append(_manifest_path(entry))
    removed = 0
    for artefact in doomed:
        if os.path.lexists(artefact):
            _remove(artefact)
            removed += 1
    return removed


def verify_artefacts(entry: Path) -> bool:
    """True when numba's artefacts for ``entry`` all match their manifest (or there are none).

    Artefacts that do not (unrecorded, changed, truncated: say a function numba compiled after
    the manifest was written) are deleted, so that numba recompiles them instead of unpickling
    files graphcomp did not record; the recorded ones stay. Returns False when any was deleted.
    Raises ``OSError`` when one cannot be deleted.

    >>> verify_artefacts(cache_dir() / "gc_no_such_module.py")
    True
    """
    artefacts = _artefacts(entry)
    if not artefacts:
        _remove(_manifest_path(entry))
        return True
    recorded = _read_manifest(_manifest_path(entry))
    if recorded is None:
        _discard_artefacts(entry)
        return False
    intact = True
    for artefact in artefacts:
        if recorded.get(artefact.name) != _digest(artefact):
            _remove(artefact)
            intact = False
    return intact


def _warn_unreadable(entry: Path, what: str, exc: BaseException) -> None:
    _warn_once(
        f"unreadable:{entry}:{what}",
        f"graphcomp could not use numba's cached code of {what} in {entry} "
        f"({type(exc).__name__}: {exc}); it was discarded and compiled again",
    )


class _HealingCache:
    """Numba's disk cache of one generated function, where an artefact that cannot be read or
    written means a ``CacheWarning`` and a compile, never a crash."""

    def __init__(self, inner: Any, entry: Path, qualname: str) -> None:
        self._inner = inner
        self._entry = entry
        self._qualname = qualname

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        """The cached compile result of ``sig``; None (a miss) when it cannot be loaded."""
        try:
            return self._inner.load_overload(sig, target_context)
        except Exception as exc:  # a corrupt pickle can raise almost anything
            _warn_unreadable(self._entry, self._qualname, exc)
            try:
                _discard_artefacts(self._entry, f"{self._entry.stem}.{self._qualname}-")
            except OSError:
                pass  # numba then overwrites them, or save_overload warns
            return None

    def save_overload(self, sig: Any, data: Any) -> None:
        """Save the compile result of ``sig``; a failure is a ``CacheWarning``."""
        try:
            self._inner.save_overload(sig, data)
        except Exception as exc:
            _warn_once(
                f"unwritable:{self._entry}:{self._qualname}",
                f"graphcomp could not cache numba's compiled code of {self._qualname} in "
                f"{_numba_cache_path(self._entry)} ({type(exc).__name__}: {exc}); every new "
                f"process will compile it again",
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _heal_dispatchers(module: types.ModuleType, entry: Path) -> None:
    """Give each cached numba function of ``module`` a ``_HealingCache``."""
    from numba.core.caching import Cache

    for value in own_dispatchers(module):
        inner = getattr(value, "_cache", None)  # numba's per-function disk cache
        if isinstance(inner, Cache):
            value._cache = _HealingCache(inner, entry, value.py_func.__qualname__)


def own_dispatchers(module: types.ModuleType) -> list[Any]:
    """The numba functions ``module`` defines (not those it imports from other modules,
    whose artefacts are their own module's)."""
    from numba.core.dispatcher import Dispatcher

    return [value for value in vars(module).values()
            if isinstance(value, Dispatcher)
            and getattr(value.py_func, "__module__", None) == module.__name__]


def _uncached_functions(module: types.ModuleType, entry: Path) -> list[str]:
    indexes = {p.name for p in _artefacts(entry) if p.suffix == ".nbi"}
    missing = []
    for value in own_dispatchers(module):
        if value.signatures:
            qualname = value.py_func.__qualname__
            if not any(n.startswith(f"{entry.stem}.{qualname}-") for n in indexes):
                missing.append(qualname)
    return sorted(missing)


def record_compiled(path: Path) -> bool:
    """Record the hashes of numba's artefacts for the module at ``path``, after compiling it.

    Call it once the module's functions are compiled (a cache hit may call it too: an unchanged
    manifest is not rewritten). Warns once, with a ``CacheWarning``, if numba cached nothing
    for some compiled function, or if the manifest cannot be written; returns True when every
    compiled function is cached.

    >>> module, path = load_generated_module("x = 1\\n")
    >>> record_compiled(path)
    True
    """
    path = Path(path)
    files = {p.name: d for p in _artefacts(path) if (d := _digest(p)) is not None}
    if files and _read_manifest(_manifest_path(path)) != files:
        try:
            _write_manifest(path, files)
        except OSError as exc:
            _warn_once(
                f"manifest:{path}",
                f"graphcomp could not record numba's compiled code of {path} ({exc}); the "
                f"next process compiles it again",
            )
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
    files += [p for p in folder.glob(f"{WARM_PREFIX}*") if p.is_file()]
    for entry in folder.glob(f"{PREFIX}*.py"):
        numba_folder = _numba_cache_path(entry)
        if numba_folder.is_dir():
            files += [p for p in numba_folder.glob(f"{entry.stem}.*") if p.is_file()]
    pycache = folder / "__pycache__"
    if pycache.is_dir():  # artefacts (and numba's temporaries) of entries already removed
        files += [p for p in pycache.glob(f"{PREFIX}*") if p.is_file()]
        files += [p for p in pycache.glob(f".{PREFIX}*.tmp") if p.is_file()]
    return sorted(set(files))


def _private_files(folder: Path) -> list[Path]:
    """The files of the private folder that stands in for a read-only cache ``folder``."""
    private = _private_root() / hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    try:
        if not private.is_dir():
            return []
        _ensure_private(private)
    except OSError:  # not the user's own: leave it alone
        return []
    return _entry_files(private)


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
        except OSError:
            pass
    entries = sum(1 for p in folder.glob(f"{PREFIX}*.py") if p.is_file())
    return {"path": str(folder), "entries": entries, "bytes": total}


def clear_cache() -> int:
    """Delete every graphcomp cache file (and numba's artefacts of them), with the private copies
    made while the folder was read-only; returns the count. A ``CacheError`` names what could
    not be deleted.

    >>> isinstance(clear_cache(), int)
    True
    """
    folder = cache_dir()
    removed = 0
    failed: list[OSError] = []
    for file in _entry_files(folder) + _private_files(folder):
        try:
            file.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed.append(exc)
    if failed:
        raise CacheError(
            f"removed {removed} file(s) from the kernel cache {folder}, but {len(failed)} could "
            f"not be removed ({failed[0].strerror}: {failed[0].filename})"
        )
    return removed
