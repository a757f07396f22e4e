"""``graphcomp train mlp-digits --backend cuda``: a clear one-line error where CUDA cannot
run; on the simulator, the example's training (through ``train_classifier`` and
``RunOptions``, at a reduced size: the full example takes far longer than a test may)
equals the numpy backend's."""

from __future__ import annotations

import numpy as np
import pytest

from graphcomp import cli
from graphcomp.backends.cuda import device
from graphcomp.train.examples import classifiers
from graphcomp.train.examples.base import RunOptions
from graphcomp.train.examples.classifiers import CLASSIFIERS, Classifier, mlp, train_classifier

pytestmark = pytest.mark.needs_numba_cuda


def test_the_command_without_a_gpu_says_what_is_missing(monkeypatch, capsys) -> None:
    from numba import cuda

    monkeypatch.setattr(device, "simulator_requested", lambda: False)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    status = cli.main(["train", "mlp-digits", "--backend", "cuda", "--epochs", "1",
                       "--no-progress"])
    error = capsys.readouterr().err
    assert status == 1 and "Traceback" not in error
    assert error.startswith("graphcomp: error: backend='cuda' found no usable CUDA driver")
    assert "NUMBA_ENABLE_CUDASIM=1" in error and len(error.strip().splitlines()) == 1


def test_mlp_digits_trains_on_the_simulator_like_numpy(monkeypatch) -> None:
    full = classifiers.digits

    def few_digits(seed: int = 0):  # two batches to train on, one to test on
        X_train, X_test, y_train, y_test = full(seed=seed)
        return X_train[:16], X_test[:8], y_train[:16], y_test[:8]

    monkeypatch.setattr(classifiers, "digits", few_digits)
    # The example's optimizer (Adam, cosine decay) on a narrower network and smaller batches:
    # the simulator starts a thread per element (~30 s per step of 32 examples).
    example = CLASSIFIERS["mlp-digits"]
    small = Classifier(lambda seed: mlp((64, 4, 10), seed=seed), example.make_optimizer,
                       epochs=1, batch_size=8)
    results = {backend: train_classifier("mlp-digits", small, RunOptions(
        epochs=1, backend=backend, progress=False)) for backend in ("numpy", "cuda")}
    on_numpy, on_cuda = results["numpy"], results["cuda"]
    assert on_cuda.backend == "cuda" and on_cuda.history.steps == 2
    for name in ("test_loss", "test_accuracy"):
        np.testing.assert_allclose(on_cuda.metrics[name], on_numpy.metrics[name], rtol=1e-5)
    for mine, theirs in zip(on_cuda.model.params, on_numpy.model.params, strict=True):
        np.testing.assert_allclose(mine.value, theirs.value, rtol=1e-5, atol=1e-6)
