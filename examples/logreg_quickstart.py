"""The README's example as a script: softmax regression on random data with the numpy backend."""

import numpy as np

import graphcomp as gc


def main() -> None:
    rng = np.random.default_rng(0)
    with gc.Graph(name="logreg"):
        x = gc.placeholder((None, 64), "float64", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        W = gc.parameter(np.zeros((64, 10)), name="W")
        b = gc.parameter(np.zeros(10), name="b")
        logits = x @ W + b
        loss = gc.mean(gc.softmax_cross_entropy(logits, y))
        probs = gc.softmax(logits, axis=-1)

    f = gc.compile([x, y], [loss, probs], backend="numpy")
    loss_v, probs_v = f(rng.random((32, 64)), rng.integers(0, 10, 32))
    print(gc.format([loss, probs]))
    print(
        f"loss = {float(loss_v):.4f} (log 10 = {np.log(10):.4f}); probs sum to {probs_v.sum(1)[:3]}"
    )


if __name__ == "__main__":
    main()
