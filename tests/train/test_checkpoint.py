"""gc.save / gc.load: round trips, resumed training, damaged files and mismatches."""

import os

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.train import checkpoint


def build(seed=0):
    x = gc.placeholder((None, 4), "float64", name="x")
    y = gc.placeholder((None,), "int64", name="y")
    W = gc.parameter(gc.init.glorot_uniform((4, 3), seed, "float64"), name="W")
    b = gc.parameter(gc.init.zeros((3,), "float64"), name="b")
    loss = gc.mean(gc.softmax_cross_entropy(x @ W + b, y))
    opt = gc.optim.Adam(lr=gc.optim.CosineDecay(0.05, total_steps=20))
    step = gc.compile([x, y], loss, updates=opt.updates(loss, [W, b]), backend="numpy")
    return step, [W, b], opt


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20, 4)), rng.integers(0, 3, 20)


def train(step, epochs):
    gc.fit(step, data=data(), epochs=epochs, batch_size=6, shuffle=False, progress=False)


def test_round_trip_restores_values_and_optimizer_state(tmp_path):
    path = tmp_path / "model.npz"
    with gc.Graph():
        step, params, opt = build()
        train(step, 1)
        gc.save(path, params + opt.state)
        saved = {p.name: p.value for p in params + opt.state}
    with gc.Graph():
        _, params2, opt2 = build(seed=1)
        gc.load(path, params2 + opt2.state)
        for p in params2 + opt2.state:
            np.testing.assert_array_equal(p.value, saved[p.name])
            assert p.value.dtype == saved[p.name].dtype
    assert int(saved["adam.step"]) == 4
    assert set(checkpoint.read(path)) == set(saved)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    path = tmp_path / "half.npz"
    with gc.Graph():
        step, params, _ = build()
        train(step, 4)
        uninterrupted = [p.value for p in params]
    with gc.Graph():
        step, params, opt = build()
        train(step, 2)
        gc.save(path, params + opt.state)
    with gc.Graph():
        step, params, opt = build(seed=5)
        gc.load(path, params + opt.state)
        train(step, 2)
        for got, want in zip(params, uninterrupted, strict=True):
            np.testing.assert_array_equal(got.value, want)


def test_damaged_files_give_a_clear_error(tmp_path):
    with gc.Graph():
        _, params, opt = build()
        good = tmp_path / "good.npz"
        gc.save(good, params + opt.state)
        raw = good.read_bytes()
        cases = {"truncated.npz": raw[: len(raw) // 2], "empty.npz": b""}
        for name, content in cases.items():
            (tmp_path / name).write_bytes(content)
            with pytest.raises(gc.FileFormatError, match="damaged or truncated"):
                gc.load(tmp_path / name, params + opt.state)
        (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
        with pytest.raises(gc.FileFormatError, match="not a graphcomp checkpoint"):
            gc.load(tmp_path / "garbage.npz", params + opt.state)
        np.savez(tmp_path / "other.npz", a=np.ones(2))
        with pytest.raises(gc.FileFormatError, match="not a graphcomp checkpoint"):
            gc.load(tmp_path / "other.npz", params)
        np.savez(tmp_path / "future.npz", format_version=np.array(99), names=np.array(["W"]),
                 value_0=np.ones((4, 3)))
        with pytest.raises(gc.FileFormatError, match="format version 99"):
            gc.load(tmp_path / "future.npz", params)
        np.savez(tmp_path / "pickled.npz", format_version=np.array(1), names=np.array(["W"]),
                 value_0=np.array([{"x": 1}], dtype=object))
        with pytest.raises(gc.FileFormatError, match="'value_0' holds Python objects"):
            gc.load(tmp_path / "pickled.npz", params[:1])
        with pytest.raises(gc.FileFormatError, match="does not exist"):
            gc.load(tmp_path / "missing.npz", params)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    with gc.Graph():
        step, params, opt = build()
        gc.save(path, params + opt.state)
        before = path.read_bytes()
        train(step, 1)

        def crash_midway(file, arrays):
            file.write(b"PK\x03\x04 half a zip")
            raise OSError("disk full")

        monkeypatch.setattr(checkpoint, "_write_npz", crash_midway)
        with pytest.raises(gc.FileFormatError, match=r"\(disk full\); the existing file is un"):
            gc.save(path, params + opt.state)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_mismatches_are_refused_before_anything_changes(tmp_path):
    path = tmp_path / "model.npz"
    with gc.Graph():
        _, params, _ = build()
        gc.save(path, params)
    with gc.Graph():
        W = gc.parameter(np.zeros((4, 3)), name="W")
        b_wrong_shape = gc.parameter(np.zeros(5), name="b")
        with pytest.raises(gc.ShapeError, match=r"'b' has shape \(3,\) in the file but \(5,\)"):
            gc.load(path, [W, b_wrong_shape])
        np.testing.assert_array_equal(W.value, 0.0)  # nothing assigned
    with gc.Graph():
        W = gc.parameter(np.zeros((4, 3), dtype=np.float32), name="W")
        with pytest.raises(gc.DTypeError, match="float64 in the file but float32"):
            gc.load(path, [W], strict=False)
    with gc.Graph():
        W = gc.parameter(np.zeros((4, 3)), name="W")
        with pytest.raises(gc.GraphError, match=r"holds value\(s\) \['b'\] that none"):
            gc.load(path, [W])
        gc.load(path, [W], strict=False)
        assert not np.all(W.value == 0.0)
        c = gc.parameter(np.zeros(3), name="c")
        with pytest.raises(gc.GraphError, match=r"no value for parameter\(s\) \['c'\]"):
            gc.load(path, [W, c], strict=False)


def test_names_must_exist_and_be_unique(tmp_path):
    with gc.Graph():
        unnamed = gc.parameter(np.zeros(2))
        with pytest.raises(gc.GraphError, match="has no name"):
            gc.save(tmp_path / "x.npz", [unnamed])
        a, a2 = gc.parameter(np.zeros(2), name="a"), gc.parameter(np.ones(2), name="a")
        with pytest.raises(gc.GraphError, match=r"share the name\(s\) \['a'\]"):
            gc.save(tmp_path / "x.npz", [a, a2])
    assert not (tmp_path / "x.npz").exists()
