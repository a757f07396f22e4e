"""gc.data: minibatches, split, and the IDX loader on small files the tests write."""

import gzip
import struct

import numpy as np
import pytest

import graphcomp as gc


def idx_bytes(array, type_code):
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def test_batches_cover_the_data_with_a_partial_last_batch():
    X, Y = np.arange(14).reshape(7, 2), np.arange(7)
    got = list(gc.data.batches(X, Y, batch_size=3))
    assert [len(yb) for _, yb in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), X)
    assert gc.data.num_batches(7, 3) == 3 and gc.data.num_batches(7, 3, drop_last=True) == 2
    assert [len(yb) for _, yb in gc.data.batches(X, Y, batch_size=3, drop_last=True)] == [3, 3]


def test_shuffled_batches_are_a_reproducible_permutation():
    X, Y = np.arange(20).reshape(10, 2), np.arange(10)
    first = list(gc.data.batches(X, Y, batch_size=4, shuffle=True, seed=1))
    again = list(gc.data.batches(X, Y, batch_size=4, shuffle=True, seed=1))
    order = np.concatenate([yb for _, yb in first])
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    np.testing.assert_array_equal(order, np.concatenate([yb for _, yb in again]))
    for xb, yb in first:
        np.testing.assert_array_equal(xb, X[yb])  # rows stay aligned


def test_split_is_aligned_and_disjoint():
    X, Y = np.arange(20).reshape(10, 2), np.arange(10)
    _, X_te, Y_tr, Y_te = gc.data.split(X, Y, test_fraction=0.3, seed=0)
    assert len(Y_te) == 3 and len(Y_tr) == 7
    assert sorted(np.concatenate([Y_tr, Y_te])) == list(range(10))
    np.testing.assert_array_equal(X_te, X[Y_te])


def test_batches_reject_mismatched_arrays():
    with pytest.raises(gc.InputError, match=r"same length .* \[3, 2\]"):
        list(gc.data.batches(np.zeros(3), np.zeros(2), batch_size=2))
    with pytest.raises(gc.InputError, match="batch_size"):
        list(gc.data.batches(np.zeros(3), batch_size=0))


@pytest.mark.parametrize("dtype, code", [(">u1", 0x08), (">i1", 0x09), (">i2", 0x0B),
                                         (">i4", 0x0C), (">f4", 0x0D), (">f8", 0x0E)])
def test_load_idx_reads_every_type(tmp_path, dtype, code):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array, code))
    loaded = gc.data.load_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(loaded, array)
    assert loaded.dtype == array.dtype.newbyteorder("=") and loaded.dtype.isnative


def test_load_idx_reads_gzip_and_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 0x08)))
    (tmp_path / "labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08))
    np.testing.assert_array_equal(gc.data.load_idx(tmp_path / "images-idx3-ubyte.gz"), images)
    np.testing.assert_array_equal(gc.data.load_idx(str(tmp_path / "labels-idx1-ubyte")), labels)


def test_load_idx_errors_name_the_problem(tmp_path):
    good = idx_bytes(np.zeros((2, 3), dtype=np.uint8), 0x08)
    cases = {
        "short": (b"\x00\x00", "header needs at least 4"),
        "magic": (b"\x01\x02" + good[2:], "expected magic bytes 00 00, got 01 02"),
        "type": (good[:2] + b"\x07" + good[3:], "unknown data type code 0x07"),
        "dims": (good[:8], r"declares 2 dimensions \(12 bytes\) but the file has 8"),
        "truncated": (good[:-1], r"truncated: shape \(2, 3\) of uint8 needs 6 data bytes, .* 5"),
        "long": (good + b"\x00", "longer than its header says"),
        "gzip": (gzip.compress(good)[:-6], "damaged gzip"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(gc.FileFormatError, match=message):
            gc.data.load_idx(tmp_path / name)
    with pytest.raises(gc.FileFormatError, match="cannot read IDX file"):
        gc.data.load_idx(tmp_path / "missing")
