"""gc.fit: batching, partial batches, shuffling, history, NaN handling and Ctrl-C."""

import io
import os
import signal
import sys

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.train.progress import PlainProgress


def linear_problem(n=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    Y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    return X, Y


def build_step(optimizer=None, backend="numpy"):
    x = gc.placeholder((None, 3), "float64", name="x")
    y = gc.placeholder((None,), "float64", name="y")
    w = gc.parameter(np.zeros(3), name="w")
    b = gc.parameter(np.zeros(()), name="b")
    error = x @ w + b - y
    loss = gc.mean(gc.square(error))
    mae = gc.mean(gc.abs(error))
    opt = optimizer or gc.optim.SGD(lr=0.05)
    step = gc.compile([x, y], [loss, mae], updates=opt.updates(loss, [w, b]), backend=backend)
    evaluate = gc.compile([x, y], [loss, mae], backend=backend)
    return step, evaluate, [w, b], opt


def test_partial_last_batch_and_example_weighted_means():
    X, Y = linear_problem(n=10)
    step = build_step()[0]
    sizes, losses = [], []

    def recording_step(xb, yb):
        sizes.append(len(xb))
        losses.append(float(step(xb, yb)[0]))
        return losses[-1]

    hist = gc.fit(recording_step, data=(X, Y), epochs=1, batch_size=4, shuffle=False,
                  progress=False)
    assert sizes == [4, 4, 2]
    expected = (4 * losses[0] + 4 * losses[1] + 2 * losses[2]) / 10
    assert hist.history["loss"] == [pytest.approx(expected, rel=1e-12)]
    assert hist.steps == 3 and hist.epochs == 1 and hist.stopped is None
    dropped = gc.fit(step, data=(X, Y), epochs=1, batch_size=4, drop_last=True, progress=False)
    assert dropped.steps == 2


def test_history_has_metrics_validation_and_times():
    X, Y = linear_problem(n=40)
    step, evaluate, _, _ = build_step()
    hist = gc.fit(step, data=(X, Y), epochs=3, batch_size=8, seed=0,
                  validation=(evaluate, (X[:10], Y[:10])), progress=False, names=["loss", "mae"])
    assert set(hist.history) == {"loss", "mae", "val_loss", "val_mae", "time", "step_time"}
    assert all(len(v) == 3 for v in hist.history.values())
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert all(t > 0 for t in hist.history["time"])
    loss_now, mae_now = evaluate(X[:10], Y[:10])
    assert hist.history["val_loss"][-1] == pytest.approx(float(loss_now))
    assert hist.history["val_mae"][-1] == pytest.approx(float(mae_now))


def test_default_names_come_from_outputs():
    X, Y = linear_problem(n=8)
    step, _, _, _ = build_step()
    hist = gc.fit(step, data=(X, Y), epochs=1, batch_size=4, progress=False)
    assert list(hist.history)[:2] == ["loss", "output1"]


def final_params(seed, shuffle=True):
    with gc.Graph():
        X, Y = linear_problem(n=30)
        step, _, params, _ = build_step()
        gc.fit(step, data=(X, Y), epochs=2, batch_size=7, shuffle=shuffle, seed=seed,
               progress=False)
        return [p.value for p in params]


def test_shuffling_is_reproducible():
    first, again, other = final_params(seed=3), final_params(seed=3), final_params(seed=4)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


def test_nonfinite_loss_names_the_step():
    X, Y = linear_problem(n=12)
    Y[9] = np.nan  # in the third batch of 4 when not shuffled
    step, _, _, _ = build_step()
    with pytest.raises(gc.NonFiniteError, match=r"is nan at step 3 \(epoch 1, batch 3 of 3\)"):
        gc.fit(step, data=(X, Y), epochs=2, batch_size=4, shuffle=False, progress=False)


def test_nonfinite_loss_can_stop_instead():
    X, Y = linear_problem(n=12)
    Y[9] = np.inf
    step, _, _, _ = build_step()
    hist = gc.fit(step, data=(X, Y), epochs=2, batch_size=4, shuffle=False, progress=False,
                  on_nonfinite="stop")
    assert hist.stopped == "nonfinite" and hist.steps == 3 and hist.epochs == 0


def test_ctrl_c_stops_after_the_step_in_progress():
    X, Y = linear_problem(n=40)
    with gc.Graph():
        step, _, params, _ = build_step(gc.optim.Adam(lr=0.1))
        calls = []

        def step_interrupted_during_call_3(xb, yb):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives while this step runs
            return step(xb, yb)

        handler_before = signal.getsignal(signal.SIGINT)
        hist = gc.fit(step_interrupted_during_call_3, data=(X, Y), epochs=5, batch_size=4,
                      shuffle=False, progress=False)
        interrupted = [p.value for p in params]
    assert hist.stopped == "interrupted" and hist.steps == 3
    assert signal.getsignal(signal.SIGINT) is handler_before
    with gc.Graph():
        step, _, params, _ = build_step(gc.optim.Adam(lr=0.1))
        for start in (0, 4, 8):
            step(X[start:start + 4], Y[start:start + 4])
        for got, want in zip(interrupted, params, strict=True):
            np.testing.assert_array_equal(got, want.value)


def test_bad_data_and_outputs_are_clear_errors():
    X, Y = linear_problem(n=8)
    step, _, _, _ = build_step()
    with pytest.raises(gc.InputError, match=r"same length .* \[8, 7\]"):
        gc.fit(step, data=(X, Y[:7]), progress=False)
    with pytest.raises(gc.InputError, match=r"takes 2 input\(s\) \['x', 'y'\], but 1"):
        gc.fit(step, data=(X,), progress=False)
    with pytest.raises(gc.InputError, match=r"output 0 \('loss'\) has shape \(4,\)"):
        gc.fit(lambda xb, yb: yb, data=(X, Y), batch_size=4, progress=False)
    with pytest.raises(ValueError, match="on_nonfinite"):
        gc.fit(step, data=(X, Y), on_nonfinite="ignore")


def test_plain_progress_writes_one_line_per_epoch():
    stream = io.StringIO()
    display = PlainProgress(epochs=2, stream=stream)
    for epoch in (1, 2):
        display.start_epoch(epoch, total=3)
        for _ in range(3):
            display.update(0.5)
        display.end_epoch({"loss": 0.25, "time": 0.5})
    lines = stream.getvalue().splitlines()
    assert lines == ["epoch 1/2 [########################] 3/3  loss 0.25  time 0.50s",
                     "epoch 2/2 [########################] 3/3  loss 0.25  time 0.50s"]


def test_progress_bar_goes_to_stderr(capsys):
    X, Y = linear_problem(n=8)
    step, _, _, _ = build_step()
    gc.fit(step, data=(X, Y), epochs=2, batch_size=4, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err


def test_plain_bar_when_tqdm_is_missing(monkeypatch):
    from graphcomp.train.progress import SilentProgress, TqdmProgress, make_progress

    assert isinstance(make_progress(True, 3), TqdmProgress)  # tqdm is a test dependency here
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes "from tqdm import tqdm" fail
    assert isinstance(make_progress(True, 3), PlainProgress)
    assert isinstance(make_progress(False, 3), SilentProgress)


def test_on_epoch_end_sees_each_epoch_and_its_metrics():
    X, Y = linear_problem(n=10)
    step, evaluate, _, _ = build_step()
    seen = []
    history = gc.fit(step, (X, Y), epochs=3, batch_size=4, progress=False,
                     validation=(evaluate, (X, Y)),
                     on_epoch_end=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert [m["loss"] for _, m in seen] == history.history["loss"]
    assert [m["val_loss"] for _, m in seen] == history.history["val_loss"]
