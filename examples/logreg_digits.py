"""Multinomial logistic regression on scikit-learn's 8x8 digits, with SGD and momentum.

    python examples/logreg_digits.py [--epochs 20] [--backend numba|numpy]
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits

import graphcomp as gc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--backend", default=None, help="numba or numpy (default: gc's default)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    options = {} if args.backend is None else {"backend": args.backend}

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = gc.data.split(X, digits.target.astype(np.int64),
                                                     test_fraction=0.25, seed=0)
    with gc.Graph(name="logreg-digits"):
        x = gc.placeholder((None, 64), "float32", name="x")
        y = gc.placeholder((None,), "int64", name="y")
        W = gc.parameter(gc.init.glorot_uniform((64, 10), seed=0), name="W")
        b = gc.parameter(gc.init.zeros((10,)), name="b")
        logits = x @ W + b
        loss = gc.mean(gc.softmax_cross_entropy(logits, y))
        accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(logits, axis=-1), y), "float32"))
        opt = gc.optim.SGD(lr=0.1, momentum=0.9)
        step = gc.compile([x, y], [loss, accuracy], updates=opt.updates(loss, [W, b]), **options)
        evaluate = gc.compile([x, y], [loss, accuracy], **options)

    hist = gc.fit(step, data=(X_train, y_train), epochs=args.epochs, batch_size=32, seed=0,
                  progress=not args.no_progress, names=["loss", "acc"])
    test_loss, test_accuracy = evaluate(X_test, y_test)
    print(f"train loss {hist.history['loss'][0]:.4f} -> {hist.history['loss'][-1]:.4f}; "
          f"held-out accuracy {100 * float(test_accuracy):.2f}% (loss {float(test_loss):.4f})")
    return float(test_accuracy)


if __name__ == "__main__":
    main()
