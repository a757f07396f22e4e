"""Autoencoders of the digits' pixels (scaled to [0, 1]): ``autoencoder-digits`` and
``vae-digits``.

- ``autoencoder-digits``: 64-128-16-128-64, ReLU inside, a sigmoid output, trained on the mean
  squared error. With ``noise`` (``graphcomp train autoencoder-digits --noise 0.3``) it is a
  denoising autoencoder: the graph adds Gaussian noise of that standard deviation to each input
  (clipped to [0, 1], drawn by ``gc.random.normal``) and learns to give back the clean image;
  the test reports the error of its output against that of the noisy input.
- ``vae-digits``: a variational autoencoder, 64-128-(8 means, 8 log-variances), decoder
  8-128-64 giving Bernoulli logits per pixel (``vae.py``).

>>> # result = run_autoencoder("autoencoder-digits", RunOptions(epochs=100, noise=0.3))
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from graphcomp import nn, random
from graphcomp.ir import Graph
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F
from graphcomp.runtime.function import compile as compile_function
from graphcomp.train import checkpoint, optim
from graphcomp.train.data import num_batches
from graphcomp.train.examples.base import ExampleResult, RunOptions, note, readiness, result_of
from graphcomp.train.examples.classifiers import digits
from graphcomp.train.fit import fit

__all__ = ["DESCRIPTIONS", "AutoencoderModel", "autoencoder", "run_autoencoder"]

DESCRIPTIONS = {
    "autoencoder-digits": "64-128-16-128-64 autoencoder of the digits' pixels, Adam, MSE; "
                          "--noise STD for the denoising variant",
}

EPOCHS, BATCH_SIZE, LEARNING_RATE = 100, 32, 3e-3
DEFAULT_NOISE = 0.3  # ``--noise`` without a value


@dataclass
class AutoencoderModel:
    """An autoencoder's graph: the clean images, what the network sees and gives back."""

    x: Tensor  # clean images, pixels in [0, 1]
    corrupted: Tensor  # the network's input: x, or x with noise (clipped to [0, 1])
    reconstruction: Tensor  # the network's output, in (0, 1)
    loss: Tensor  # mean squared error of the reconstruction against x
    input_error: Tensor  # mean squared error of the input against x (0 without noise)
    params: list[Parameter]


def autoencoder(sizes: tuple[int, ...] = (64, 128, 16), noise: float = 0.0, seed: int = 0,
                dtype: str = "float32") -> AutoencoderModel:
    """An encoder with layer ``sizes`` (ReLU, the code linear), its mirror image as decoder
    (a sigmoid output), built in the current graph; ``noise > 0`` makes it denoising.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     model = autoencoder((64, 32, 8), noise=0.2)
    >>> model.reconstruction.shape
    ('N', 64)
    """
    if not noise >= 0.0:
        raise ValueError(f"autoencoder: noise must be a standard deviation >= 0, got {noise}")
    x = F.placeholder((None, sizes[0]), dtype, name="x")
    corrupted = x
    if noise > 0:
        corrupted = F.clip(x + random.normal(x.shape, dtype, std=noise), 0.0, 1.0)
    h = corrupted
    for i, units in enumerate(sizes[1:], start=1):
        last = i == len(sizes) - 1
        h = nn.dense(h, units, activation=None if last else "relu",
                     init="glorot_uniform" if last else "he_normal", name=f"encoder{i}",
                     seed=seed)
    for i, units in enumerate(reversed(sizes[:-1]), start=1):
        last = i == len(sizes) - 1
        h = nn.dense(h, units, activation="sigmoid" if last else "relu",
                     init="glorot_uniform" if last else "he_normal", name=f"decoder{i}",
                     seed=seed)
    loss = F.mean(F.square(h - x))
    input_error = F.mean(F.square(corrupted - x))
    return AutoencoderModel(x, corrupted, h, loss, input_error,
                            F.parameters(x.graph, trainable=True))


def run_autoencoder(name: str, options: RunOptions) -> ExampleResult:
    """Train ``autoencoder-digits`` (denoising with ``options.noise``) on three quarters of the
    digits; report the mean squared error on the rest.

    >>> # run_autoencoder("autoencoder-digits", RunOptions(epochs=5, backend="numpy"))
    """
    options.check_outputs()
    start = time.perf_counter()
    X_train, X_test, _, _ = digits(seed=options.seed)
    noise = options.noise or 0.0
    n_epochs = options.epochs_or(EPOCHS)
    with Graph(name=name, seed=options.seed):
        model = autoencoder(noise=noise, seed=options.seed)
        total_steps = max(1, n_epochs * num_batches(len(X_train), BATCH_SIZE))
        optimizer = optim.Adam(lr=optim.CosineDecay(LEARNING_RATE, total_steps))
        outputs = [model.loss, model.input_error]
        if options.progress:
            note("compiling the training step and the evaluation function...")
        step = compile_function([model.x], outputs, updates=optimizer.updates(model.loss),
                                **options.compile_options())
        evaluate = compile_function([model.x], outputs, **options.compile_options())
        if options.progress:
            note(readiness(step, evaluate))
    history = fit(step, data=(X_train,), epochs=n_epochs, batch_size=BATCH_SIZE, shuffle=True,
                  seed=options.seed, validation=(evaluate, (X_test,)),
                  progress=options.progress, names=["mse", "input_mse"])
    test_mse, input_mse = (float(v) for v in evaluate(X_test))
    if options.save:
        checkpoint.save(options.save, model.params + optimizer.state)
    if options.plot:
        from graphcomp.train.plot import plot_history

        plot_history(history, options.plot, title=name)
    metrics = {"test_loss": test_mse, "test_mse": test_mse}
    headline = (f"test reconstruction MSE  {test_mse:.5f}  (pixels in [0, 1]; "
                f"{history.epochs} epoch(s), {history.steps} steps)")
    extra = []
    if noise > 0:
        metrics["test_input_mse"] = input_mse
        extra.append(f"denoising      noise std {noise:g}: the noisy input's MSE {input_mse:.5f}, "
                     f"{input_mse / test_mse:.2f}x the output's")
    return result_of(name, step, [evaluate], history, metrics, headline, start, model=model,
                     optimizer=optimizer, extra_lines=extra)
