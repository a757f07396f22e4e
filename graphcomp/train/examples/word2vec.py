"""Word embeddings by skip-gram with negative sampling, the built-in example ``word2vec``.

The corpus is the books of Genesis and Exodus of the World English Bible, a public-domain
text the package ships (``data/README.md``). Each word predicts the words within a few
positions of it: the model scores a (center, context) pair by the dot product of the
center's input vector and the context's output vector, and learns to tell the true context
from ``negatives`` words drawn inside the graph (``gc.random.randint`` into a unigram table,
counts to the power 0.75). Both tables are gathered once per step (``gc.take``), so LazyAdam
updates only the rows a batch touches (``gc.optim.LazyAdam``, ``docs/training.md``). After
training the example prints the nearest neighbours (cosine) of a few words.

>>> tokens = corpus_tokens("In the beginning, God created the heavens and the earth.")
>>> tokens[:4]
['in', 'the', 'beginning', 'god']
>>> # result = run_word2vec("word2vec", RunOptions(epochs=5)); print(*result.extra_lines)
"""

from __future__ import annotations

import gzip
import re
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

from graphcomp.ir import Graph
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops import functions as F
from graphcomp.random import randint
from graphcomp.runtime.function import Function
from graphcomp.runtime.function import compile as compile_function
from graphcomp.train import checkpoint, optim
from graphcomp.train.examples.base import ExampleResult, RunOptions, note, readiness, result_of
from graphcomp.train.fit import History, fit

__all__ = ["Word2Vec", "Word2VecConfig", "corpus_tokens", "nearest", "run_word2vec",
           "skipgram_pairs", "train_word2vec", "unigram_table", "vocabulary"]

CORPUS = "web_genesis_exodus.txt.gz"
DESCRIPTION = "skip-gram word2vec with negative sampling on Genesis and Exodus (public domain)"
QUERIES = ("god", "gold", "sons", "seven", "sheep", "egypt", "brother", "water")


@dataclass(frozen=True)
class Word2VecConfig:
    """Sizes and rates of a word2vec run (the defaults are the built-in example's)."""

    dim: int = 64
    window: int = 4  # context words on each side (reduced at random per center, as word2vec)
    negatives: int = 5
    min_count: int = 5  # rarer words are dropped
    subsample: float = 1e-3  # frequent words are kept with probability ~sqrt(subsample / f)
    batch_size: int = 512
    epochs: int = 10
    lr: float = 0.005
    table_size: int = 1 << 16  # entries of the unigram table negatives are drawn from


@dataclass
class Word2Vec:
    """The model's graph: the pair placeholders, the mean loss, and both tables."""

    center: Tensor
    context: Tensor
    loss: Tensor
    embeddings: Parameter  # input vectors: the word embeddings
    output_vectors: Parameter


def corpus_tokens(text: str | None = None) -> list[str]:
    """Lower-case words of ``text`` (default: the shipped corpus); possessive ``'s`` dropped.

    >>> corpus_tokens("Abraham’s son, Isaac.")
    ['abraham', 'son', 'isaac']
    """
    if text is None:
        data = resources.files("graphcomp.train.examples").joinpath("data", CORPUS)
        text = gzip.decompress(data.read_bytes()).decode("utf-8")
    text = re.sub(r"[’']s\b", "", text.lower())
    return re.findall(r"[a-z]+", text)


def vocabulary(tokens: list[str], min_count: int) -> tuple[list[str], np.ndarray]:
    """Words seen at least ``min_count`` times, most frequent first, and their counts.

    >>> vocabulary(["a", "b", "a", "c", "a", "b"], 2)
    (['a', 'b'], array([3, 2]))
    """
    words, counts = np.unique(np.array(tokens), return_counts=True)
    order = np.lexsort((words, -counts))
    kept = [i for i in order if counts[i] >= min_count]
    return [str(words[i]) for i in kept], counts[kept].astype(np.int64)


