"""Recurrent examples on ``gc.scan``: ``lstm-digits`` and ``char-rnn``.

``lstm-digits`` reads each of scikit-learn's 8x8 digits as a sequence of 8 rows of 8 pixels:
an LSTM of 64 units runs over the rows, a dense layer classifies its last state.

``char-rnn`` is a character-level LSTM language model of the first three chapters of Lewis
Carroll's *Alice's Adventures in Wonderland* (1865; public domain; the Millennium Fulcrum
Edition 3.0 text of Project Gutenberg eBook #11, shipped as ``data/alice.txt``, 32 KB). After
each epoch it prints text sampled from the model by a compiled one-step function (one
character in, the next character's probabilities and the new state out).

>>> # result = run_example("lstm-digits", epochs=20); result.test_accuracy
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

from graphcomp import nn
from graphcomp.ir import Graph
from graphcomp.loops.scan import scan
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F
from graphcomp.runtime.function import Function
from graphcomp.runtime.function import compile as compile_function
from graphcomp.train import checkpoint, init, optim
from graphcomp.train.examples.base import ExampleResult, RunOptions, note, readiness, result_of
from graphcomp.train.examples.classifiers import Classifier, Model, train_classifier
from graphcomp.train.fit import fit

__all__ = ["CHAR_RNN", "DESCRIPTIONS", "LSTM_DIGITS", "CharModel", "CharSettings", "char_rnn",
           "generate", "lstm_classifier", "read_text", "run_char_rnn", "run_recurrent",
           "text_sequences"]

DESCRIPTIONS = {
    "lstm-digits": "LSTM over the 8 rows of each digit (64 units), Adam, on digits",
    "char-rnn": "character-level LSTM on a public-domain text, printing samples each epoch",
}


# ---------------------------------------------------------------- lstm-digits


def lstm_classifier(hidden: int = 64, seed: int = 0, dtype: str = "float32") -> Model:
    """An LSTM classifier of 8x8 images given as rows of 64 pixels, built in the current graph:
    ``[N,64] -> [N,8 rows,8 pixels] -> LSTM -> last state [N,hidden] -> dense -> [N,10]``.

    >>> # with gc.Graph(): model = lstm_classifier()
    """
    x = F.placeholder((None, 64), dtype, name="x")
    y = F.placeholder((None,), "int64", name="y")
    rows = F.reshape(x, (-1, 8, 8))
    _, (h, _) = nn.lstm(rows, hidden, time_major=False, seed=seed)
    logits = nn.dense(h, 10, name="head", seed=seed)
    loss = F.mean(F.softmax_cross_entropy(logits, y))
    accuracy = F.mean(F.cast(F.equal(F.argmax(logits, axis=-1), y), dtype))
    return Model(x, y, loss, accuracy, F.parameters(trainable=True))


LSTM_DIGITS = Classifier(lambda seed: lstm_classifier(seed=seed),
                         lambda steps: optim.Adam(lr=optim.CosineDecay(1e-2, steps)),
                         epochs=20, batch_size=32)


# ---------------------------------------------------------------- char-rnn


def read_text() -> str:
    """The shipped text: chapters I-III of *Alice's Adventures in Wonderland* (public domain)."""
    return (resources.files("graphcomp.train.examples") / "data" / "alice.txt").read_text("utf-8")


def text_sequences(text: str, vocab: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)``: the text cut into rows of ``length`` character ids, each target
    row the input row shifted by one character. ``text_sequences("abcde", "abcde", 2)``"""
    ids = np.array([vocab.index(ch) for ch in text], dtype=np.int64)
    rows = (len(ids) - 1) // length
    inputs = ids[:rows * length].reshape(rows, length)
    targets = ids[1:rows * length + 1].reshape(rows, length)
    return inputs, targets


@dataclass
class CharModel:
    """The character model's training graph and its one-step sampling graph."""

    ids: Tensor  # (batch, steps) int64
    targets: Tensor  # (batch, steps) int64
    logits: Tensor  # (steps, batch, vocab): time-major, as the scan makes them
    loss: Tensor  # mean cross-entropy, nats per character
    params: list[Parameter]
    step_inputs: list[Tensor]  # id (n,), h (n, hidden), c (n, hidden), temperature ()
    step_outputs: list[Tensor]  # probabilities (n, vocab), h, c


def char_rnn(vocab: int, hidden: int = 128, embed: int = 32, seed: int = 0) -> CharModel:
    """An embedding, an LSTM cell run by ``gc.scan`` over the steps and a dense read-out,
    built in the current graph; the same parameters serve the one-step sampling graph.

    >>> # with gc.Graph(): model = char_rnn(vocab=60)
    """
    rng = np.random.default_rng(seed)
    table = F.parameter(init.normal((vocab, embed), rng, std=0.1), name="embed")
    cell = nn.lstm_cell(embed, hidden, name="lstm", seed=seed)
    w_out = F.parameter(init.glorot_uniform((hidden, vocab), rng), name="out/w")
    b_out = F.parameter(init.zeros((vocab,)), name="out/b")

    ids = F.placeholder((None, "T"), "int64", name="ids")
    targets = F.placeholder((None, "T"), "int64", name="targets")
    xs = cell.project(F.take(table, F.transpose(ids), axis=0))  # time-major (T, N, 4 hidden)
    _, hs = scan(cell.recur, cell.zero_carry(xs.shape[1]), xs)
    logits = hs @ w_out + b_out
    loss = F.mean(F.softmax_cross_entropy(logits, F.transpose(targets)))

    char = F.placeholder((None,), "int64", name="char")
    h = F.placeholder((None, hidden), "float32", name="h")
    c = F.placeholder((None, hidden), "float32", name="c")
    temperature = F.placeholder((), "float32", name="temperature")
    (h_next, c_next), out = cell((h, c), F.take(table, char, axis=0))
    probs = F.softmax((out @ w_out + b_out) / temperature)
    return CharModel(ids, targets, logits, loss, [table, cell.w_x, cell.w_h, cell.b, w_out, b_out],
                     [char, h, c, temperature], [probs, h_next, c_next])


