"""Checkpoints: parameter values by name in an ``.npz`` file, written atomically.

File format (version 1), an uncompressed numpy ``.npz`` archive holding only plain arrays:

- ``format_version``: int64 scalar, 1;
- ``names``: unicode array of the parameter names, in the order given to ``save``;
- ``value_0``, ``value_1``, …: the values, in the same order.

Names are stored in an array (not as archive keys) so that any name (``"W1/adam.m"``) works.
When the parameters' graph draws random numbers, its generator state (``random.state``,
``gc.random.state``) is saved and restored with them, as one more named value; a checkpoint
without it (written before the graph drew, or by an older version) loads and leaves the
generator as it is.
``save`` writes a temporary file ``.NAME.<16 hex digits>.tmp`` beside the target, holding a lock
on it, and renames it over the target, so a crash mid-write never destroys the previous
checkpoint; the next save to the same path deletes such files whose writer has died (a killed
save cannot clean up after itself). ``load`` checks every entry and never unpickles.

>>> # gc.save("model.npz", params + opt.state); ...; gc.load("model.npz", params + opt.state)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import zipfile
from collections import Counter
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

from graphcomp.errors import DTypeError, FileFormatError, GraphError, ShapeError
from graphcomp.ops import Parameter
from graphcomp.random.state import STATE_NAME, existing_state

if sys.platform != "win32":
    import fcntl

FORMAT_VERSION = 1

__all__ = ["FORMAT_VERSION", "load", "save"]


def _names_of(params: Sequence[Parameter]) -> list[str]:
    names: list[str] = []
    for param in params:
        if not isinstance(param, Parameter):
            raise GraphError(f"checkpoints hold parameters; got {param!r}")
        if not param.name:
            raise GraphError(
                f"parameter {param.node.label()} (created at {param.node.source}) has no name; "
                "checkpoints store values by name: give it one with gc.parameter(..., name=...)"
            )
        names.append(param.name)
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise GraphError(f"two parameters share the name(s) {duplicates}; names must be unique")
    return names


def _with_random_state(params: list[Parameter]) -> list[Parameter]:
    """``params`` and, if their graph has one and it is not among them, its random state."""
    state = existing_state(params[0].graph) if params else None
    if state is None or any(p.node is state.node for p in params):
        return params
    return [*params, state]


def save(path: str | os.PathLike[str], params: Sequence[Parameter]) -> None:
    """Write the current values of ``params`` to ``path`` (atomic: temp file, then rename).

    Every check (names, the folder) comes before anything is written; a failed save leaves an
    existing file at ``path`` as it was. Temporary files left by an interrupted earlier save to
    the same path are removed first.

    >>> # gc.save("model.npz", [W1, b1, W2, b2] + opt.state)
    """
    path = os.fspath(path)
    params = _with_random_state(list(params))
    names = _names_of(params)
    target = check_writable(path, "checkpoint")
    arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
              "names": np.array(names, dtype=str)}
    for i, param in enumerate(params):
        arrays[f"value_{i}"] = param.graph.parameter_values[param.node.id]
    remove_orphaned_temp_files(target)
    existed = os.path.exists(target)
    try:
        _write_atomically(target, arrays)
    except OSError as exc:
        kept = "the existing file is unchanged" if existed else "nothing was written"
        raise FileFormatError(
            f"could not write checkpoint {path!r} ({exc.strerror or exc}); {kept}"
        ) from exc


def check_writable(path: str | os.PathLike[str], what: str = "file") -> str:
    """Refuse a path graphcomp cannot write a file to; returns it made absolute.

    The folder must exist and take new files, and the path must not be a folder itself.

    >>> # check_writable("runs/model.npz", "checkpoint") before hours of training
    """
    shown = os.fspath(path)
    target = os.path.abspath(shown)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        problem = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise FileFormatError(f"cannot write {what} {shown!r}: the folder {folder!r} {problem}")
    if os.path.isdir(target):
        raise FileFormatError(f"cannot write {what} {shown!r}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileFormatError(
            f"cannot write {what} {shown!r}: no permission to create files in {folder!r}"
        )
    return target


def _temp_name(target: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{os.path.basename(target)}.") + r"[0-9a-f]{16}\.tmp")


def remove_orphaned_temp_files(target: str) -> list[str]:
    """Delete the temp files that interrupted saves to ``target`` left beside it; returns them.

    A temp file whose writer still runs is kept: writers hold a lock on theirs until the rename
    (POSIX only; elsewhere nothing is removed).
    """
    if sys.platform == "win32":
        return []
    folder, pattern = os.path.dirname(target), _temp_name(target)
    try:
        with os.scandir(folder) as entries:
            candidates = sorted(e.path for e in entries if pattern.fullmatch(e.name)
                                and e.is_file(follow_symlinks=False))
    except OSError:
        return []
    removed = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a writer holds it
                os.unlink(candidate)
                removed.append(candidate)
            finally:
                os.close(fd)
    return removed


def _open_temp(target: str) -> tuple[int, str]:
    """Create and lock a new temp file beside ``target``: (descriptor, path)."""
    while True:
        temp = os.path.join(os.path.dirname(target),
                            f".{os.path.basename(target)}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if sys.platform == "win32":
            return fd, temp
        # Where the file system has no locks, sweeps cannot lock (so remove) anything either.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        # A concurrent sweep may have taken the new file for an orphan before the lock.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(temp)):
                return fd, temp
        os.close(fd)


def _write_atomically(target: str, arrays: dict[str, np.ndarray]) -> None:
    fd, temp = _open_temp(target)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
            if sys.platform == "win32":
                f.close()  # Windows cannot rename an open file
            os.replace(temp, target)  # still locked here: no sweep takes it for an orphan
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _write_npz(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    np.savez(file, allow_pickle=False, **arrays)  # plain arrays only (see the format above)


def read(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All values of a checkpoint file, by name (no graph needed).

    Anything but a well-formed checkpoint raises ``FileFormatError``; nothing is unpickled.

    >>> # values = gc.train.checkpoint.read("model.npz"); values["W1"].shape
    """
    path = os.fspath(path)
    _check_is_zip(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _read_archive(path, archive)
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise FileFormatError(
            f"checkpoint file {path!r} is damaged or truncated ({type(exc).__name__}: {exc})"
        ) from None


_ZIP_MAGIC = b"PK\x03\x04"


def _check_is_zip(path: str) -> None:
    """Refuse a missing file, a folder and anything not a zip archive (by its first bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except FileNotFoundError:
        raise FileFormatError(f"checkpoint file {path!r} does not exist") from None
    except IsADirectoryError:
        raise FileFormatError(f"checkpoint file {path!r} is a folder, not a file") from None
    except OSError as exc:
        raise FileFormatError(f"cannot read checkpoint file {path!r} ({exc.strerror})") from None
    if not head:
        raise FileFormatError(f"checkpoint file {path!r} is empty (damaged or truncated)")
    if head != _ZIP_MAGIC:
        kind = "a single .npy array" if head.startswith(b"\x93NUM") else f"it starts {head!r}"
        raise FileFormatError(
            f"{path!r} is not a graphcomp checkpoint: not an .npz archive ({kind})"
        )


def _read_archive(path: str, archive: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    keys = set(archive.files)
    if "format_version" not in keys or "names" not in keys:
        raise FileFormatError(
            f"{path!r} is an .npz archive but not a graphcomp checkpoint "
            f"(no format_version/names entries; it has {sorted(keys)[:5]})"
        )
    _check_version(path, _entry(path, archive, "format_version"))
    names = _names_in(path, _entry(path, archive, "names"))
    value_keys = [f"value_{i}" for i in range(len(names))]
    for key, name in zip(value_keys, names, strict=True):
        if key not in keys:
            raise FileFormatError(
                f"checkpoint {path!r} is malformed: no entry {key!r} for {name!r}"
            )
    unexpected = sorted(keys - set(value_keys) - {"format_version", "names"})
    if unexpected:
        raise FileFormatError(
            f"checkpoint {path!r} is malformed: entries {unexpected[:5]} that no name refers to"
        )
    return {name: _entry(path, archive, key) for key, name in zip(value_keys, names, strict=True)}


def _check_version(path: str, version: np.ndarray) -> None:
    if version.shape != () or version.dtype.kind not in "iu":
        raise FileFormatError(
            f"checkpoint {path!r} has a malformed format_version ({_describe(version)}; "
            "expected an integer scalar)"
        )
    if int(version) != FORMAT_VERSION:
        raise FileFormatError(
            f"checkpoint {path!r} has format version {int(version)}; this graphcomp reads "
            f"version {FORMAT_VERSION}"
        )


def _names_in(path: str, names: np.ndarray) -> list[str]:
    if names.ndim != 1 or names.dtype.kind != "U":
        raise FileFormatError(
            f"checkpoint {path!r} has malformed names ({_describe(names)}; expected a 1-d array "
            "of strings)"
        )
    result = [str(n) for n in names]
    duplicates = sorted(n for n, count in Counter(result).items() if count > 1)
    if duplicates:
        raise FileFormatError(
            f"checkpoint {path!r} holds the name(s) {duplicates} more than once; which value "
            "is meant is unknown"
        )
    return result


def _entry(path: str, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        raise FileFormatError(
            f"checkpoint {path!r}: entry {key!r} holds Python objects (pickled data); "
            "checkpoints hold plain arrays and graphcomp never unpickles"
        ) from None


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} array of shape {array.shape}"


def load(path: str | os.PathLike[str], params: Sequence[Parameter], strict: bool = True) -> None:
    """Restore ``params`` from ``path`` by name, after checking every name, shape and dtype.

    Nothing is assigned unless everything matches. With ``strict`` (the default) values in the
    file that no given parameter takes are an error too.

    >>> # gc.load("model.npz", [W1, b1, W2, b2] + opt.state)
    """
    path = os.fspath(path)
    params = list(params)
    values = read(path)
    if STATE_NAME in values:
        params = _with_random_state(params)
    names = _names_of(params)
    missing = [n for n in names if n not in values]
    if missing:
        raise GraphError(
            f"checkpoint {path!r} has no value for parameter(s) {missing}; it holds "
            f"{sorted(values)}"
        )
    extra = sorted(set(values) - set(names) - {STATE_NAME})  # a graph that never draws
    if strict and extra:
        raise GraphError(
            f"checkpoint {path!r} holds value(s) {extra} that none of the given parameters "
            "takes (pass them too, e.g. the optimizer's state, or load with strict=False)"
        )
    for param, name in zip(params, names, strict=True):
        value = values[name]
        storage = param.graph.parameter_values[param.node.id]
        if value.shape != storage.shape:
            raise ShapeError(
                f"checkpoint {path!r}: parameter {name!r} has shape {value.shape} in the file "
                f"but {storage.shape} in the graph"
            )
        if value.dtype != storage.dtype:
            raise DTypeError(
                f"checkpoint {path!r}: parameter {name!r} has dtype {value.dtype} in the file "
                f"but {storage.dtype} in the graph"
            )
    for param, name in zip(params, names, strict=True):
        np.copyto(param.graph.parameter_values[param.node.id], values[name])
