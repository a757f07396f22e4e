"""``mlp-dropout-bn-digits``: a deeper classifier of the digits, regularised by dropout and
batch norm, trained and evaluated in one graph.

Four hidden blocks ``dense (no bias) -> batch_norm -> relu -> dropout`` (64-256-256-128-128-10)
share a boolean placeholder ``training``: the training step is fed ``True`` (batch statistics,
dropout masks drawn by the graph's generator), the evaluation function ``False`` (running
statistics, no dropout). Both functions are compiled from the same graph and parameters.

>>> # result = run_regularized("mlp-dropout-bn-digits", RunOptions(epochs=30))
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from graphcomp import nn
from graphcomp.ir import Graph, name_scope
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F
from graphcomp.runtime.function import compile as compile_function
from graphcomp.train import checkpoint, optim
from graphcomp.train.data import num_batches
from graphcomp.train.examples.base import ExampleResult, RunOptions, note, readiness, result_of
from graphcomp.train.examples.classifiers import digits
from graphcomp.train.fit import fit

__all__ = ["DESCRIPTIONS", "FlaggedModel", "mlp_dropout_bn", "run_regularized"]

DESCRIPTIONS = {
    "mlp-dropout-bn-digits": "64-256-256-128-128-10 MLP with batch norm and dropout, Adam, on "
                             "digits; evaluated in the same graph with training=False",
}

EPOCHS, BATCH_SIZE, LEARNING_RATE = 30, 32, 3e-3


@dataclass
class FlaggedModel:
    """A classifier with a ``training`` flag: inputs, loss, accuracy and every parameter."""

    x: Tensor
    y: Tensor
    training: Tensor
    loss: Tensor
    accuracy: Tensor
    params: list[Parameter]  # trainable and not (batch norm's running statistics)


def mlp_dropout_bn(hidden: tuple[int, ...] = (256, 256, 128, 128), rate: float = 0.2,
                   seed: int = 0, dtype: str = "float32") -> FlaggedModel:
    """Hidden blocks ``dense -> batch_norm -> relu -> dropout(rate)``, then a 10-way classifier,
    built in the current graph (whose seed drives the dropout masks).

    >>> import graphcomp as gc
    >>> with gc.Graph(seed=0):
    ...     model = mlp_dropout_bn((16, 16))
    >>> model.training.dtype, len(model.params)
    (dtype('bool'), 13)
    """
    x = F.placeholder((None, 64), dtype, name="x")
    y = F.placeholder((None,), "int64", name="y")
    training = F.placeholder((), "bool", name="training")
    h = x
    for i, units in enumerate(hidden, start=1):
        with name_scope(f"block{i}"):
            # no bias: batch norm's beta plays its part
            h = nn.dense(h, units, use_bias=False, init="he_normal", seed=seed)
            h = nn.dropout(F.relu(nn.batch_norm(h, training)), rate, training)
    logits = nn.dense(h, 10, name="head", seed=seed)
    loss = F.mean(F.softmax_cross_entropy(logits, y))
    accuracy = F.mean(F.cast(F.equal(F.argmax(logits, axis=-1), y), dtype))
    return FlaggedModel(x, y, training, loss, accuracy, F.parameters(x.graph))


def run_regularized(name: str, options: RunOptions) -> ExampleResult:
    """Train ``mlp-dropout-bn-digits`` on three quarters of the digits; evaluate on the rest
    with ``training=False``.

    >>> # run_regularized("mlp-dropout-bn-digits", RunOptions(epochs=3, backend="numpy"))
    """
    options.check_outputs()
    start = time.perf_counter()
    X_train, X_test, y_train, y_test = digits(seed=options.seed)
    n_epochs = options.epochs_or(EPOCHS)
    with Graph(name=name, seed=options.seed):
        model = mlp_dropout_bn(seed=options.seed)
        total_steps = max(1, n_epochs * num_batches(len(X_train), BATCH_SIZE))
        optimizer = optim.Adam(lr=optim.CosineDecay(LEARNING_RATE, total_steps))
        inputs, outputs = [model.x, model.y, model.training], [model.loss, model.accuracy]
        if options.progress:
            note("compiling the training step and the evaluation function...")
        step = compile_function(inputs, outputs, updates=optimizer.updates(model.loss),
                                **options.compile_options())
        evaluate = compile_function(inputs, outputs, **options.compile_options())
        if options.progress:
            note(readiness(step, evaluate))
    on, off = np.array(True), np.array(False)
    # gc.fit slices every input along the batch axis: the scalar flag is bound by a wrapper
    history = fit(lambda xb, yb: step(xb, yb, on), data=(X_train, y_train), epochs=n_epochs,
                  batch_size=BATCH_SIZE, shuffle=True, seed=options.seed,
                  validation=(lambda xv, yv: evaluate(xv, yv, off), (X_test, y_test)),
                  progress=options.progress, names=["loss", "acc"])
    test_loss, test_accuracy = (float(v) for v in evaluate(X_test, y_test, off))
    if options.save:
        checkpoint.save(options.save, model.params + optimizer.state)
    if options.plot:
        from graphcomp.train.plot import plot_history

        plot_history(history, options.plot, title=name)
    headline = (f"test accuracy  {100 * test_accuracy:.2f}%  (loss {test_loss:.4f}, "
                f"training=False; {history.epochs} epoch(s), {history.steps} steps)")
    return result_of(name, step, [evaluate], history,
                     {"test_loss": test_loss, "test_accuracy": test_accuracy}, headline, start,
                     model=model, optimizer=optimizer)
