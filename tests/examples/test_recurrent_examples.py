"""The recurrent built-in examples (graphcomp/train/examples/recurrent.py), at reduced size on
the numpy backend (fast to start at these sizes)."""

from __future__ import annotations

import numpy as np

import graphcomp as gc
from graphcomp import cli
from graphcomp.train import checkpoint
from graphcomp.train.examples import EXAMPLES, RunOptions
from graphcomp.train.examples.recurrent import (
    CharSettings,
    char_rnn,
    read_text,
    run_char_rnn,
    text_sequences,
)

TINY = CharSettings(hidden=16, embed=8, steps=8, batch_size=16, sample_length=30,
                    text_chars=2000)


def test_both_examples_are_registered():
    assert {"lstm-digits", "char-rnn"} <= set(EXAMPLES)


def test_lstm_digits_learns_in_one_epoch_from_the_command_line(tmp_path, capsys):
    curve, model = tmp_path / "curve.png", tmp_path / "lstm.npz"
    code = cli.main(["train", "lstm-digits", "--epochs", "1", "--backend", "numpy",
                     "--compile-mode", "eager", "--no-progress", "--plot", str(curve),
                     "--save", str(model)])
    assert code == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy")[1].split("%")[0]) / 100
    assert accuracy > 0.3  # chance is 0.1; 20 epochs reach 0.96 (docs/loops.md)
    assert curve.stat().st_size > 1000
    names = set(checkpoint.read(model))
    assert {"lstm/w_x", "lstm/w_h", "lstm/b", "head/w", "head/b"} <= names


def test_the_shipped_text_and_its_sequences():
    text = read_text()
    assert 30_000 < len(text) < 40_000 and text.startswith("ALICE'S ADVENTURES IN WONDERLAND")
    vocab = "".join(sorted(set(text)))
    inputs, targets = text_sequences(text[:101], vocab, 10)
    assert inputs.shape == targets.shape == (10, 10)
    assert "".join(vocab[i] for i in inputs[3]) == text[30:40]
    assert "".join(vocab[i] for i in targets[3]) == text[31:41]


def test_the_one_step_function_predicts_what_the_scanned_model_predicts():
    text = read_text()[:500]
    vocab = "".join(sorted(set(text)))
    inputs, _ = text_sequences(text, vocab, 12)
    with gc.Graph():
        model = char_rnn(len(vocab), hidden=8, embed=4)
        probs_all = gc.softmax(model.logits)
        whole = gc.compile([model.ids], probs_all, backend="numpy")
        step = gc.compile(model.step_inputs, model.step_outputs, backend="numpy")
    want = whole(inputs[:2])  # (steps, batch, vocab)
    h = c = np.zeros((2, 8), np.float32)
    for t in range(inputs.shape[1]):
        probs, h, c = step(inputs[:2, t], h, c, np.float32(1.0))
        np.testing.assert_allclose(probs, want[t], rtol=1e-5, atol=1e-6)


def test_char_rnn_prints_a_sample_each_epoch_and_saves(tmp_path, capsys):
    saved = tmp_path / "char.npz"
    result = run_char_rnn("char-rnn", RunOptions(epochs=2, backend="numpy", progress=False,
                                                 save=str(saved)), TINY)
    out = capsys.readouterr().out
    assert out.count("--- sample after epoch") == 2
    sample = out.split("--- sample after epoch 2 (temperature 0.8):\n")[1]
    assert sample.startswith("Alice ") and len(sample.rstrip("\n")) >= 36
    vocab = set(read_text()[:2000])
    assert set(sample.rstrip("\n")) <= vocab
    losses = result.history.history["loss"]
    assert losses[1] < losses[0] < np.log(len(vocab)) + 0.5
    assert 0 < result.metrics["test_loss"] < np.log(len(vocab)) + 0.5
    assert "nats/char" in result.headline and result.extra_lines[0].startswith("sample")
    assert "lstm/w_h" in checkpoint.read(saved)
