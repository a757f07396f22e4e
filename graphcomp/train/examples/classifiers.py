"""Classifiers of scikit-learn's digits, the built-in examples ``*-digits``.

All learn scikit-learn's bundled 8×8 digits (1797 images, 10 classes), split 75/25 with a fixed
seed: ``logreg-digits`` is multinomial logistic regression, ``mlp-digits`` a 64-128-64-10 ReLU
network trained with Adam, ``cnn-digits`` a two-layer convolutional network.

>>> # result = run_classifier("mlp-digits", RunOptions(epochs=20)); result.test_accuracy
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphcomp.errors import GraphcompError
from graphcomp.ir import Graph
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F
from graphcomp.runtime.function import compile as compile_function
from graphcomp.train import checkpoint, init, optim
from graphcomp.train.data import load_mnist, num_batches, split
from graphcomp.train.examples.base import ExampleResult, RunOptions, note, readiness, result_of
from graphcomp.train.fit import fit

__all__ = ["CLASSIFIERS", "Classifier", "Model", "cnn", "digits", "lenet", "mlp",
           "run_classifier", "train_classifier"]


@dataclass
class Model:
    """A classifier's graph: inputs, loss, accuracy and trainable parameters."""

    x: Tensor
    y: Tensor
    loss: Tensor
    accuracy: Tensor
    params: list[Parameter]


def digits(test_fraction: float = 0.25, seed: int = 0,
           dtype: str = "float32") -> tuple[np.ndarray, ...]:
    """scikit-learn's digits scaled to [0, 1]: ``X_train, X_test, y_train, y_test``.

    >>> # X_tr, X_te, y_tr, y_te = digits(); X_tr.shape
    """
    table = _digits_table()
    images = (table[:, :64] / 16.0).astype(dtype)
    labels = table[:, 64].astype(np.int64)
    return split(images, labels, test_fraction=test_fraction, seed=seed)


def _digits_table() -> np.ndarray:
    """The 1797 x 65 table (64 pixels, then the label) that scikit-learn ships.

    Read straight from scikit-learn's data folder when it is there: importing sklearn.datasets
    takes seconds, a noticeable part of a 20-epoch run.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise GraphcompError(
            "the digits examples need scikit-learn: pip install 'graphcomp[examples]'"
        )
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits  # a layout we do not know: the public API

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


def mlp(sizes: tuple[int, ...], seed: int = 0, dtype: str = "float32") -> Model:
    """A ReLU network with layer ``sizes`` (input first, classes last), built in the current graph.

    ``sizes=(64, 10)`` is multinomial logistic regression.

    >>> # with gc.Graph(): model = mlp((64, 128, 64, 10))
    """
    x = F.placeholder((None, sizes[0]), dtype, name="x")
    y = F.placeholder((None,), "int64", name="y")
    rng = np.random.default_rng(seed)
    params: list[Parameter] = []
    h = x
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        last = i == len(sizes) - 1
        initializer = init.glorot_uniform if last else init.he_normal  # He for ReLU layers
        weights = initializer((n_in, n_out), rng, dtype)
        W = F.parameter(weights, name=f"W{i}")
        b = F.parameter(init.zeros((n_out,), dtype), name=f"b{i}")
        params += [W, b]
        h = h @ W + b
        if not last:
            h = F.relu(h)
    loss = F.mean(F.softmax_cross_entropy(h, y))
    accuracy = F.mean(F.cast(F.equal(F.argmax(h, axis=-1), y), dtype))
    return Model(x, y, loss, accuracy, params)


def cnn(channels: tuple[int, int] = (16, 32), hidden: int = 64, seed: int = 0,
        dtype: str = "float32") -> Model:
    """A two-layer CNN for 8x8 images given as rows of 64 pixels, built in the current graph.

    conv 3x3 (padding 1) + ReLU + 2x2 max pool, twice, then a ReLU dense layer and the
    classifier: ``[N,64] -> [N,1,8,8] -> [N,c1,4,4] -> [N,c2,2,2] -> [N,hidden] -> [N,10]``.

    >>> # with gc.Graph(): model = cnn()
    """
    return _conv_net(8, [(channels[0], 3, 1), (channels[1], 3, 1)], (hidden,), seed, dtype)


def lenet(seed: int = 0, dtype: str = "float32") -> Model:
    """LeNet-5-like, for 28x28 images given as rows of 784 pixels (MNIST).

    conv 5x5 (padding 2) 1->6, pool, conv 5x5 6->16, pool, dense 400-120-84-10, ReLU:
    ``[N,784] -> [N,1,28,28] -> [N,6,14,14] -> [N,16,5,5] -> [N,10]``.

    >>> # with gc.Graph(): model = lenet()
    """
    return _conv_net(28, [(6, 5, 2), (16, 5, 0)], (120, 84), seed, dtype)


def _conv_net(side: int, convs: list[tuple[int, int, int]], hidden: tuple[int, ...], seed: int,
              dtype: str) -> Model:
    """conv (out channels, kernel, padding) + ReLU + 2x2 max pool per layer, then ReLU dense
    layers of sizes ``hidden`` and a 10-way classifier."""
    from graphcomp import nn

    x = F.placeholder((None, side * side), dtype, name="x")
    y = F.placeholder((None,), "int64", name="y")
    rng = np.random.default_rng(seed)
    params: list[Parameter] = []
    h = F.reshape(x, (-1, 1, side, side))
    channels = 1
    for i, (out_channels, kernel, padding) in enumerate(convs, start=1):
        w = F.parameter(init.he_normal((out_channels, channels, kernel, kernel), rng, dtype),
                        name=f"conv{i}")
        b = F.parameter(init.zeros((out_channels,), dtype), name=f"conv{i}_b")
        params += [w, b]
        h = nn.max_pool2d(F.relu(nn.conv2d(h, w, b, padding=padding)), 2)
        channels = out_channels
        side = (side + 2 * padding - kernel + 1) // 2
    h = nn.flatten(h)
    sizes = (channels * side * side, *hidden, 10)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        last = i == len(sizes) - 1
        initializer = init.glorot_uniform if last else init.he_normal
        W = F.parameter(initializer((n_in, n_out), rng, dtype), name=f"W{i}")
        b = F.parameter(init.zeros((n_out,), dtype), name=f"b{i}")
        params += [W, b]
        h = h @ W + b
        if not last:
            h = F.relu(h)
    loss = F.mean(F.softmax_cross_entropy(h, y))
    accuracy = F.mean(F.cast(F.equal(F.argmax(h, axis=-1), y), dtype))
    return Model(x, y, loss, accuracy, params)


@dataclass(frozen=True)
class Classifier:
    """A digits classifier's network, optimizer and training settings."""

    build: Callable[[int], Model]  # seed -> the model, built in the current graph
    make_optimizer: Callable[[int], optim.Optimizer]  # total training steps -> optimizer
    epochs: int
    batch_size: int