def skipgram_pairs(ids: np.ndarray, counts: np.ndarray, window: int, subsample: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) id pairs: frequent words subsampled, then every context word within
    a window reduced at random per center (1 to ``window`` words each side).

    >>> c, o = skipgram_pairs(np.arange(4), np.ones(4), 1, 0.0, np.random.default_rng(0))
    >>> sorted(zip(c.tolist(), o.tolist()))[:3]
    [(0, 1), (1, 0), (1, 2)]
    """
    if subsample > 0:
        freq = counts[ids] / counts.sum()
        keep = np.minimum(1.0, (np.sqrt(freq / subsample) + 1.0) * subsample / freq)
        ids = ids[rng.random(ids.size) < keep]
    reach = rng.integers(1, window + 1, size=ids.size)
    centers, contexts = [], []
    for offset in range(1, window + 1):
        left, right = np.arange(ids.size - offset), np.arange(offset, ids.size)
        for a, b in ((left, right), (right, left)):
            near = reach[a] >= offset
            centers.append(ids[a[near]])
            contexts.append(ids[b[near]])
    return np.concatenate(centers).astype(np.int64), np.concatenate(contexts).astype(np.int64)


def unigram_table(counts: np.ndarray, size: int) -> np.ndarray:
    """``size`` word ids, each word filling a share proportional to ``count ** 0.75``.

    >>> unigram_table(np.array([16, 1]), 9).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 1]
    """
    weights = counts.astype(np.float64) ** 0.75
    bounds = np.cumsum(weights) / weights.sum()
    return np.searchsorted(bounds, (np.arange(size) + 0.5) / size).astype(np.int64)


def build_word2vec(vocab_size: int, config: Word2VecConfig, table: np.ndarray,
                   seed: int = 0) -> Word2Vec:
    """The skip-gram graph: a true context and ``config.negatives`` drawn words per center.

    >>> # model = build_word2vec(5000, Word2VecConfig(), unigram_table(counts, 1 << 16))
    """
    rng = np.random.default_rng(seed)
    bound = 0.5 / config.dim
    embeddings = F.parameter(rng.uniform(-bound, bound, (vocab_size, config.dim))
                             .astype(np.float32), name="embeddings")
    output_vectors = F.parameter(np.zeros((vocab_size, config.dim), np.float32),
                                 name="output_vectors")
    center = F.placeholder((None,), "int64", name="center")
    context = F.placeholder((None,), "int64", name="context")
    n = center.shape[0]
    drawn = F.take(F.constant(table), randint(0, table.size, (n, config.negatives)), axis=0)
    targets = F.concatenate([F.expand_dims(context, 1), drawn], axis=1)  # (N, 1 + negatives)
    v = F.take(embeddings, center, axis=0)  # (N, dim)
    u = F.take(output_vectors, targets, axis=0)  # (N, 1 + negatives, dim)
    scores = F.sum(u * F.expand_dims(v, 1), axis=-1)
    sign = np.full((1, 1 + config.negatives), -1.0, np.float32)
    sign[0, 0] = 1.0  # -log sigmoid(s) for the true context, -log sigmoid(-s) for the others
    loss = F.mean(F.sum(F.softplus(-F.constant(sign) * scores), axis=-1))
    return Word2Vec(center, context, loss, embeddings, output_vectors)


def nearest(vectors: np.ndarray, words: list[str], query: str, k: int = 5) -> list[str]:
    """The ``k`` words whose vectors have the largest cosine with ``query``'s.

    >>> nearest(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), ["a", "b", "c"], "a", 1)
    ['b']
    """
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit[words.index(query)]
    order = [int(i) for i in np.argsort(-similarity, kind="stable") if words[i] != query]
    return [words[i] for i in order[:k]]


def train_word2vec(tokens: list[str], config: Word2VecConfig, options: RunOptions,
                   ) -> tuple[Word2Vec, list[str], History, Function, optim.Optimizer]:
    """Build the vocabulary and pairs of ``tokens`` and fit the model with ``gc.fit``.

    >>> # model, words, history, step, opt = train_word2vec(tokens, Word2VecConfig(), options)
    """
    rng = np.random.default_rng(options.seed)
    words, counts = vocabulary(tokens, config.min_count)
    index = {w: i for i, w in enumerate(words)}
    ids = np.array([index[t] for t in tokens if t in index], dtype=np.int64)
    centers, contexts = skipgram_pairs(ids, counts, config.window, config.subsample, rng)
    with Graph(name="word2vec", seed=options.seed):
        model = build_word2vec(len(words), config, unigram_table(counts, config.table_size),
                               options.seed)
        optimizer = optim.LazyAdam(lr=config.lr)
        updates = optimizer.updates(model.loss, [model.embeddings, model.output_vectors])
        if options.progress:
            note(f"compiling the training step ({len(words)} words, {centers.size} pairs)...")
        step = compile_function([model.center, model.context], model.loss, updates=updates,
                                **options.compile_options())
        if options.progress:
            note(readiness(step))
    history = fit(step, data=(centers, contexts), epochs=options.epochs_or(config.epochs),
                  batch_size=config.batch_size, shuffle=True, seed=options.seed,
                  progress=options.progress, names=["loss"])
    return model, words, history, step, optimizer


def run_word2vec(name: str, options: RunOptions) -> ExampleResult:
    """Train on the shipped corpus; print the nearest neighbours of a few words.

    >>> # run_word2vec("word2vec", RunOptions(epochs=2, backend="numpy"))
    """
    options.check_outputs()
    start = time.perf_counter()
    model, words, history, step, optimizer = train_word2vec(corpus_tokens(), Word2VecConfig(),
                                                            options)
    if options.save:
        checkpoint.save(options.save, [model.embeddings, model.output_vectors] + optimizer.state)
    if options.plot:
        from graphcomp.train.plot import plot_history

        plot_history(history, options.plot, title=name)
    losses = history.history["loss"]
    vectors = np.asarray(model.embeddings.value)
    lines = ["nearest neighbours (cosine of the embeddings):"]
    lines += [f"  {q:>8}: {', '.join(nearest(vectors, words, q))}" for q in QUERIES if q in words]
    headline = (f"loss {losses[0]:.4f} -> {losses[-1]:.4f}  ({len(words)} words, "
                f"{history.epochs} epoch(s), {history.steps} steps)")
    return result_of(name, step, [], history,
                     {"first_loss": float(losses[0]), "final_loss": float(losses[-1])},
                     headline, start, model=model, optimizer=optimizer, extra_lines=lines)
