"""A 64-128-64-10 ReLU network trained with Adam on scikit-learn's 8x8 digits.

    python examples/mlp_digits.py [--epochs 20] [--backend numba|numpy] [--plot curve.png]

The whole training step (forward, adjoint, Adam update) is one compiled function; the same model
is the built-in `graphcomp train mlp-digits`.
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits

import graphcomp as gc


def build_model(sizes=(64, 128, 64, 10), seed=0):
    x = gc.placeholder((None, sizes[0]), "float32", name="x")  # batch size bound at call time
    y = gc.placeholder((None,), "int64", name="y")
    rng = np.random.default_rng(seed)
    params, h = [], x
    for i in range(1, len(sizes)):
        last = i == len(sizes) - 1
        init = gc.init.glorot_uniform if last else gc.init.he_normal
        W = gc.parameter(init((sizes[i - 1], sizes[i]), rng), name=f"W{i}")
        b = gc.parameter(gc.init.zeros((sizes[i],)), name=f"b{i}")
        params += [W, b]
        h = h @ W + b if last else gc.relu(h @ W + b)
    loss = gc.mean(gc.softmax_cross_entropy(h, y))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(h, axis=-1), y), "float32"))
    return x, y, loss, accuracy, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--backend", default=None, help="numba or numpy (default: gc's default)")
    parser.add_argument("--plot", help="write loss/accuracy curves to this PNG")
    parser.add_argument("--save", help="write a checkpoint (parameters and Adam state)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    options = {} if args.backend is None else {"backend": args.backend}

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = gc.data.split(X, digits.target.astype(np.int64),
                                                     test_fraction=0.25, seed=0)
    batch_size = 32
    total_steps = args.epochs * gc.data.num_batches(len(X_train), batch_size)

    with gc.Graph(name="mlp-digits"):
        x, y, loss, accuracy, params = build_model()
        opt = gc.optim.Adam(lr=gc.optim.CosineDecay(2e-3, total_steps))
        step = gc.compile([x, y], [loss, accuracy], updates=opt.updates(loss, params), **options)
        evaluate = gc.compile([x, y], [loss, accuracy], **options)

    hist = gc.fit(step, data=(X_train, y_train), epochs=args.epochs, batch_size=batch_size,
                  shuffle=True, seed=0, validation=(evaluate, (X_test, y_test)),
                  progress=not args.no_progress, names=["loss", "acc"])
    test_loss, test_accuracy = evaluate(X_test, y_test)
    print(f"held-out accuracy {100 * float(test_accuracy):.2f}% (loss {float(test_loss):.4f}) "
          f"after {hist.epochs} epochs; compile {step.compile_seconds:.2f} s, "
          f"median step {1e3 * np.median(hist.history['step_time']):.3f} ms")
    if args.save:
        gc.save(args.save, params + opt.state)
        print(f"saved {args.save}")
    if args.plot:
        from graphcomp.train.plot import plot_history

        plot_history(hist, args.plot, title="mlp-digits")
        print(f"wrote {args.plot}")
    return float(test_accuracy)


if __name__ == "__main__":
    main()
