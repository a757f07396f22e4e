"""The graphcomp command line: a few runs as a separate process (python -m graphcomp), the rest
through ``cli.main`` in this process (same code, no interpreter start-up per case)."""

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import cli
from graphcomp.train import checkpoint
from graphcomp.train.examples import mlp

MODEL = textwrap.dedent('''
    import numpy as np
    import graphcomp as gc

    def model():
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.parameter(np.ones(3), name="w")
        return gc.mean(gc.square(x @ w)), [w]
''')


def run(*args):
    return subprocess.run([sys.executable, "-m", "graphcomp", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_console_script_is_declared():
    scripts = entry_points(group="console_scripts")
    assert any(ep.name == "graphcomp" and ep.value == "graphcomp.cli:run" for ep in scripts)


def test_train_prints_a_summary_and_writes_files(tmp_path):
    model, curve = tmp_path / "model.npz", tmp_path / "curve.png"
    done = run("train", "logreg-digits", "--epochs", "2", "--backend", "numpy", "--save",
               str(model), "--plot", str(curve))
    assert done.returncode == 0, done.stderr
    for words in ("test accuracy", "steps/s", "compile time", "interpreted", "wall time"):
        assert words in done.stdout
    assert "epoch 2/2" in done.stderr  # the progress bar
    accuracy = float(done.stdout.split("test accuracy")[1].split("%")[0])
    assert accuracy > 85.0
    values = checkpoint.read(model)
    assert set(values) == {"W1", "b1", "sgd.step", "W1/sgd.momentum", "b1/sgd.momentum"}
    assert values["W1"].shape == (64, 10) and int(values["sgd.step"]) == 2 * 43
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with gc.Graph():
        reloaded = mlp((64, 10))
        gc.load(model, reloaded.params, strict=False)
        np.testing.assert_array_equal(reloaded.params[0].value, values["W1"])


def test_errors_are_one_line_with_nonzero_status(tmp_path):
    unknown = run("train", "resnet-imagenet")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("graphcomp: error: unknown example 'resnet-imagenet'; "
                                     "choose one of: mlp-digits, logreg-digits, ")
    assert unknown.stderr.count("\n") == 1
    usage = run("frobnicate")
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\nraise ValueError('bad weights')\n")
    debug = run("inspect", str(broken), "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_bad_model_files(tmp_path, capsys):
    broken, empty = tmp_path / "broken.py", tmp_path / "empty.py"
    broken.write_text("import numpy as np\nraise ValueError('bad weights')\n")
    empty.write_text("x = 1\n")
    assert cli.main(["inspect", str(broken)]) == 1
    assert capsys.readouterr().err == (
        f"graphcomp: error: {broken} failed to run: ValueError: bad weights\n")
    assert cli.main(["inspect", str(empty)]) == 1
    assert "defines no function model()" in capsys.readouterr().err
    failing = tmp_path / "failing.py"
    failing.write_text("import graphcomp as gc\n\ndef model():\n    return gc.ones_like(3) @ 1\n")
    assert cli.main(["inspect", str(failing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"graphcomp: error: {failing}: model() failed: ") and err.count("\n") == 1
    assert cli.main(["inspect", str(tmp_path / "nope.py")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such model file" in err


def test_inspect_text_grad_and_dot(tmp_path, capsys):
    path = tmp_path / "quadratic.py"
    path.write_text(MODEL)
    assert cli.main(["inspect", str(path)]) == 0
    forward = capsys.readouterr().out
    assert 'parameter "w" : f64[3]' in forward and "adjoint" not in forward
    assert cli.main(["inspect", str(path), "--grad"]) == 0
    assert "adjoint of" in capsys.readouterr().out
    dot_file = tmp_path / "graph.dot"
    assert cli.main(["inspect", str(path), "--grad", "--format", "dot", "-o", str(dot_file)]) == 0
    assert dot_file.read_text().startswith("digraph")


def test_model_file_may_import_its_neighbours(tmp_path, capsys):
    (tmp_path / "layers.py").write_text("import graphcomp as gc\n\ndef square_loss(x):\n"
                                        "    return gc.mean(gc.square(x))\n")
    (tmp_path / "model_with_import.py").write_text(
        "import numpy as np\nimport graphcomp as gc\nfrom layers import square_loss\n\n"
        "def model():\n    return square_loss(gc.parameter(np.ones(2), name='v'))\n")
    assert cli.main(["inspect", str(tmp_path / "model_with_import.py"), "--grad"]) == 0
    assert 'parameter "v" : f64[2]' in capsys.readouterr().out
    assert str(tmp_path) not in sys.path


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "gc_0123.py").write_text("# graphcomp kernel module\n")
    monkeypatch.setenv("GRAPHCOMP_CACHE_DIR", str(folder))
    assert cli.main(["cache", "info"]) == 0
    info = capsys.readouterr().out
    assert str(folder) in info and "entries  1" in info
    assert cli.main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 file(s)")
    cli.main(["cache", "info"])
    assert "entries  0" in capsys.readouterr().out


def test_bad_options_are_refused(capsys):
    assert cli.main(["train", "mlp-digits", "--epochs", "0"]) == 1
    assert "--epochs must be at least 1" in capsys.readouterr().err


def test_train_refuses_unwritable_outputs_before_training(tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr("graphcomp.train.examples.run_example",
                        lambda *args, **kwargs: trained.append(args))
    missing = tmp_path / "missing" / "m.npz"
    assert cli.main(["train", "logreg-digits", "--save", str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"graphcomp: error: --save: cannot write checkpoint '{missing}': the folder "
        f"'{missing.parent}' does not exist\n")
    assert cli.main(["train", "logreg-digits", "--plot", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("graphcomp: error: --plot: cannot write plot ")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert cli.main(["train", "logreg-digits", "--plot", str(tmp_path / "c.png")]) == 1
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert trained == []
    assert not missing.parent.exists()


def test_inspect_reports_a_model_file_that_exits(tmp_path, capsys):
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    assert cli.main(["inspect", str(exits)]) == 1
    assert capsys.readouterr().err == (
        f"graphcomp: error: model file {exits} exited with status 3 while loading\n")
    in_model = tmp_path / "in_model.py"
    in_model.write_text("import sys\n\ndef model():\n    sys.exit('no data')\n")
    assert cli.main(["inspect", str(in_model)]) == 1
    assert capsys.readouterr().err == (
        f"graphcomp: error: model file {in_model} exited with status 1 (no data) in model()\n")
    done = run("inspect", str(exits))
    assert done.returncode == 1 and "exited with status 3" in done.stderr


@pytest.mark.parametrize(("backend_at_end", "interpreted_steps", "elsewhere", "says"), [
    ("numpy", 40, True, "all 40 steps ran on numpy, and the compile goes on"),
    ("numba", 12, True, "compiled in another process; the first 12 steps ran on numpy"),
    ("numba", 3, False, "loaded from the kernel cache in the background; the first 3 steps"),
    ("numba", 0, False, "backend numba, cache miss"),
])
def test_the_summary_says_how_many_steps_ran_before_the_switch(backend_at_end,
                                                                interpreted_steps, elsewhere,
                                                                says):
    from graphcomp.cli import format_summary
    from graphcomp.train.examples import ExampleResult
    from graphcomp.train.fit import History

    history = History(history={"step_time": [1e-4]}, epochs=1, steps=40)
    result = ExampleResult(
        name="mlp-digits", backend="numba", history=history,
        metrics={"test_loss": 0.1, "test_accuracy": 0.9}, headline="test accuracy  90.00%",
        compile_seconds=0.2, cache_hit=False, interpreted=False, wall_seconds=1.0, model=None,
        optimizer=None, interpreted_steps=interpreted_steps, backend_at_end=backend_at_end,
        compiled_elsewhere=elsewhere)
    assert says in format_summary(result)
