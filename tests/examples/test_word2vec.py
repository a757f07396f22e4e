"""The word2vec example: on a synthetic corpus with known structure the neighbours are right;
on the shipped corpus it trains and prints neighbours (reduced size, numpy backend)."""

import numpy as np

from graphcomp import cli
from graphcomp.train.examples import RunOptions, run_example
from graphcomp.train.examples.word2vec import (
    Word2VecConfig,
    corpus_tokens,
    nearest,
    train_word2vec,
    vocabulary,
)


def _two_topic_corpus(rng, sentences=600, length=8):
    """Sentences of words from one topic each: 'a0'..'a9' never meet 'b0'..'b9'."""
    tokens = []
    for k in range(sentences):
        topic = "ab"[k % 2]
        tokens += [f"{topic}{i}" for i in rng.integers(0, 10, size=length)]
    return tokens


def test_neighbours_follow_the_corpus_structure():
    tokens = _two_topic_corpus(np.random.default_rng(0))
    config = Word2VecConfig(dim=8, window=2, negatives=3, min_count=1, subsample=0.0,
                            batch_size=64, epochs=4, lr=0.02, table_size=1024)
    options = RunOptions(backend="numpy", progress=False)
    model, words, history, _, _ = train_word2vec(tokens, config, options)
    losses = history.history["loss"]
    # Chance is 4 log 2 = 2.77 (four scores of 0); half the negatives share the context's
    # topic and cannot be told apart, so the loss stays well above 0.
    assert losses[-1] < losses[0] < 4 * np.log(2) - 0.3, losses
    vectors = np.asarray(model.embeddings.value)
    same = [n[0] == w[0] for w in words for n in nearest(vectors, words, w, 3)]
    assert np.mean(same) > 0.9, np.mean(same)


def test_the_shipped_corpus_is_public_domain_text_of_some_size():
    tokens = corpus_tokens()
    assert tokens[:4] == ["in", "the", "beginning", "god"]
    words, counts = vocabulary(tokens, 5)
    assert 60_000 < len(tokens) < 80_000 and 1000 < len(words) < 1500
    assert counts[0] == max(counts)


def test_word2vec_example_trains_and_prints_neighbours(tmp_path, capsys):
    status = cli.main(["train", "word2vec", "--epochs", "1", "--backend", "numpy",
                       "--no-progress", "--save", str(tmp_path / "w2v.npz")])
    assert status == 0
    out = capsys.readouterr().out
    assert "nearest neighbours" in out and "gold:" in out
    assert (tmp_path / "w2v.npz").stat().st_size > 100_000


def test_word2vec_result_reports_the_loss():
    result = run_example("word2vec", epochs=1, backend="numpy", progress=False)
    assert result.metrics["final_loss"] < np.log(2) * 6  # below chance: 6 scores of 0
    assert len(result.extra_lines) == 9
