"""gc.save / gc.load at the edges: unwritable targets, interrupted saves, malformed files."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.train import checkpoint

# A real save in a child process that stops half-way through writing its temp file.
PAUSED_SAVE = textwrap.dedent('''
    import io, sys, time
    import numpy as np
    import graphcomp as gc
    from graphcomp.train import checkpoint

    real_write = checkpoint._write_npz

    def write_half_then_wait(file, arrays):
        buffer = io.BytesIO()
        real_write(buffer, arrays)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        print("writing", flush=True)
        time.sleep(120)

    checkpoint._write_npz = write_half_then_wait
    with gc.Graph():
        gc.save(sys.argv[1], [gc.parameter(np.full(1000, 7.0), name="W")])
''')


def save_value(path, value):
    with gc.Graph():
        gc.save(path, [gc.parameter(np.full(1000, value), name="W")])


def temp_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


def test_save_into_a_missing_folder_or_onto_a_folder_is_refused_up_front(tmp_path):
    with gc.Graph():
        W = gc.parameter(np.ones(3), name="W")
        with pytest.raises(gc.FileFormatError, match=r"the folder '.*missing' does not exist"):
            gc.save(tmp_path / "missing" / "m.npz", [W])
        (tmp_path / "plain").write_text("a file")
        with pytest.raises(gc.FileFormatError, match=r"the folder '.*plain' is not a folder"):
            gc.save(tmp_path / "plain" / "m.npz", [W])
        (tmp_path / "m.npz").mkdir()
        with pytest.raises(gc.FileFormatError, match=r"cannot write checkpoint '.*m.npz': it is a"):
            gc.save(tmp_path / "m.npz", [W])
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "plain"]
    assert os.listdir(tmp_path / "m.npz") == []


def test_a_save_killed_midway_leaves_an_orphan_that_the_next_save_removes(tmp_path):
    path = tmp_path / "model.npz"
    save_value(path, 1.0)
    child = subprocess.Popen([sys.executable, "-c", PAUSED_SAVE, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        [live] = temp_files(tmp_path)
        save_value(path, 2.0)  # a save beside a running one leaves the running one's file alone
        assert temp_files(tmp_path) == [live]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert temp_files(tmp_path) == [live]  # the orphan, half an archive
    np.testing.assert_array_equal(checkpoint.read(path)["W"], 2.0)
    save_value(path, 3.0)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    np.testing.assert_array_equal(checkpoint.read(path)["W"], 3.0)


def test_only_temp_files_of_the_same_target_are_swept(tmp_path):
    names = [".model.npz.0123456789abcdef.tmp", ".model.npz.backup.tmp", "model.npz.tmp",
             ".other.npz.0123456789abcdef.tmp", ".model.npz.0123456789abcdef.tmp.keep"]
    for name in names:
        (tmp_path / name).write_bytes(b"PK\x03\x04 left over")
    save_value(tmp_path / "model.npz", 1.0)
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:] + ["model.npz"])


def write_npz(path, **entries):
    with open(path, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(f, **entries)


@pytest.mark.parametrize("entries, message", [
    ({"format_version": np.array([1, 1]), "names": np.array(["W"]), "value_0": np.ones(3)},
     r"malformed format_version \(int64 array of shape \(2,\); expected an integer scalar\)"),
    ({"format_version": np.array(1.0), "names": np.array(["W"]), "value_0": np.ones(3)},
     r"malformed format_version \(float64 array of shape \(\)"),
    ({"format_version": np.array("1"), "names": np.array(["W"]), "value_0": np.ones(3)},
     "malformed format_version"),
    ({"format_version": np.array(1), "names": np.array([["W"]]), "value_0": np.ones(3)},
     r"malformed names \(<U1 array of shape \(1, 1\); expected a 1-d array of strings\)"),
    ({"format_version": np.array(1), "names": np.array([7]), "value_0": np.ones(3)},
     "malformed names"),
    ({"format_version": np.array(1), "names": np.array(["W", "W"]), "value_0": np.ones(3),
      "value_1": np.zeros(3)}, r"holds the name\(s\) \['W'\] more than once"),
    ({"format_version": np.array(1), "names": np.array(["W", "b"]), "value_0": np.ones(3)},
     "malformed: no entry 'value_1' for 'b'"),
    ({"format_version": np.array(1), "names": np.array(["W"]), "value_0": np.ones(3),
      "value_1": np.zeros(3)}, r"malformed: entries \['value_1'\] that no name refers to"),
    ({"format_version": np.array(1), "names": np.array(["W"], dtype=object),
      "value_0": np.ones(3)}, "entry 'names' holds Python objects"),
])
def test_malformed_checkpoints_are_refused_before_anything_changes(tmp_path, entries, message):
    path = tmp_path / "bad.npz"
    write_npz(path, **entries)
    with gc.Graph():
        W = gc.parameter(np.full(3, 5.0), name="W")
        with pytest.raises(gc.FileFormatError, match=message):
            gc.load(path, [W], strict=False)
        np.testing.assert_array_equal(W.value, 5.0)


@pytest.mark.parametrize("content, message", [
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
     r"is not a graphcomp checkpoint: not an .npz archive \(it starts b'"),
    (b"\x80\x04\x95 a pickle", "is not a graphcomp checkpoint"),
    (b"", "is empty"),
])
def test_foreign_bytes_are_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(gc.FileFormatError, match=message) as raised:
        checkpoint.read(path)
    assert "pickle" not in str(raised.value)


def test_npy_files_and_folders_are_not_checkpoints(tmp_path):
    with open(tmp_path / "single.npz", "wb") as f:
        np.save(f, np.ones(3))
    with pytest.raises(gc.FileFormatError, match=r"not an .npz archive \(a single .npy array\)"):
        checkpoint.read(tmp_path / "single.npz")
    with pytest.raises(gc.FileFormatError, match="is a folder, not a file"):
        checkpoint.read(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_save_into_a_read_only_folder_is_refused_up_front(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with gc.Graph(), pytest.raises(gc.FileFormatError, match="no permission to create files"):
            gc.save(folder / "m.npz", [gc.parameter(np.ones(2), name="W")])
    finally:
        folder.chmod(0o755)


def test_run_example_refuses_an_unwritable_save_path_before_training(tmp_path, monkeypatch):
    from graphcomp.train.examples import classifiers, run_example

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the save path")

    monkeypatch.setattr(classifiers, "fit", no_training)
    missing = tmp_path / "missing" / "m.npz"
    with pytest.raises(gc.FileFormatError, match="does not exist"):
        run_example("logreg-digits", epochs=1, backend="numpy", progress=False,
                    save=str(missing))
    assert not missing.parent.exists()
