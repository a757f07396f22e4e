"""``vae-digits``: a variational autoencoder of the digits' pixels (scaled to [0, 1]).

Encoder 64-128 (ReLU) to the means and log-variances of 8 latent Gaussians; the latent code is
drawn in the graph by the reparameterisation ``z = mu + exp(logvar / 2) * eps``, ``eps`` from
``gc.random.normal`` (so gradients reach ``mu`` and ``logvar``); decoder 8-128 (ReLU) to 64
Bernoulli logits, one per pixel.

The loss is the negative evidence lower bound per image, in nats (natural logarithms):

    -ELBO(x) = sum over the 64 pixels of BCE(sigmoid(logits), x)      (-log p(x | z))
               + 1/2 sum over the 8 latents of (mu^2 + var - 1 - log var)   (KL(q(z|x) || N(0, I)))

with one draw of ``z`` per image, averaged over the batch: an unbiased estimate of the negative
ELBO. Pixels are gray levels in [0, 1], used as the Bernoulli targets as they are (the
"continuous Bernoulli" normaliser is left out), so the reconstruction term cannot go below the
pixels' own binary entropy: 13.7 nats per image on average over the test images.

>>> # result = run_vae("vae-digits", RunOptions(epochs=200, plot="vae.png"))
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from graphcomp import random
from graphcomp.errors import GraphcompError
from graphcomp.ir import Graph
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F
from graphcomp.runtime.function import compile as compile_function
from graphcomp.train import checkpoint, init, optim
from graphcomp.train.data import num_batches
from graphcomp.train.examples.base import ExampleResult, RunOptions, note, readiness, result_of
from graphcomp.train.examples.classifiers import digits
from graphcomp.train.fit import fit

__all__ = ["DESCRIPTIONS", "VAEModel", "run_vae", "vae"]

DESCRIPTIONS = {
    "vae-digits": "variational autoencoder 64-128-8-128-64, Bernoulli pixels, Adam, on digits; "
                  "--plot writes samples and reconstructions",
}

EPOCHS, BATCH_SIZE, LEARNING_RATE = 200, 32, 2e-3


@dataclass
class VAEModel:
    """A VAE's graph: the loss and its two terms, and what the pictures need."""

    x: Tensor  # images, pixels in [0, 1]
    neg_elbo: Tensor  # batch mean of -ELBO, nats per image
    reconstruction_nats: Tensor  # batch mean of -log p(x | z)
    kl_nats: Tensor  # batch mean of KL(q(z | x) || N(0, I))
    mean_image: Tensor  # sigmoid(decoder(mu)): the reconstruction at the code's mean
    code: Tensor  # a placeholder of latent codes...
    decoded: Tensor  # ...and sigmoid(decoder(code)): samples when fed N(0, I) draws
    params: list[Parameter]


def _affine(name: str, n_in: int, n_out: int, rng: np.random.Generator, initializer: object,
            dtype: str) -> tuple[Parameter, Parameter]:
    weights = initializer((n_in, n_out), rng, dtype)  # type: ignore[operator]
    return (F.parameter(weights, name=f"{name}/w"),
            F.parameter(init.zeros((n_out,), dtype), name=f"{name}/b"))


def vae(pixels: int = 64, hidden: int = 128, latent: int = 8, seed: int = 0,
        dtype: str = "float32") -> VAEModel:
    """A VAE with one hidden ReLU layer on each side and Bernoulli pixels, built in the current
    graph (whose seed drives the draws of ``z``).

    >>> import graphcomp as gc
    >>> with gc.Graph(seed=0):
    ...     model = vae(hidden=32, latent=4)
    >>> model.code.shape, model.decoded.shape
    (('N2', 4), ('N2', 64))
    """
    rng = np.random.default_rng(seed)
    x = F.placeholder((None, pixels), dtype, name="x")
    enc_w, enc_b = _affine("encoder", pixels, hidden, rng, init.he_normal, dtype)
    mu_w, mu_b = _affine("mean", hidden, latent, rng, init.glorot_uniform, dtype)
    lv_w, lv_b = _affine("log_var", hidden, latent, rng, init.glorot_uniform, dtype)
    dec_w, dec_b = _affine("decoder", latent, hidden, rng, init.he_normal, dtype)
    out_w, out_b = _affine("pixels", hidden, pixels, rng, init.glorot_uniform, dtype)

    def decode(z: Tensor) -> Tensor:  # Bernoulli logits
        return F.relu(z @ dec_w + dec_b) @ out_w + out_b

    h = F.relu(x @ enc_w + enc_b)
    mu, log_var = h @ mu_w + mu_b, h @ lv_w + lv_b
    z = random.normal(mu.shape, dtype, mean=mu, std=F.exp(0.5 * log_var))
    reconstruction = F.sum(F.sigmoid_binary_cross_entropy(decode(z), x), axis=1)
    kl = 0.5 * F.sum(mu * mu + F.exp(log_var) - 1.0 - log_var, axis=1)
    code = F.placeholder((None, latent), dtype, name="code")
    return VAEModel(x=x, neg_elbo=F.mean(reconstruction + kl),
                    reconstruction_nats=F.mean(reconstruction), kl_nats=F.mean(kl),
                    mean_image=F.sigmoid(decode(mu)), code=code,
                    decoded=F.sigmoid(decode(code)),
                    params=F.parameters(x.graph, trainable=True))


