"""Checkpoints: parameter values by name in an ``.npz`` file, written atomically.

File format (version 1), an uncompressed numpy ``.npz`` archive holding only plain arrays:

- ``format_version``: int64 scalar, 1;
- ``names``: unicode array of the parameter names, in the order given to ``save``;
- ``value_0``, ``value_1``, …: the values, in the same order.

Names are stored in an array (not as archive keys) so that any name (``"W1/adam.m"``) works.
``save`` writes a temporary file beside the target and renames it over the target, so a crash
mid-write never destroys the previous checkpoint. ``load`` never unpickles.

>>> # gc.save("model.npz", params + opt.state); ...; gc.load("model.npz", params + opt.state)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

from graphcomp.errors import DTypeError, FileFormatError, GraphError, ShapeError
from graphcomp.ops import Parameter

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


def save(path: str | os.PathLike[str], params: Sequence[Parameter]) -> None:
    """Write the current values of ``params`` to ``path`` (atomic: temp file, then rename).

    >>> # gc.save("model.npz", [W1, b1, W2, b2] + opt.state)
    """
    path = os.fspath(path)
    params = list(params)
    names = _names_of(params)
    arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
              "names": np.array(names, dtype=str)}
    for i, param in enumerate(params):
        arrays[f"value_{i}"] = param.graph.parameter_values[param.node.id]
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                     dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def _write_npz(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    np.savez(file, allow_pickle=False, **arrays)  # plain arrays only (see the format above)


def read(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All values of a checkpoint file, by name (no graph needed).

    >>> # values = gc.train.checkpoint.read("model.npz"); values["W1"].shape
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise FileFormatError(f"{path!r} holds one .npy array, not a graphcomp checkpoint")
            keys = set(archive.files)
            if "format_version" not in keys or "names" not in keys:
                raise FileFormatError(
                    f"{path!r} is an .npz archive but not a graphcomp checkpoint "
                    f"(no format_version/names entries; it has {sorted(keys)[:5]})"
                )
            version = int(archive["format_version"])
            if version != FORMAT_VERSION:
                raise FileFormatError(
                    f"checkpoint {path!r} has format version {version}; this graphcomp reads "
                    f"version {FORMAT_VERSION}"
                )
            names = [str(n) for n in archive["names"]]
            return {name: archive[f"value_{i}"] for i, name in enumerate(names)}
    except FileFormatError:
        raise
    except FileNotFoundError:
        raise FileFormatError(f"checkpoint file {path!r} does not exist") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise FileFormatError(
            f"checkpoint file {path!r} is damaged or truncated ({type(exc).__name__}: {exc})"
        ) from None


def load(path: str | os.PathLike[str], params: Sequence[Parameter], strict: bool = True) -> None:
    """Restore ``params`` from ``path`` by name, after checking every name, shape and dtype.

    Nothing is assigned unless everything matches. With ``strict`` (the default) values in the
    file that no given parameter takes are an error too.

    >>> # gc.load("model.npz", [W1, b1, W2, b2] + opt.state)
    """
    path = os.fspath(path)
    params = list(params)
    names = _names_of(params)
    values = read(path)
    missing = [n for n in names if n not in values]
    if missing:
        raise GraphError(
            f"checkpoint {path!r} has no value for parameter(s) {missing}; it holds "
            f"{sorted(values)}"
        )
    extra = sorted(set(values) - set(names))
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
