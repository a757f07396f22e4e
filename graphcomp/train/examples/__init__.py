"""The built-in examples that ``graphcomp train NAME`` runs (and ``examples/*.py`` call).

``EXAMPLES`` maps each name to an ``Example``: a description and the function that trains and
evaluates it. Families of examples live in their own modules: ``classifiers.py`` holds the
classifiers of scikit-learn's digits (``logreg-digits``, ``mlp-digits``, ``cnn-digits``),
``recurrent.py`` the examples on ``gc.scan`` (``lstm-digits``, ``char-rnn``),
``regularized.py`` the one with dropout and batch norm (``mlp-dropout-bn-digits``),
``autoencoders.py`` and ``vae.py`` the autoencoders of the digits' pixels
(``autoencoder-digits``, denoising with ``noise``; ``vae-digits``),
``word2vec.py`` the word embeddings of ``word2vec``.
A new family writes a ``run(name, options) -> ExampleResult`` on ``gc.fit`` and adds its
entries below.

>>> {"mlp-digits", "lstm-digits", "vae-digits"} <= set(EXAMPLES)
True
>>> # result = run_example("mlp-digits", epochs=20); result.test_accuracy
"""

from __future__ import annotations

from graphcomp.errors import GraphcompError
from graphcomp.train.examples import autoencoders, regularized, vae
from graphcomp.train.examples.base import Example, ExampleResult, RunOptions, note, readiness
from graphcomp.train.examples.classifiers import (
    CLASSIFIERS,
    DESCRIPTIONS,
    Model,
    cnn,
    digits,
    mlp,
    run_classifier,
)
from graphcomp.train.examples.recurrent import DESCRIPTIONS as RECURRENT_DESCRIPTIONS
from graphcomp.train.examples.recurrent import run_recurrent
from graphcomp.train.examples.word2vec import DESCRIPTION as WORD2VEC_DESCRIPTION
from graphcomp.train.examples.word2vec import run_word2vec

__all__ = ["EXAMPLES", "Example", "ExampleResult", "Model", "RunOptions", "cnn", "digits", "mlp",
           "note", "readiness", "run_example"]

EXAMPLES: dict[str, Example] = {
    name: Example(DESCRIPTIONS[name], run_classifier) for name in CLASSIFIERS
}
EXAMPLES.update({name: Example(description, run_recurrent)
                 for name, description in RECURRENT_DESCRIPTIONS.items()})
EXAMPLES["mlp-dropout-bn-digits"] = Example(
    regularized.DESCRIPTIONS["mlp-dropout-bn-digits"], regularized.run_regularized)
EXAMPLES["autoencoder-digits"] = Example(
    autoencoders.DESCRIPTIONS["autoencoder-digits"], autoencoders.run_autoencoder,
    accepts_noise=True)
EXAMPLES["vae-digits"] = Example(vae.DESCRIPTIONS["vae-digits"], vae.run_vae)
EXAMPLES["word2vec"] = Example(WORD2VEC_DESCRIPTION, run_word2vec)


def run_example(name: str, epochs: int | None = None, backend: str | None = None,
                progress: bool = True, seed: int = 0, save: str | None = None,
                plot: str | None = None, compile_mode: str = "eager",
                data: str | None = None, noise: float | None = None) -> ExampleResult:
    """Train built-in example ``name`` and evaluate it on its held-out data.

    ``backend=None`` uses ``gc.compile``'s default backend. ``save`` writes a checkpoint of the
    parameters and optimizer state; ``plot`` writes the example's curves or pictures (needs
    matplotlib). ``compile_mode="background"`` trains on the numpy backend until the compiled
    code is ready (``gc.compile``). ``data``: a folder of the example's own data
    (``cnn-digits`` trains a LeNet on the MNIST IDX files there). ``noise`` (a standard
    deviation, for the examples that accept it: ``autoencoder-digits``) trains on noisy
    inputs.

    >>> # result = run_example("logreg-digits", epochs=5, backend="numpy", progress=False)
    """
    if name not in EXAMPLES:
        raise GraphcompError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}")
    if noise is not None and not EXAMPLES[name].accepts_noise:
        takers = [n for n, e in EXAMPLES.items() if e.accepts_noise]
        raise GraphcompError(f"example {name!r} takes no noise option (only {', '.join(takers)})")
    if noise is not None and not 0.0 < noise < float("inf"):
        raise GraphcompError(f"noise must be a standard deviation > 0, got {noise}")
    options = RunOptions(epochs=epochs, backend=backend, progress=progress, seed=seed,
                         save=save, plot=plot, compile_mode=compile_mode, data=data,
                         noise=noise)
    return EXAMPLES[name].run(name, options)
