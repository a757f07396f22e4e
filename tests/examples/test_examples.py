"""The scripts in examples/ run, at reduced size, on the numpy backend."""

import importlib.util
import subprocess
import sys
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_logreg_digits(capsys):
    accuracy = load("logreg_digits").main(["--epochs", "2", "--backend", "numpy",
                                           "--no-progress"])
    assert accuracy > 0.85
    assert "held-out accuracy" in capsys.readouterr().out


def test_mlp_digits_with_plot_and_checkpoint(tmp_path, capsys):
    curve, model = tmp_path / "curve.png", tmp_path / "mlp.npz"
    accuracy = load("mlp_digits").main(["--epochs", "2", "--backend", "numpy", "--no-progress",
                                        "--plot", str(curve), "--save", str(model)])
    assert accuracy > 0.85
    assert curve.stat().st_size > 1000 and model.stat().st_size > 1000
    assert "held-out accuracy" in capsys.readouterr().out


def test_inspect_adjoint(tmp_path, capsys):
    load("inspect_adjoint").main(["--out-dir", str(tmp_path), "--backend", "numpy"])
    out = capsys.readouterr().out
    assert "# adjoint of" in out and 'parameter "W1" : f32[4,8]' in out
    assert "gradient norms: W1" in out
    assert (tmp_path / "mlp_adjoint.dot").read_text().startswith("digraph")


def test_an_example_runs_as_a_script(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES_DIR / "inspect_adjoint.py"), "--backend",
                           "numpy", "--out-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "gradient norms" in done.stdout
