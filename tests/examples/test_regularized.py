"""The built-in example mlp-dropout-bn-digits at reduced size: one epoch on the numpy backend."""

import numpy as np

import graphcomp as gc
from graphcomp import cli
from graphcomp.train.examples import EXAMPLES, RunOptions
from graphcomp.train.examples.classifiers import digits
from graphcomp.train.examples.regularized import mlp_dropout_bn, run_regularized


def test_the_model_has_four_hidden_blocks_with_batch_norm_and_dropout():
    with gc.Graph(seed=0) as g:
        model = mlp_dropout_bn()
    names = [p.name for p in gc.parameters(g)]
    assert [n for n in names if n.endswith("running_mean")] == [
        f"block{i}/batch_norm/running_mean" for i in range(1, 5)]
    assert "random.state" in names and [p.name for p in model.params] == names
    assert model.training.dtype == np.dtype("bool")


def test_one_epoch_trains_and_evaluation_with_training_false_is_deterministic(tmp_path):
    result = run_regularized("mlp-dropout-bn-digits",
                             RunOptions(epochs=1, backend="numpy", progress=False,
                                        save=str(tmp_path / "model.npz")))
    assert result.test_accuracy > 0.8
    assert "training=False" in result.headline
    model = result.model
    step_count = int(gc.train.checkpoint.read(tmp_path / "model.npz")["adam.step"])
    assert step_count == 43  # 1348 examples in batches of 32
    with model.x.graph:
        evaluate = gc.compile([model.x, model.y, model.training], [model.loss, model.accuracy],
                              backend="numpy")
    _, X_test, _, y_test = digits()
    stats = {p.name: p.value.copy() for p in model.params if "running" in (p.name or "")}
    off = np.array(False)
    first, second = evaluate(X_test, y_test, off), evaluate(X_test, y_test, off)
    np.testing.assert_array_equal(first, second)  # no dropout, running statistics
    np.testing.assert_allclose(float(first[1]), result.test_accuracy)
    for p in model.params:  # evaluation calls leave the running statistics alone
        if p.name in stats:
            np.testing.assert_array_equal(p.value, stats[p.name])


def test_the_command_line_trains_it(capsys):
    assert "mlp-dropout-bn-digits" in EXAMPLES
    status = cli.main(["train", "mlp-dropout-bn-digits", "--epochs", "1", "--backend", "numpy",
                       "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    accuracy = float(out.split("test accuracy")[1].split("%")[0])
    assert accuracy > 80.0
