"""gc.nn layers: values against numpy formulas, float64 finite-difference gradients, numba equal
to numpy, batch norm's train/eval behaviour and its implicit updates, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc

RNG = np.random.default_rng(7)
X = RNG.standard_normal((5, 4))


def _by_name(graph: gc.Graph) -> dict[str, gc.Parameter]:
    return {p.name: p for p in gc.parameters(graph)}


def _bn_reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, axes: tuple,
                  eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


# ---------------------------------------------------------------- dense, embedding, layer_norm


def test_dense_matches_numpy_and_its_gradient_matches_finite_differences():
    with gc.Graph() as g:
        x = gc.placeholder((None, 4), "float64", name="x")
        y = gc.nn.dense(x, 3, activation="tanh")
        params = _by_name(g)
        w, b = params["dense/w"], params["dense/b"]
        b.assign(RNG.standard_normal(3))
        (value,) = gc.compile([x], [y], backend="numpy")(X)
        np.testing.assert_allclose(value, np.tanh(X @ w.value + b.value), rtol=1e-13)
        assert gc.check_grads(gc.sum(y * y), [x, w, b], {x: X}).passed


def test_dense_on_a_rank_3_input_and_without_bias():
    with gc.Graph() as g:
        x = gc.placeholder((2, None, 4), "float64", name="x")
        y = gc.nn.dense(x, 6, use_bias=False, name="proj", init="he_normal")
        assert list(_by_name(g)) == ["proj/w"] and y.shape == (2, "N", 6)
        x3 = RNG.standard_normal((2, 3, 4))
        (value,) = gc.compile([x], [y], backend="numpy")(x3)
    np.testing.assert_allclose(value, x3 @ _by_name(g)["proj/w"].value, rtol=1e-13)


def test_initial_values_depend_on_the_name_only_and_follow_the_initializer():
    values = []
    for _ in range(2):
        with gc.Graph() as g:
            x = gc.placeholder((None, 400), "float32", name="x")
            gc.nn.dense(gc.nn.dense(x, 300), 300)
            values.append({k: p.value for k, p in _by_name(g).items()})
    assert list(values[0]) == ["dense/w", "dense/b", "dense_1/w", "dense_1/b"]
    for name in values[0]:
        np.testing.assert_array_equal(values[0][name], values[1][name])
    w0, w1 = values[0]["dense/w"], values[0]["dense_1/w"]
    assert w0.dtype == np.float32 and not np.array_equal(w0[:300], w1)
    limit = np.sqrt(6.0 / 700)  # Glorot uniform
    assert np.abs(w0).max() <= limit and np.abs(w0).max() > 0.95 * limit
    assert np.all(values[0]["dense/b"] == 0)


def test_embedding_rows_and_table_gradient():
    ids = np.array([[0, 3], [3, 1]])
    with gc.Graph() as g:
        tokens = gc.placeholder((None, 2), "int64", name="tokens")
        e = gc.nn.embedding(tokens, vocab=5, dim=3, dtype="float64")
        table = _by_name(g)["embedding/table"]
        (value,) = gc.compile([tokens], [e], backend="numpy")(ids)
        np.testing.assert_array_equal(value, table.value[ids])
        assert gc.check_grads(gc.sum(e * e * e), [table], {tokens: ids}).passed


@pytest.mark.parametrize("axis", [-1, (1, 2)])
def test_layer_norm_matches_numpy_and_finite_differences(axis):
    x3 = RNG.standard_normal((2, 3, 4))
    axes = (2,) if axis == -1 else axis
    with gc.Graph() as g:
        x = gc.placeholder((None, 3, 4), "float64", name="x")
        y = gc.nn.layer_norm(x, axis=axis)
        gamma, beta = _by_name(g)["layer_norm/gamma"], _by_name(g)["layer_norm/beta"]
        gamma.assign(RNG.uniform(0.5, 1.5, gamma.shape))
        beta.assign(RNG.standard_normal(beta.shape))
        (value,) = gc.compile([x], [y], backend="numpy")(x3)
        mean = x3.mean(axis=axes, keepdims=True)
        expected = (x3 - mean) / np.sqrt(x3.var(axis=axes, keepdims=True) + 1e-5)
        np.testing.assert_allclose(value, expected * gamma.value + beta.value, rtol=1e-12)
        u = gc.constant(RNG.standard_normal((2, 3, 4)))
        assert gc.check_grads(gc.sum(y * u), [x, gamma, beta], {x: x3}).passed


# ---------------------------------------------------------------- batch norm


def test_batch_norm_in_training_mode_matches_numpy_and_finite_differences():
    with gc.Graph() as g:
        x = gc.placeholder((5, 4), "float64", name="x")
        y = gc.nn.batch_norm(x, training=True)
        p = _by_name(g)
        gamma, beta = p["batch_norm/gamma"], p["batch_norm/beta"]
        gamma.assign(RNG.uniform(0.5, 1.5, 4))
        beta.assign(RNG.standard_normal(4))
        (value,) = gc.compile([x], [y], backend="numpy")(X)
        np.testing.assert_allclose(value, _bn_reference(X, gamma.value, beta.value, (0,)),
                                   rtol=1e-12, atol=1e-12)
        u = gc.constant(RNG.standard_normal((5, 4)))
        assert gc.check_grads(gc.sum(y * u), [x, gamma, beta], {x: X}).passed


def test_batch_norm_with_a_training_placeholder_gradient_in_both_modes():
    with gc.Graph():
        x = gc.placeholder((5, 4), "float64", name="x")
        training = gc.placeholder((), "bool", name="training")
        y = gc.nn.batch_norm(x, training)
        loss = gc.sum(gc.sin(y))
        for mode in (True, False):
            assert gc.check_grads(loss, [x], {x: X, training: np.array(mode)}).passed


def test_running_statistics_move_in_training_calls_only_and_serve_evaluation():
    momentum = 0.25
    with gc.Graph() as g:
        x = gc.placeholder((None, 4), "float64", name="x")
        training = gc.placeholder((), "bool", name="training")
        y = gc.nn.batch_norm(x, training, momentum=momentum, eps=1e-3)
        f = gc.compile([x, training], y, backend="numpy")
    p = _by_name(g)
    mean, var = p["batch_norm/running_mean"], p["batch_norm/running_var"]
    assert not mean.trainable and not var.trainable
    assert [t.name for t, _ in f.program.updates] == [mean.name, var.name]
    expected_mean, expected_var = np.zeros(4), np.ones(4)
    for step in range(3):
        batch = X * (step + 1) + step
        out = f(batch, True)
        expected_mean = (1 - momentum) * expected_mean + momentum * batch.mean(0)
        expected_var = (1 - momentum) * expected_var + momentum * batch.var(0, ddof=1)
        np.testing.assert_allclose(mean.value, expected_mean, rtol=1e-13)
        np.testing.assert_allclose(var.value, expected_var, rtol=1e-13)
        np.testing.assert_allclose(out, _bn_reference(batch, 1.0, 0.0, (0,), 1e-3), rtol=1e-12)
    out = f(X[:2], False)
    np.testing.assert_array_equal(mean.value, expected_mean)  # frozen in evaluation
    np.testing.assert_array_equal(var.value, expected_var)
    np.testing.assert_allclose(out, (X[:2] - expected_mean) / np.sqrt(expected_var + 1e-3),
                               rtol=1e-13)


def test_python_false_adds_no_update_and_updates_can_be_left_out():
    with gc.Graph() as g:
        x = gc.placeholder((None, 2, 3, 3), "float64", name="x")  # NCHW: channels on axis 1
        evaluate = gc.compile([x], gc.nn.batch_norm(x, False, axis=1, name="bn"),
                              backend="numpy")
        assert evaluate.program.updates == []
        trained = gc.nn.batch_norm(x, True, axis=1, name="bn2")
        quiet = gc.compile([x], trained, backend="numpy", implicit_updates=False)
        assert quiet.program.updates == []
        images = RNG.standard_normal((3, 2, 3, 3))
        np.testing.assert_allclose(quiet(images), _bn_reference(images, 1.0, 0.0, (0, 2, 3)),
                                   rtol=1e-12, atol=1e-12)
        assert np.all(_by_name(g)["bn2/running_mean"].value == 0)


def test_an_explicit_update_of_the_state_wins_over_the_implicit_one():
    with gc.Graph() as g:
        x = gc.placeholder((None, 2), "float64", name="x")
        y = gc.nn.batch_norm(x, True)
        mean = _by_name(g)["batch_norm/running_mean"]
        f = gc.compile([x], y, updates=[(mean, mean + 1.0)], backend="numpy")
        f(X[:, :2])
    np.testing.assert_array_equal(mean.value, [1.0, 1.0])
    assert _by_name(g)["batch_norm/running_var"].value[0] != 1.0


# ---------------------------------------------------------------- numba against numpy


def _train_and_evaluate(backend: str) -> tuple[list, dict[str, np.ndarray]]:
    with gc.Graph() as g:
        x = gc.placeholder((None, 4), "float32", name="x")
        labels = gc.placeholder((None,), "int64", name="labels")
        training = gc.placeholder((), "bool", name="training")
        with gc.name_scope("net"):
            h = gc.nn.dense(x, 8, activation="gelu")
            h = gc.nn.batch_norm(h, training, momentum=0.3)
            h = gc.nn.layer_norm(gc.nn.leaky_relu(h, 0.1))
            logits = gc.nn.dense(h, 3)
        loss = gc.mean(gc.softmax_cross_entropy(logits, labels))
        opt = gc.optim.SGD(lr=0.1, momentum=0.9)
        step = gc.compile([x, labels, training], [loss, logits], updates=opt.updates(loss),
                          backend=backend)
        outputs = []
        for k in range(3):
            batch = (X[:, :4] * (k + 1)).astype("float32")
            outputs += step(batch, np.array([0, 1, 2, 1, 0]), np.array(k < 2))
    return outputs, {p.name: p.value for p in gc.parameters(g)}


@pytest.fixture(scope="module")
def trained_on_both():
    return _train_and_evaluate("numba"), _train_and_evaluate("numpy")


def test_numba_training_steps_match_numpy(trained_on_both):
    (numba_out, numba_params), (numpy_out, numpy_params) = trained_on_both
    for got, want in zip(numba_out, numpy_out, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert list(numba_params) == list(numpy_params)
    for name, value in numba_params.items():
        np.testing.assert_allclose(value, numpy_params[name], rtol=2e-5, atol=2e-5, err_msg=name)
    assert not np.allclose(numpy_params["net/batch_norm/running_mean"], 0)


def test_the_optimizer_skips_state_that_is_not_trainable():
    with gc.Graph() as g:
        x = gc.placeholder((None, 4), "float32", name="x")
        loss = gc.sum(gc.nn.batch_norm(gc.nn.dense(x, 2), True))
        opt = gc.optim.Adam(lr=0.1)
        targets = [p.name for p, _ in opt.updates(loss)]
    assert targets[:4] == ["dense/w", "dense/b", "batch_norm/gamma", "batch_norm/beta"]
    assert "batch_norm/running_mean" not in targets
    trainable = [p.name for p in gc.parameters(g, trainable=True)]
    assert trainable == targets[:4]
    assert opt.state and not any(p.trainable for p in opt.state)


def test_fit_trains_with_batch_norm_and_its_running_statistics_move():
    with gc.Graph() as g:
        x = gc.placeholder((None, 4), "float64", name="x")
        y = gc.placeholder((None,), "float64", name="y")
        training = gc.placeholder((), "bool", name="training")
        pred = gc.nn.dense(gc.nn.batch_norm(x, training), 1)[:, 0]
        loss = gc.mean(gc.square(pred - y))
        step = gc.compile([x, y, training], loss, updates=gc.optim.SGD(0.02).updates(loss),
                          backend="numpy")
    rng = np.random.default_rng(3)  # its own data: the module's RNG depends on test order
    data_x = rng.standard_normal((32, 4)) * 3 + 1
    data_y = data_x @ np.array([1.0, -2.0, 0.5, 0.0])
    on = np.array(True)
    history = gc.fit(lambda a, b: step(a, b, on), (data_x, data_y), epochs=10, batch_size=8,
                     shuffle=True, seed=0, progress=False)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    running = _by_name(g)["batch_norm/running_mean"].value
    assert np.all(np.abs(running - 0) > 0.1)


# ---------------------------------------------------------------- scopes and errors


def test_name_scopes_nest_and_parameters_come_in_creation_order():
    with gc.Graph() as g:
        x = gc.placeholder((None, 2), "float64", name="x")
        with gc.name_scope("encoder"):
            h = gc.nn.dense(x, 2)
            with gc.name_scope("block"):
                h = gc.nn.dense(h, 2)
            h = gc.nn.dense(h, 2, name="out")
        gc.nn.layer_norm(h)
        top = gc.parameter(np.zeros(2), name="top")
    assert [p.name for p in gc.parameters(g)] == [
        "encoder/dense/w", "encoder/dense/b", "encoder/block/dense/w", "encoder/block/dense/b",
        "encoder/out/w", "encoder/out/b", "layer_norm/gamma", "layer_norm/beta", "top"]
    assert gc.parameters(g, trainable=False) == [] and top.trainable


def test_a_scope_that_would_duplicate_a_parameter_name_is_refused_naming_both_lines():
    with gc.Graph():
        x = gc.placeholder((None, 2), "float64", name="x")
        with gc.name_scope("encoder"):
            gc.nn.dense(x, 2, name="proj")
        with pytest.raises(gc.GraphError) as info, gc.name_scope("encoder"):
            gc.nn.dense(x, 2, name="proj")
    message = str(info.value)
    assert "'encoder/proj/w'" in message and message.count("test_layers.py:") == 2


@pytest.mark.parametrize("flag, error", [
    (1, gc.DTypeError), ("yes", gc.DTypeError), (("float32", ()), gc.DTypeError),
    (("bool", (1,)), gc.ShapeError)])
def test_a_training_flag_that_is_not_a_boolean_scalar_is_refused(flag, error):
    with gc.Graph():
        x = gc.placeholder((None, 2), "float64", name="x")
        if isinstance(flag, tuple):
            flag = gc.placeholder(flag[1], flag[0], name="training")
        with pytest.raises(error, match=r"batch_norm: training .*test_layers\.py:"):
            gc.nn.batch_norm(x, flag)


def test_layer_input_errors_name_the_problem():
    with gc.Graph():
        x = gc.placeholder((4, None), "float64", name="x")
        with pytest.raises(gc.ShapeError, match="static size"):
            gc.nn.dense(x, 3)
        with pytest.raises(gc.DTypeError, match="ids must be integers"):
            gc.nn.embedding(x, 10, 3)
        with pytest.raises(ValueError, match="unknown activation"):
            gc.nn.dense(gc.placeholder((2, 3), "float64"), 3, activation="swish")
        with pytest.raises(ValueError, match="unknown initializer"):
            gc.nn.dense(gc.placeholder((2, 3), "float64"), 3, init="glorot")
        with pytest.raises(ValueError, match="name scope"):
            gc.name_scope("a/b").__enter__()
