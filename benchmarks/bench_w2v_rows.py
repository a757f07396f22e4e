"""What touching a word2vec step's rows costs, against the vocabulary: a floor for the step.

A step of the ``word2vec`` workloads (``workloads.py``: batch 512, dimension 128, 5
negatives, f32) must read the rows its ids name (512 center rows of ``W_in``, 3,072 context
and negative rows of ``W_out``) and later write the distinct ones back. This script times,
in numba, only that: a gather of those rows into a buffer, then a read-modify-write of each
distinct row (``row -= 1e-9 * gathered``), with the negatives drawn afresh for every step as
the workload does, with and without hinting the rows 8 ids ahead into the caches
(``graphcomp/backends/numba/prefetch.py``). No implementation of the step can touch fewer
bytes, so ``time(vocabulary 100,000) - time(vocabulary 1,000)`` of the hinted variant is a
floor for what the larger vocabulary adds to a step. Median of ``--steps`` per process,
vocabularies alternating, ``--rounds`` rounds; run in a fresh process:

    PYTHONPATH=$PWD python benchmarks/bench_w2v_rows.py [--steps 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads

from graphcomp.backends.numba.prefetch import prefetch

AHEAD = 8


@njit(cache=True)
def touch_rows(table, ids, distinct, rows, hint):
    """Gather ``table[ids]`` into ``rows``, then ``table[r] -= 1e-9 * rows[g]`` for each
    distinct id ``r = distinct[g]`` (only the memory traffic matters)."""
    n, inner = ids.size, table.shape[1]
    flat = table.reshape(table.size)
    for j in range(n):
        if hint and j + AHEAD < n:
            for c in range(0, inner, 16):
                prefetch(flat, ids[j + AHEAD] * inner + c)
        for c in range(inner):
            rows[j, c] = table[ids[j], c]
    for g in range(distinct.size):
        if hint and g + AHEAD < distinct.size:
            for c in range(0, inner, 16):
                prefetch(flat, distinct[g + AHEAD] * inner + c)
        r = distinct[g]
        for c in range(inner):
            table[r, c] -= np.float32(1e-9) * rows[g, c]


def measure(vocab: int, steps: int, hint: bool) -> float:
    """Median seconds of one step's row traffic (both tables) at ``vocab`` rows."""
    problem = workloads.make("word2vec", vocab=vocab)
    w_in, w_out = (v.copy() for v in problem.params.values())
    unigram = workloads._w2v_unigram(vocab)
    center, context = problem.inputs
    distinct_in = np.unique(center)
    rng = np.random.default_rng(1)
    rows_out = np.empty((3072, 128), np.float32)
    rows_in = np.empty((512, 128), np.float32)
    times = []
    for step in range(steps + 10):
        negatives = unigram[rng.integers(0, unigram.size, (512, 5))]
        targets = np.concatenate([context[:, None], negatives], axis=1).ravel()
        distinct = np.unique(targets)  # outside the timing: finding them is not row traffic
        start = time.perf_counter()
        touch_rows(w_out, targets, distinct, rows_out, hint)
        touch_rows(w_in, center, distinct_in, rows_in, hint)
        if step >= 10:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[int, bool], list[float]] = {}
    for _ in range(args.rounds):
        for vocab in (1000, 100_000):
            for hint in (False, True):
                results.setdefault((vocab, hint), []).append(measure(vocab, args.steps, hint))
    print(f"load average {os.getloadavg()[0]:.1f}; median [range] over {args.rounds} rounds")
    print("| rows touched per step | vocabulary 1,000 (ms) | vocabulary 100,000 (ms) | "
          "difference (ms) |")
    print("|---|---|---|---|")
    for hint in (False, True):
        small, large = (np.array(results[(v, hint)]) * 1e3 for v in (1000, 100_000))
        label = "hinted 8 ids ahead" if hint else "no hints"
        print(f"| gather, then update each distinct row ({label}) | "
              f"{np.median(small):.3f} [{small.min():.3f}–{small.max():.3f}] | "
              f"{np.median(large):.3f} [{large.min():.3f}–{large.max():.3f}] | "
              f"{np.median(large) - np.median(small):.3f} |")


if __name__ == "__main__":
    main()
