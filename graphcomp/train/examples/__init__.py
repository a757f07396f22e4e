"""The built-in examples that ``graphcomp train NAME`` runs (and ``examples/*.py`` call).

``EXAMPLES`` maps each name to an ``Example``: a description and the function that trains and
evaluates it. Families of examples live in their own modules: ``classifiers.py`` holds the
classifiers of scikit-learn's digits (``logreg-digits``, ``mlp-digits``, ``cnn-digits``),
``word2vec.py`` the word embeddings of ``word2vec``.
A new family writes a ``run(name, options) -> ExampleResult`` on ``gc.fit`` and adds its
entries below.

>>> sorted(EXAMPLES)[:2]
['cnn-digits', 'logreg-digits']
>>> # result = run_example("mlp-digits", epochs=20); result.test_accuracy
"""

from __future__ import annotations

from graphcomp.errors import GraphcompError
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
from graphcomp.train.examples.word2vec import DESCRIPTION as WORD2VEC_DESCRIPTION
from graphcomp.train.examples.word2vec import run_word2vec

__all__ = ["EXAMPLES", "Example", "ExampleResult", "Model", "RunOptions", "cnn", "digits", "mlp",
           "note", "readiness", "run_example"]

EXAMPLES: dict[str, Example] = {
    name: Example(DESCRIPTIONS[name], run_classifier) for name in CLASSIFIERS
}
EXAMPLES["word2vec"] = Example(WORD2VEC_DESCRIPTION, run_word2vec)


def run_example(name: str, epochs: int | None = None, backend: str | None = None,
                progress: bool = True, seed: int = 0, save: str | None = None,
                plot: str | None = None, compile_mode: str = "eager") -> ExampleResult:
    """Train built-in example ``name`` and evaluate it on its held-out data.

    ``backend=None`` uses ``gc.compile``'s default backend. ``save`` writes a checkpoint of the
    parameters and optimizer state; ``plot`` writes the example's curves or pictures (needs
    matplotlib). ``compile_mode="background"`` trains on the numpy backend until the compiled
    code is ready (``gc.compile``).

    >>> # result = run_example("logreg-digits", epochs=5, backend="numpy", progress=False)
    """
    if name not in EXAMPLES:
        raise GraphcompError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}")
    options = RunOptions(epochs=epochs, backend=backend, progress=progress, seed=seed,
                         save=save, plot=plot, compile_mode=compile_mode)
    return EXAMPLES[name].run(name, options)
