"""Data helpers: minibatches, a reproducible train/test split, and MNIST's IDX file format.

>>> import numpy as np, graphcomp as gc
>>> X, Y = np.arange(10.0).reshape(5, 2), np.arange(5)
>>> [len(xb) for xb, yb in gc.data.batches(X, Y, batch_size=2)]
[2, 2, 1]
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np

from graphcomp.errors import FileFormatError, InputError

__all__ = ["batches", "check_same_length", "load_idx", "load_mnist", "num_batches", "split"]

Seed = int | np.random.Generator | None


def check_same_length(arrays: Sequence[np.ndarray], what: str = "data") -> int:
    """The common first dimension of ``arrays``; ``InputError`` when they differ."""
    if not arrays:
        raise InputError(f"{what}: expected at least one array, got none")
    lengths = []
    for i, array in enumerate(arrays):
        if np.ndim(array) == 0:
            raise InputError(f"{what}: array {i} is a scalar; it needs a first (batch) axis")
        lengths.append(len(array))
    if len(set(lengths)) != 1:
        raise InputError(f"{what}: arrays must have the same length (first axis), got {lengths}")
    return lengths[0]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many minibatches ``batches`` yields for ``n`` examples. ``num_batches(5, 2) == 3``"""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches(*arrays: np.ndarray, batch_size: int, shuffle: bool = False, seed: Seed = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield tuples of aligned minibatches; the last one is smaller unless ``drop_last``.

    With ``shuffle`` the order is a permutation drawn from ``seed`` (an int or a Generator;
    passing the same Generator across epochs gives a new, reproducible order each epoch).

    >>> # for xb, yb in gc.data.batches(X, Y, batch_size=64, shuffle=True, seed=0): ...
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    n = check_same_length(arrays)
    order = None
    if shuffle:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        order = rng.permutation(n)
    for b in range(num_batches(n, batch_size, drop_last)):
        start, stop = b * batch_size, min((b + 1) * batch_size, n)
        if order is None:
            yield tuple(np.asarray(a)[start:stop] for a in arrays)
        else:
            index = order[start:stop]
            yield tuple(np.asarray(a)[index] for a in arrays)


def split(*arrays: np.ndarray, test_fraction: float = 0.2,
          seed: Seed = 0) -> tuple[np.ndarray, ...]:
    """Shuffle and split each array into (train, test): returns ``a_train, a_test, b_train, ...``.

    >>> # X_tr, X_te, Y_tr, Y_te = gc.data.split(X, Y, test_fraction=0.25, seed=0)
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    n = check_same_length(arrays)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = max(1, round(n * test_fraction))
    test, train = order[:n_test], order[n_test:]
    result: list[np.ndarray] = []
    for a in arrays:
        a = np.asarray(a)
        result += [a[train], a[test]]
    return tuple(result)


# ================================================================ IDX files (MNIST's format)

# type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (as MNIST ships: ``train-images-idx3-ubyte``, gzipped or not).

    The header is checked (magic, type code, rank, sizes against the file length); problems
    raise ``FileFormatError`` naming the file and what was wrong. Returns a native-endian array.

    >>> # images = gc.data.load_idx("train-images-idx3-ubyte.gz")   # uint8 (60000, 28, 28)
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise FileFormatError(f"cannot read IDX file {path!r}: {exc.strerror or exc}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FileFormatError(f"IDX file {path!r} is a damaged gzip file: {exc}") from None
    return _parse_idx(raw, path)


def _parse_idx(raw: bytes, path: str) -> np.ndarray:
    if len(raw) < 4:
        raise FileFormatError(f"IDX file {path!r} has {len(raw)} bytes; a header needs at least 4")
    if raw[0] != 0 or raw[1] != 0:
        raise FileFormatError(
            f"IDX file {path!r}: expected magic bytes 00 00, got {raw[0]:02x} {raw[1]:02x}; "
            "not an IDX file"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise FileFormatError(
            f"IDX file {path!r}: unknown data type code 0x{type_code:02X} (expected one of {known})"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise FileFormatError(
            f"IDX file {path!r}: header declares {ndim} dimensions ({header_size} bytes) but the "
            f"file has {len(raw)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header_size
    if got != expected:
        problem = "truncated" if got < expected else "longer than its header says"
        raise FileFormatError(
            f"IDX file {path!r} is {problem}: shape {shape} of {dtype.name} needs {expected} data "
            f"bytes, the file has {got}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header_size)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


# MNIST's four files; mirrors spell them with "-" or "." before "idx", gzipped or not.
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_mnist(folder: str | os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """MNIST (or Fashion-MNIST) from the four IDX files in ``folder``.

    Returns ``X_train, X_test, y_train, y_test``: images as float32 in [0, 1] with shape
    ``(n, 28, 28)``, labels as int64. A missing or malformed file is a ``FileFormatError``
    naming what was looked for.

    >>> # X_train, X_test, y_train, y_test = gc.data.load_mnist("~/data/mnist")
    """
    folder = os.path.expanduser(os.fspath(folder))
    arrays = {key: load_idx(_find_idx(folder, name)) for key, name in _MNIST_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise FileFormatError(
                f"MNIST {part} files in {folder!r}: expected images (n, rows, columns) and n "
                f"labels, got shapes {images.shape} and {labels.shape}"
            )
    scale = np.float32(1 / 255)
    return (arrays["train_images"].astype(np.float32) * scale,
            arrays["test_images"].astype(np.float32) * scale,
            arrays["train_labels"].astype(np.int64), arrays["test_labels"].astype(np.int64))


def _find_idx(folder: str, name: str) -> str:
    dotted = name.replace("-idx", ".idx")
    candidates = [name, name + ".gz", dotted, dotted + ".gz"]
    for candidate in candidates:
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise FileFormatError(f"no MNIST file {name!r} in {folder!r} (looked for "
                          f"{', '.join(candidates)})")
