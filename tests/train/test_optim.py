"""Each optimizer's compiled update against a numpy reference, 5 steps, float64, rtol 1e-10.

Gradients are fed through placeholders, so these tests check the update math alone; one test at
the end takes gradients with gc.grad to check the whole step.
"""

import math

import numpy as np
import pytest

import graphcomp as gc

SHAPES = {"W": (3, 4), "b": (4,)}
STEPS = 5


def reference_sgd(p, g, state, t, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    g = g + weight_decay * p
    if momentum:
        state["v"] = momentum * state.get("v", np.zeros_like(p)) + g
        g = g + momentum * state["v"] if nesterov else state["v"]
    return p - lr * g


def reference_adam(p, g, state, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    state["m"] = beta1 * state.get("m", np.zeros_like(p)) + (1 - beta1) * g
    state["v"] = beta2 * state.get("v", np.zeros_like(p)) + (1 - beta2) * g * g
    m_hat = state["m"] / (1 - beta1**t)
    v_hat = state["v"] / (1 - beta2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def reference_rmsprop(p, g, state, t, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    g = g + weight_decay * p
    state["sq"] = alpha * state.get("sq", np.zeros_like(p)) + (1 - alpha) * g * g
    direction = g / (np.sqrt(state["sq"]) + eps)
    if momentum:
        state["buf"] = momentum * state.get("buf", np.zeros_like(p)) + direction
        direction = state["buf"]
    return p - lr * direction


CASES = [
    ("sgd", lambda: gc.optim.SGD(lr=0.1), reference_sgd, {"lr": 0.1}),
    ("sgd-momentum", lambda: gc.optim.SGD(lr=0.05, momentum=0.9), reference_sgd,
     {"lr": 0.05, "momentum": 0.9}),
    ("sgd-nesterov-wd", lambda: gc.optim.SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
     reference_sgd, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("adam", lambda: gc.optim.Adam(lr=0.01), reference_adam, {"lr": 0.01}),
    ("adam-l2", lambda: gc.optim.Adam(lr=0.01, beta1=0.8, beta2=0.9, weight_decay=0.1),
     reference_adam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "weight_decay": 0.1}),
    ("adamw", lambda: gc.optim.AdamW(lr=0.01, weight_decay=0.05), reference_adam,
     {"lr": 0.01, "weight_decay": 0.05, "decoupled": True}),
    ("rmsprop", lambda: gc.optim.RMSProp(lr=0.01), reference_rmsprop, {"lr": 0.01}),
    ("rmsprop-momentum-wd", lambda: gc.optim.RMSProp(0.01, alpha=0.9, momentum=0.5,
                                                     weight_decay=0.02),
     reference_rmsprop, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "weight_decay": 0.02}),
]


def run_compiled(make_opt, grads_per_step, backend="numpy"):
    rng = np.random.default_rng(1)
    initial = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    with gc.Graph():
        params = [gc.parameter(initial[name], name=name) for name in SHAPES]
        grads = [gc.placeholder(s, "float64", name=f"g_{name}") for name, s in SHAPES.items()]
        opt = make_opt()
        step = gc.compile(grads, [], updates=opt.apply_gradients(params, grads), backend=backend)
    for grad_values in grads_per_step:
        step(*grad_values)
    return initial, {p.name: p.value for p in params}, opt


def random_grads(seed=2):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape) for shape in SHAPES.values()] for _ in range(STEPS)]


@pytest.mark.parametrize("label, make_opt, reference, options", CASES, ids=[c[0] for c in CASES])
def test_update_matches_numpy_reference(label, make_opt, reference, options):
    grads_per_step = random_grads()
    initial, final, opt = run_compiled(make_opt, grads_per_step)
    for i, name in enumerate(SHAPES):
        p, state = initial[name].copy(), {}
        for t, grad_values in enumerate(grads_per_step, start=1):
            p = reference(p, grad_values[i], state, t, **options)
        np.testing.assert_allclose(final[name], p, rtol=1e-10, atol=0)
    step_count = next(s for s in opt.state if s.name.endswith(".step"))
    assert int(step_count.value) == STEPS


def test_state_names_follow_parameter_names():
    _, _, opt = run_compiled(lambda: gc.optim.Adam(lr=0.01), random_grads()[:1])
    assert [s.name for s in opt.state] == ["adam.step", "W/adam.m", "W/adam.v", "b/adam.m",
                                           "b/adam.v"]
    _, _, sgd = run_compiled(lambda: gc.optim.SGD(lr=0.1), random_grads()[:1])
    assert [s.name for s in sgd.state] == ["sgd.step"]


