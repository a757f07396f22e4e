"""The built-in autoencoders of the digits at reduced size, on the numpy backend."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import cli
from graphcomp.train.examples import run_example
from graphcomp.train.examples.autoencoders import autoencoder
from graphcomp.train.examples.classifiers import digits


def test_the_denoising_graph_feeds_clipped_noisy_inputs_and_scores_against_the_clean_ones():
    X = digits()[1][:50]
    with gc.Graph(seed=1):
        model = autoencoder((64, 32, 8), noise=0.3)
        f = gc.compile([model.x], [model.corrupted, model.reconstruction, model.loss,
                                   model.input_error], backend="numpy")
    corrupted, output, loss, input_error = f(X)
    assert corrupted.min() >= 0.0 and corrupted.max() <= 1.0
    assert 0.02 < np.mean((corrupted - X) ** 2) < 0.09  # std 0.3, clipped
    np.testing.assert_allclose(input_error, np.mean((corrupted - X) ** 2), rtol=1e-5)
    np.testing.assert_allclose(loss, np.mean((output - X) ** 2), rtol=1e-5)
    again = f(X)[0]
    assert not np.array_equal(corrupted, again)  # new noise on every call


def test_the_autoencoder_learns_in_a_few_epochs():
    result = run_example("autoencoder-digits", epochs=3, backend="numpy", progress=False)
    mse = result.history.history["val_mse"]
    assert mse[-1] < mse[0] and result.metrics["test_mse"] < 0.06  # predicting the mean: 0.073
    assert "test reconstruction MSE" in result.headline and not result.extra_lines


def test_the_denoising_variant_from_the_command_line(capsys):
    status = cli.main(["train", "autoencoder-digits", "--noise", "--epochs", "3", "--backend",
                       "numpy", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    noisy, ratio = out.split("the noisy input's MSE ")[1].split(", ")
    assert float(noisy) > 0.02 and float(ratio.split("x")[0]) > 1.0
    assert "noise std 0.3" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "mlp-digits", "--noise", "0.2"], "--noise: mlp-digits takes no noise"),
    (["train", "autoencoder-digits", "--noise", "-1"], "--noise must be a standard deviation"),
])
def test_noise_is_refused_where_it_means_nothing(argv, message, capsys):
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