def run_vae(name: str, options: RunOptions) -> ExampleResult:
    """Train ``vae-digits`` on three quarters of the digits; report -ELBO on the rest.

    >>> # run_vae("vae-digits", RunOptions(epochs=5, backend="numpy"))
    """
    options.check_outputs()
    start = time.perf_counter()
    X_train, X_test, _, _ = digits(seed=options.seed)
    n_epochs = options.epochs_or(EPOCHS)
    with Graph(name=name, seed=options.seed):
        model = vae(seed=options.seed)
        total_steps = max(1, n_epochs * num_batches(len(X_train), BATCH_SIZE))
        optimizer = optim.Adam(lr=optim.CosineDecay(LEARNING_RATE, total_steps))
        outputs = [model.neg_elbo, model.reconstruction_nats, model.kl_nats]
        if options.progress:
            note("compiling the training step and the evaluation function...")
        step = compile_function([model.x], outputs, updates=optimizer.updates(model.neg_elbo),
                                **options.compile_options())
        evaluate = compile_function([model.x], outputs, **options.compile_options())
        if options.progress:
            note(readiness(step, evaluate))
    history = fit(step, data=(X_train,), epochs=n_epochs, batch_size=BATCH_SIZE, shuffle=True,
                  seed=options.seed, validation=(evaluate, (X_test,)),
                  progress=options.progress, names=["neg_elbo", "reconstruction", "kl"])
    neg_elbo, reconstruction, kl = (float(v) for v in evaluate(X_test))
    if options.save:
        checkpoint.save(options.save, model.params + optimizer.state)
    if options.plot:
        plot_samples(model, X_test, options)
    headline = (f"test -ELBO     {neg_elbo:.2f} nats per image  (one draw of z per image; "
                f"{history.epochs} epoch(s), {history.steps} steps)")
    extra = [f"terms          reconstruction {reconstruction:.2f} nats + KL {kl:.2f} nats"]
    metrics = {"test_loss": neg_elbo, "test_neg_elbo": neg_elbo,
               "test_reconstruction": reconstruction, "test_kl": kl}
    return result_of(name, step, [evaluate], history, metrics, headline, start, model=model,
                     optimizer=optimizer, extra_lines=extra)


def plot_samples(model: VAEModel, images: np.ndarray, options: RunOptions,
                 columns: int = 12) -> None:
    """Write ``options.plot``: test images, their reconstructions (at the code's mean) and
    two rows of samples (codes drawn from N(0, I) with numpy, seeded by ``options.seed``).

    >>> # plot_samples(result.model, X_test, RunOptions(plot="vae.png"))
    """
    if options.plot is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GraphcompError(
            "--plot needs matplotlib: pip install matplotlib (or 'graphcomp[examples]')"
        ) from None
    with model.x.graph:
        reconstruct = compile_function([model.x], model.mean_image, **options.compile_options())
        generate = compile_function([model.code], model.decoded, **options.compile_options())
    originals = images[:columns]
    latent = int(model.code.shape[1])
    codes = np.random.default_rng(options.seed).standard_normal((2 * columns, latent))
    rows = [originals, reconstruct(originals), *np.split(generate(codes.astype(images.dtype)), 2)]
    labels = ["test images", "reconstructions", "samples", "samples"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(columns * 0.8, len(rows) * 1.0))
    for ax, row, label in zip(axes, rows, labels, strict=True):
        strip = np.concatenate([np.pad(img.reshape(8, 8), 1) for img in row],
                               axis=1)
        ax.imshow(strip, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("vae-digits: test images, reconstructions and samples")
    fig.tight_layout()
    fig.savefig(options.plot, dpi=100)
    plt.close(fig)