CLASSIFIERS: dict[str, Classifier] = {
    "mlp-digits": Classifier(lambda seed: mlp((64, 128, 64, 10), seed=seed),
                             lambda steps: optim.Adam(lr=optim.CosineDecay(2e-3, steps)),
                             epochs=20, batch_size=32),
    "logreg-digits": Classifier(lambda seed: mlp((64, 10), seed=seed),
                                lambda steps: optim.SGD(lr=0.1, momentum=0.9), epochs=20,
                                batch_size=32),
    "cnn-digits": Classifier(lambda seed: cnn(seed=seed),
                             lambda steps: optim.Adam(lr=optim.CosineDecay(3e-3, steps)),
                             epochs=30, batch_size=32),
}

# ``graphcomp train cnn-digits --data DIR``: the same family on MNIST's IDX files.
MNIST_LENET = Classifier(lambda seed: lenet(seed=seed),
                         lambda steps: optim.Adam(lr=optim.CosineDecay(2e-3, steps)),
                         epochs=3, batch_size=64)

DESCRIPTIONS = {
    "mlp-digits": "64-128-64-10 ReLU MLP, Adam, on scikit-learn's digits",
    "logreg-digits": "multinomial logistic regression, SGD with momentum, on digits",
    "cnn-digits": "two 3x3 conv layers with max pooling and a dense head, Adam, on digits",
}


def run_classifier(name: str, options: RunOptions) -> ExampleResult:
    """Train classifier ``name`` on three quarters of the digits; evaluate on the rest.

    >>> # run_classifier("logreg-digits", RunOptions(epochs=5, backend="numpy"))
    """
    return train_classifier(name, CLASSIFIERS[name], options)


def train_classifier(name: str, spec: Classifier, options: RunOptions) -> ExampleResult:
    """Train the digits classifier ``spec`` (the examples of other modules use it too).

    >>> # train_classifier("my-digits", Classifier(build, make_optimizer, 20, 32), RunOptions())
    """
    options.check_outputs()
    start = time.perf_counter()
    if options.data is not None:
        if name != "cnn-digits":
            raise GraphcompError(f"--data is for cnn-digits (a LeNet on MNIST's IDX files); "
                                 f"{name} trains on scikit-learn's digits")
        spec = MNIST_LENET
        X_train, X_test, y_train, y_test = load_mnist(options.data)
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    else:
        X_train, X_test, y_train, y_test = digits(seed=options.seed)
    with Graph(name=name):
        model = spec.build(options.seed)
        n_epochs = options.epochs_or(spec.epochs)
        total_steps = max(1, n_epochs * num_batches(len(X_train), spec.batch_size))
        optimizer = spec.make_optimizer(total_steps)
        outputs = [model.loss, model.accuracy]
        updates = optimizer.updates(model.loss, model.params)
        if options.progress:  # a cold compile can take a while: say what is happening
            note(f"compiling the training step and the evaluation function "
                 f"({len(X_train)} training, {len(X_test)} test examples)...")
        step = compile_function([model.x, model.y], outputs, updates=updates,
                                **options.compile_options())
        evaluate = compile_function([model.x, model.y], outputs, **options.compile_options())
        if options.progress:
            note(readiness(step, evaluate))
    history = fit(step, data=(X_train, y_train), epochs=n_epochs,
                  batch_size=spec.batch_size, shuffle=True, seed=options.seed,
                  validation=(evaluate, (X_test, y_test)), progress=options.progress,
                  names=["loss", "acc"])
    test_loss, test_accuracy = (float(v) for v in evaluate(X_test, y_test))
    if options.save:
        checkpoint.save(options.save, model.params + optimizer.state)
    if options.plot:
        from graphcomp.train.plot import plot_history

        plot_history(history, options.plot, title=name)
    headline = (f"test accuracy  {100 * test_accuracy:.2f}%  (loss {test_loss:.4f}, "
                f"{history.epochs} epoch(s), {history.steps} steps)")
    return result_of(name, step, [evaluate], history,
                     {"test_loss": test_loss, "test_accuracy": test_accuracy}, headline, start,
                     model=model, optimizer=optimizer)
