"""MNIST's IDX files: gc.data.load_mnist, and `graphcomp train cnn-digits --data DIR`."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.train.examples import run_example


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture
def mnist_folder(tmp_path):
    """A tiny MNIST: class k lights the k-th 2-row band of a 28x28 image."""
    rng = np.random.default_rng(0)
    parts = {"train": 48, "t10k": 20}
    for part, n in parts.items():
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 40, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 * k + 4: 2 * k + 6] = 255
        # one spelling of each file name per part: '-idx' plain, '.idx' gzipped
        if part == "train":
            write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=False)
            write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress=False)
        else:
            write_idx(tmp_path / "t10k-images.idx3-ubyte.gz", images, compress=True)
            write_idx(tmp_path / "t10k-labels.idx1-ubyte.gz", labels, compress=True)
    return tmp_path


def test_load_mnist_scales_images_and_finds_both_spellings(mnist_folder):
    X_train, X_test, y_train, y_test = gc.data.load_mnist(mnist_folder)
    assert X_train.shape == (48, 28, 28) and X_test.shape == (20, 28, 28)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    assert X_train.max() == 1.0 and X_train.min() >= 0.0
    assert len(y_train) == 48 and len(y_test) == 20 and y_test.max() <= 9


def test_a_missing_file_names_what_was_looked_for(mnist_folder):
    (mnist_folder / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(gc.FileFormatError, match="no MNIST file 'train-labels-idx1-ubyte'.*"
                                                  r"train-labels-idx1-ubyte\.gz"):
        gc.data.load_mnist(mnist_folder)


def test_cnn_digits_with_data_trains_a_lenet_on_the_idx_files(mnist_folder):
    result = run_example("cnn-digits", epochs=2, backend="numpy", progress=False,
                         data=str(mnist_folder))
    shapes = {p.name: p.shape for p in result.model.params}
    assert shapes["conv1"] == (6, 1, 5, 5) and shapes["conv2"] == (16, 6, 5, 5)
    assert shapes["W1"] == (400, 120) and shapes["W3"] == (84, 10)
    assert result.history.steps == 2  # 48 images, batch 64: one step per epoch
    losses = result.history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert 0.0 <= result.test_accuracy <= 1.0 and np.isfinite(result.test_loss)


def test_data_is_refused_for_the_other_examples(mnist_folder):
    with pytest.raises(gc.GraphcompError, match="--data is for cnn-digits"):
        run_example("mlp-digits", epochs=1, backend="numpy", progress=False,
                    data=str(mnist_folder))
