"""A compiled function called from several threads at once gives each call its own step."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import graphcomp as gc


@pytest.mark.parametrize("driver_jit", [False, True], ids=["python-driver", "jit-driver"])
def test_concurrent_calls_do_not_mix_their_buffers(driver_jit: bool):
    rng = np.random.default_rng(6)
    with gc.Graph():
        x = gc.placeholder((None, 8), "float64", name="x")
        w = gc.parameter(rng.standard_normal((8, 8)), name="w")
        y = gc.tanh(x @ w) * 2.0 + gc.sum(x, axis=1, keepdims=True)
    f = gc.compile([x], y, backend="numba", driver_jit=driver_jit)
    reference = gc.compile([x], y, backend="numpy")
    feeds = [rng.standard_normal((16, 8)) for _ in range(4)]
    expected = [reference(v) for v in feeds]
    failures: list[int] = []
    errors: list[BaseException] = []  # a call that raises in a worker fails the test here

    def worker(k: int) -> None:
        try:
            for _ in range(300):
                if not np.allclose(f(feeds[k]), expected[k], rtol=1e-12):
                    failures.append(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} worker(s) raised: {errors!r}"
    assert not failures
