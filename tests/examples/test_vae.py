"""The built-in vae-digits at reduced size, on the numpy backend."""

import numpy as np

import graphcomp as gc
from graphcomp import cli
from graphcomp.train.examples import run_example
from graphcomp.train.examples.classifiers import digits
from graphcomp.train.examples.vae import vae


def test_the_loss_is_the_sum_of_its_terms_and_the_kl_term_matches_numpy_at_zero_weights():
    X = digits()[1][:20].astype("float64")
    with gc.Graph(seed=3) as g:
        model = vae(hidden=16, latent=3, dtype="float64")
        for p in gc.parameters(g):  # mu = log_var = 0, logits = 0: exact values are known
            if p.name.startswith(("mean/", "log_var/", "pixels/")):
                p.assign(np.zeros(p.shape))
        f = gc.compile([model.x], [model.neg_elbo, model.reconstruction_nats, model.kl_nats],
                       backend="numpy")
    neg_elbo, reconstruction, kl = f(X)
    assert kl == 0.0  # q(z | x) = N(0, I)
    np.testing.assert_allclose(reconstruction, 64 * np.log(2.0), rtol=1e-12)  # p = 1/2
    np.testing.assert_allclose(neg_elbo, reconstruction + kl, rtol=1e-12)


def test_a_few_epochs_lower_the_negative_elbo_and_plot_writes_a_png(tmp_path, capsys):
    picture = tmp_path / "vae.png"
    status = cli.main(["train", "vae-digits", "--epochs", "3", "--backend", "numpy",
                       "--no-progress", "--plot", str(picture)])
    out = capsys.readouterr().out
    assert status == 0
    neg_elbo = float(out.split("test -ELBO")[1].split("nats")[0])
    assert 13.7 < neg_elbo < 40.0  # 13.7: the pixels' own entropy; 44.4 for p = 1/2 everywhere
    assert "reconstruction" in out and "KL" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 5000


def test_the_history_records_the_terms():
    result = run_example("vae-digits", epochs=2, backend="numpy", progress=False)
    history = result.history.history
    assert history["val_neg_elbo"][1] < history["val_neg_elbo"][0]
    np.testing.assert_allclose(result.metrics["test_neg_elbo"],
                               result.metrics["test_reconstruction"] + result.metrics["test_kl"],
                               rtol=1e-5)