def generate(sample: Function, vocab: str, hidden: int, prime: str, length: int,
             temperature: float, rng: np.random.Generator) -> str:
    """``prime`` followed by ``length`` characters drawn one at a time from the compiled
    one-step function ``sample`` (``CharModel.step_inputs -> step_outputs``).

    >>> # generate(sample, vocab, 128, "Alice ", 200, 0.8, np.random.default_rng(0))
    """
    h = np.zeros((1, hidden), np.float32)
    c = np.zeros((1, hidden), np.float32)
    temp = np.float32(temperature)
    if not prime:
        raise ValueError("generate: prime must hold at least one character")
    for ch in prime:
        probs, h, c = sample(np.array([vocab.index(ch)]), h, c, temp)
    text = list(prime)
    for _ in range(length):
        p = np.asarray(probs[0], dtype=np.float64)
        k = int(rng.choice(len(vocab), p=p / p.sum()))
        text.append(vocab[k])
        probs, h, c = sample(np.array([k]), h, c, temp)
    return "".join(text)


@dataclass(frozen=True)
class CharSettings:
    """``char-rnn``'s sizes and training settings."""

    hidden: int = 128
    embed: int = 32
    steps: int = 64  # characters per training sequence
    batch_size: int = 32
    epochs: int = 30
    lr: float = 5e-3
    held_out: float = 0.1  # the text's last tenth, for the validation loss
    sample_length: int = 200
    temperature: float = 0.8
    prime: str = "Alice "
    text_chars: int | None = None  # None: the whole text; fewer for a quick test


CHAR_RNN = CharSettings()


def run_char_rnn(name: str, options: RunOptions, settings: CharSettings = CHAR_RNN
                 ) -> ExampleResult:
    """Train ``char-rnn``; print a sample after each epoch; report the held-out loss.

    >>> # run_char_rnn("char-rnn", RunOptions(epochs=2, backend="numpy"))
    """
    options.check_outputs()
    start = time.perf_counter()
    text = read_text()[:settings.text_chars]
    vocab = "".join(sorted(set(text)))
    inputs, targets = text_sequences(text, vocab, settings.steps)
    split = len(inputs) - max(1, int(len(inputs) * settings.held_out))
    train, test = (inputs[:split], targets[:split]), (inputs[split:], targets[split:])
    with Graph(name=name):
        model = char_rnn(len(vocab), settings.hidden, settings.embed, seed=options.seed)
        n_epochs = options.epochs_or(settings.epochs)
        optimizer = optim.Adam(lr=settings.lr)
        if options.progress:
            note(f"compiling the training step, the evaluation and the one-step sampling "
                 f"functions ({len(text)} characters, {len(vocab)} distinct)...")
        step = compile_function([model.ids, model.targets], model.loss,
                                updates=optimizer.updates(model.loss, model.params),
                                **options.compile_options())
        evaluate = compile_function([model.ids, model.targets], model.loss,
                                    **options.compile_options())
        sample = compile_function(model.step_inputs, model.step_outputs,
                                  **options.compile_options())
        if options.progress:
            note(readiness(step, evaluate, sample))
    rng = np.random.default_rng(options.seed)

    def write_sample(epoch: int, metrics: dict[str, float]) -> None:
        drawn = generate(sample, vocab, settings.hidden, settings.prime, settings.sample_length,
                         settings.temperature, rng)
        print(f"--- sample after epoch {epoch} (temperature {settings.temperature}):\n{drawn}",
              flush=True)

    history = fit(step, data=train, epochs=n_epochs, batch_size=settings.batch_size,
                  shuffle=True, seed=options.seed, validation=(evaluate, test),
                  progress=options.progress, names=["loss"], on_epoch_end=write_sample)
    test_loss = float(evaluate(*test))
    if options.save:
        checkpoint.save(options.save, model.params + optimizer.state)
    if options.plot:
        from graphcomp.train.plot import plot_history

        plot_history(history, options.plot, title=name)
    bits = test_loss / np.log(2.0)
    headline = (f"held-out loss  {test_loss:.4f} nats/char ({bits:.3f} bits/char; "
                f"{history.epochs} epoch(s), {history.steps} steps)")
    final = generate(sample, vocab, settings.hidden, settings.prime, 2 * settings.sample_length,
                     settings.temperature, rng)
    return result_of(name, step, [evaluate, sample], history,
                     {"test_loss": test_loss, "bits_per_char": bits}, headline, start,
                     model=model, optimizer=optimizer,
                     extra_lines=["sample         " + final.replace("\n", "\n               ")])


def run_recurrent(name: str, options: RunOptions) -> ExampleResult:
    """Run recurrent example ``name`` (``lstm-digits`` or ``char-rnn``).

    >>> # run_recurrent("lstm-digits", RunOptions(epochs=2, backend="numpy"))
    """
    if name == "lstm-digits":
        return train_classifier(name, LSTM_DIGITS, options)
    return run_char_rnn(name, options)
