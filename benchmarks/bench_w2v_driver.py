"""A word2vec step with an njit driver against the same step with a Python driver.

Compiles one step twice in one process (``driver_jit=True`` and ``False``) and times them in
alternating blocks of 25 steps, so both see the same load: the ``word2vec`` or
``word2vec_100k`` workload (``workloads.py``: SGD on the gathered rows) or the built-in
``word2vec`` example's step (``graphcomp train word2vec``: lazy Adam, dimension 64, batches
of 512 pairs of its corpus). Prints each driver's compile seconds (wall and CPU of this
process) and its step's median wall and CPU (``time.thread_time``) time with quartiles. The
njit driver compiles first, so the Python driver finds its kernels compiled: its compile
time here is not a cold one (``bench_compile_parts.py`` measures those). Run in a fresh
process with an empty cache folder::

    GRAPHCOMP_CACHE_DIR=$(mktemp -d) PYTHONPATH=$PWD python benchmarks/bench_w2v_driver.py example
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

Step = Callable[[], object]


def workload_steps(name: str) -> dict[str, Step]:
    """The workload's step under each driver (fixed inputs, as ``run.py`` times it)."""
    from workloads import graphcomp_graph, graphcomp_updates, make

    import graphcomp as gc

    problem = make(name)
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = graphcomp_updates(problem, params, grads)
    steps = {}
    with loss.graph:
        for label, jit in (("njit", True), ("python", False)):
            function = _timed_compile(label, lambda jit=jit: gc.compile(
                inputs, loss, updates=updates, backend="numba", driver_jit=jit))
            steps[label] = lambda function=function: function(*problem.inputs)
    return steps


def example_steps() -> dict[str, Step]:
    """The word2vec example's lazy Adam step under each driver, fed successive batches."""
    from graphcomp.ir import Graph
    from graphcomp.runtime.function import compile as compile_function
    from graphcomp.train import optim
    from graphcomp.train.examples import word2vec as w2v

    config = w2v.Word2VecConfig()
    tokens = w2v.corpus_tokens()
    words, counts = w2v.vocabulary(tokens, config.min_count)
    index = {w: i for i, w in enumerate(words)}
    ids = np.array([index[t] for t in tokens if t in index], dtype=np.int64)
    centers, contexts = w2v.skipgram_pairs(ids, counts, config.window, config.subsample,
                                           np.random.default_rng(0))
    batches = [(centers[j:j + config.batch_size], contexts[j:j + config.batch_size])
               for j in range(0, centers.size - config.batch_size, config.batch_size)]
    print(f"example: {len(words)} words, {len(batches)} steps an epoch")
    steps = {}
    with Graph(name="word2vec", seed=0):
        model = w2v.build_word2vec(len(words), config,
                                   w2v.unigram_table(counts, config.table_size), 0)
        updates = optim.LazyAdam(lr=config.lr).updates(
            model.loss, [model.embeddings, model.output_vectors])
        for label, jit in (("njit", True), ("python", False)):
            function = _timed_compile(label, lambda jit=jit: compile_function(
                [model.center, model.context], model.loss, updates=updates, backend="numba",
                driver_jit=jit))
            counter = iter(range(1 << 62))
            steps[label] = (lambda function=function, counter=counter:
                            function(*batches[next(counter) % len(batches)]))
    return steps


def _timed_compile(label: str, compile_step: Callable[[], object]) -> object:
    start, start_cpu = time.perf_counter(), time.process_time()
    function = compile_step()
    print(f"{label} driver: compiled in {time.perf_counter() - start:.2f} s "
          f"({time.process_time() - start_cpu:.2f} s CPU)", flush=True)
    return function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["word2vec", "word2vec_100k", "example"])
    parser.add_argument("--blocks", type=int, default=40)
    args = parser.parse_args()
    steps = example_steps() if args.target == "example" else workload_steps(args.target)
    for step in steps.values():
        for _ in range(10):
            step()
    wall: dict[str, list[float]] = {label: [] for label in steps}
    cpu: dict[str, list[float]] = {label: [] for label in steps}
    for block in range(args.blocks):
        order = list(steps) if block % 2 == 0 else list(reversed(steps))
        for label in order:
            for _ in range(25):
                start, start_cpu = time.perf_counter(), time.thread_time()
                steps[label]()
                cpu[label].append(time.thread_time() - start_cpu)
                wall[label].append(time.perf_counter() - start)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.target}, {25 * args.blocks} steps each")
    for label in steps:
        w, c = np.array(wall[label]) * 1e3, np.array(cpu[label]) * 1e3
        print(f"| {label} driver | {np.median(w):.3f} [{np.percentile(w, 25):.3f}–"
              f"{np.percentile(w, 75):.3f}] ms wall | {np.median(c):.3f} ms CPU |")


if __name__ == "__main__":
    main()