def test_schedules_in_graph_match_python_values():
    grads_per_step = random_grads()
    for schedule in (gc.optim.StepDecay(0.1, step_size=2, gamma=0.5),
                     gc.optim.CosineDecay(0.1, total_steps=4, lr_min=0.01)):
        initial, final, _ = run_compiled(lambda s=schedule: gc.optim.SGD(lr=s), grads_per_step)
        p = initial["W"].copy()
        for t, grad_values in enumerate(grads_per_step):
            p = p - schedule.value(t) * grad_values[0]
        np.testing.assert_allclose(final["W"], p, rtol=1e-10, atol=0)


def test_schedule_values():
    step = gc.optim.StepDecay(1.0, step_size=3, gamma=0.1)
    assert [step.value(t) for t in (0, 2, 3, 6)] == [1.0, 1.0, 0.1, pytest.approx(0.01)]
    cosine = gc.optim.CosineDecay(2.0, total_steps=10, lr_min=1.0)
    assert cosine.value(0) == 2.0 and cosine.value(10) == 1.0 and cosine.value(99) == 1.0
    assert cosine.value(5) == pytest.approx(1.5)
    assert math.isclose(gc.optim.Adam(lr=cosine).learning_rate(10), 1.0)


def test_learning_rate_placeholder():
    grads_per_step = random_grads()
    with gc.Graph():
        w = gc.parameter(np.ones(SHAPES["b"]), name="w")
        g = gc.placeholder(SHAPES["b"], "float64", name="g")
        lr = gc.placeholder((), "float64", name="lr")
        step = gc.compile([g, lr], [], updates=gc.optim.SGD(lr=lr).apply_gradients([w], [g]),
                          backend="numpy")
    expected = np.ones(SHAPES["b"])
    for t, grad_values in enumerate(grads_per_step):
        step(grad_values[1], 0.1 / (t + 1))
        expected = expected - 0.1 / (t + 1) * grad_values[1]
    np.testing.assert_allclose(w.value, expected, rtol=1e-10, atol=0)


def test_float32_parameters_keep_their_dtype():
    with gc.Graph():
        w = gc.parameter(np.ones(3, dtype=np.float32), name="w")
        loss = gc.sum(w * w)
        opt = gc.optim.Adam(lr=gc.optim.CosineDecay(0.1, 10))
        step = gc.compile([], loss, updates=opt.updates(loss, [w]), backend="numpy")
    step()
    assert w.value.dtype == np.float32 and np.all(w.value < 1.0)


def test_updates_twice_and_name_clash_are_clear_errors():
    with gc.Graph():
        w = gc.parameter(np.ones(2), name="w")
        loss = gc.sum(w * w)
        opt = gc.optim.SGD(lr=0.1, momentum=0.9)
        opt.updates(loss, [w])
        with pytest.raises(gc.GraphError, match="already called"):
            opt.updates(loss, [w])
        with pytest.raises(gc.GraphError, match=r"already has a parameter named 'sgd\.step'"):
            gc.optim.SGD(lr=0.1).updates(loss, [w])
        gc.optim.SGD(lr=0.1, name="sgd2").updates(loss, [w])
        with pytest.raises(gc.GraphError, match="can only update parameters"):
            gc.optim.SGD(lr=0.1, name="sgd3").updates(loss, [loss])


def test_updates_with_grad_matches_reference_on_a_quadratic():
    # loss = sum((A w - y)^2) / 2 has gradient A^T (A w - y)
    rng = np.random.default_rng(0)
    A, y, w0 = rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal(3)
    with gc.Graph():
        w = gc.parameter(w0, name="w")
        loss = 0.5 * gc.sum(gc.square(gc.constant(A) @ w - gc.constant(y)))
        opt = gc.optim.Adam(lr=0.05)
        step = gc.compile([], loss, updates=opt.updates(loss, [w]), backend="numpy")
    p, state = w0.copy(), {}
    for t in range(1, STEPS + 1):
        step()
        p = reference_adam(p, A.T @ (A @ p - y), state, t, lr=0.05)
    np.testing.assert_allclose(w.value, p, rtol=1e-10, atol=0)


def test_default_backend_runs_the_compiled_update():
    # End to end on gc.compile's default backend (Numba once it is the default): the same
    # Adam step on a tiny least-squares problem as the numpy reference.
    rng = np.random.default_rng(0)
    A, y, w0 = rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal(3)
    with gc.Graph():
        w = gc.parameter(w0, name="w")
        a = gc.placeholder((None, 3), "float64", name="a")
        target = gc.placeholder((None,), "float64", name="target")
        loss = 0.5 * gc.sum(gc.square(a @ w - target))
        opt = gc.optim.Adam(lr=gc.optim.StepDecay(0.05, step_size=2, gamma=0.5))
        step = gc.compile([a, target], loss, updates=opt.updates(loss, [w]))
    p, state = w0.copy(), {}
    for t in range(1, STEPS + 1):
        step(A, y)
        lr = opt.learning_rate(t - 1)
        p = reference_adam(p, A.T @ (A @ p - y), state, t, lr=lr)
    np.testing.assert_allclose(w.value, p, rtol=1e-10, atol=0)
