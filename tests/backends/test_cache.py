"""The on-disk kernel cache: atomic entries, cross-process hits, recovery from corruption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from graphcomp.backends.numba import cache

KERNEL = """\
import numpy as np
from numba import njit


@njit("float64(float64[::1])", cache=True)
def total(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * {scale}
    return acc
"""

# A child process: load the module, compile, record, call; report numba's cache statistics.
CHILD = """\
import json, os, sys
import numpy as np
from graphcomp.backends.numba import cache
module, path = cache.load_generated_module(os.environ["KERNEL_SOURCE"])
cache.record_compiled(path)
stats = module.total.stats
print(json.dumps({
    "value": float(module.total(np.arange(4.0))),
    "hits": sum(stats.cache_hits.values()),
    "misses": sum(stats.cache_misses.values()),
    "path": str(path),
}))
"""


def kernel(scale: float) -> str:
    return KERNEL.format(scale=repr(float(scale)))


def child_env(folder: Path, source: str) -> dict[str, str]:
    return {**os.environ, cache.ENV_VAR: str(folder), "KERNEL_SOURCE": source}


def run_child(folder: Path, source: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=child_env(folder, source),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def leftovers(folder: Path) -> list[Path]:
    """Temporary files (ours or numba's) anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "kernels"
    monkeypatch.setenv(cache.ENV_VAR, str(folder))
    return folder


def test_entry_is_written_and_imported_under_its_key(cache_folder: Path) -> None:
    source = "import sys\nREGISTERED_BEFORE_EXEC = __name__ in sys.modules\nVALUE = 41 + 1\n"
    module, path = cache.load_generated_module(source)
    key = cache.module_key(source)
    assert path == cache_folder.resolve() / f"gc_{key}.py"
    assert path.read_text().endswith(source)
    assert path.read_text().splitlines()[0].startswith("# graphcomp kernel module " + key)
    assert module.VALUE == 42 and module.REGISTERED_BEFORE_EXEC
    assert sys.modules[f"gc_{key}"] is module and module.__file__ == str(path)
    assert not list((cache_folder / "__pycache__").glob("*.pyc"))
    assert not leftovers(cache_folder)
    again, same_path = cache.load_generated_module(source)
    assert again is module and same_path == path


def test_key_covers_source_and_software_stack() -> None:
    import llvmlite.binding as llvm
    import numba

    key = cache.module_key("x = 1\n")
    assert len(key) == 64 and key == cache.module_key("x = 1\n")
    assert key != cache.module_key("x = 2\n")
    fingerprint = cache._environment_fingerprint()
    assert f"numba={numba.__version__}" in fingerprint
    assert f"numpy={np.__version__}" in fingerprint
    assert llvm.get_host_cpu_name() in fingerprint


def test_cache_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "mine"))
    assert cache.cache_dir() == (tmp_path / "mine").resolve()
    _, path = cache.load_generated_module("IN_CONFIGURED_DIR = True\n")
    assert path.parent == (tmp_path / "mine").resolve()
    monkeypatch.delenv(cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == (tmp_path / "xdg" / "graphcomp").resolve()
    assert (tmp_path / "xdg" / "graphcomp").is_dir()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_bad_entry_is_rewritten_never_executed(cache_folder: Path, damage: str) -> None:
    source = f"DAMAGE = {damage!r}\nVALUE = 7\n"
    _, path = cache.load_generated_module(source)
    good = path.read_bytes()
    marker = cache_folder / "foreign-code-ran"
    bad = {
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(200),
        "foreign": f"open({str(marker)!r}, 'w').close()\nVALUE = 666\n".encode(),
    }[damage]
    path.write_bytes(bad)
    del sys.modules[path.stem]
    module, again = cache.load_generated_module(source)
    assert again == path and path.read_bytes() == good
    assert module.VALUE == 7 and not marker.exists()
    assert not leftovers(cache_folder)


def test_second_process_loads_compiled_code_from_cache(tmp_path: Path) -> None:
    source = kernel(2.0)
    first = run_child(tmp_path, source)
    second = run_child(tmp_path, source)
    assert first["value"] == second["value"] == 12.0
    assert (first["hits"], first["misses"]) == (0, 1)
    assert (second["hits"], second["misses"]) == (1, 0)
    assert not leftovers(tmp_path)


def test_damaged_numba_artefacts_are_discarded_and_recompiled(tmp_path: Path) -> None:
    # Without the manifest check numba unpickles these and crashes (UnpicklingError/EOFError).
    source = kernel(3.0)
    first = run_child(tmp_path, source)
    assert first["misses"] == 1
    pycache = tmp_path / "__pycache__"
    damages = [
        ("nbi", lambda b: b[: len(b) // 3]),
        ("nbi", lambda b: os.urandom(len(b))),
        ("nbc", lambda b: b[: len(b) // 3]),
        ("nbc", lambda b: b""),
    ]
    for suffix, damage in damages:
        [artefact] = pycache.glob(f"*.{suffix}")
        artefact.write_bytes(damage(artefact.read_bytes()))
        recovered = run_child(tmp_path, source)
        assert (recovered["value"], recovered["hits"], recovered["misses"]) == (18.0, 0, 1)
    assert run_child(tmp_path, source)["hits"] == 1


def test_artefacts_without_manifest_are_not_trusted(tmp_path: Path) -> None:
    source = kernel(4.0)
    first = run_child(tmp_path, source)
    manifest = next((tmp_path / "__pycache__").glob("*.manifest.json"))
    recorded = json.loads(manifest.read_text())["files"]
    assert {Path(name).suffix for name in recorded} == {".nbi", ".nbc"}
    manifest.unlink()
    entry = Path(first["path"])
    assert cache.verify_artefacts(entry) is False
    assert not list((tmp_path / "__pycache__").glob(f"{entry.stem}.*"))
    assert run_child(tmp_path, source)["misses"] == 1


def test_two_processes_compiling_the_same_module_concurrently(tmp_path: Path) -> None:
    source = kernel(5.0)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD], env=child_env(tmp_path, source),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["value"] == 30.0
    assert len(list(tmp_path.glob("gc_*.py"))) == 1
    assert not leftovers(tmp_path)
    third = run_child(tmp_path, source)
    assert (third["hits"], third["misses"]) == (1, 0)


def test_cache_info_and_clear(cache_folder: Path) -> None:
    module, path = cache.load_generated_module(kernel(6.0))
    assert module.total(np.arange(3.0)) == 18.0
    assert cache.record_compiled(path)
    cache.load_generated_module("PLAIN = 1\n")
    foreign = cache_folder / "notes.txt"
    foreign.write_text("not ours")
    info = cache.cache_info()
    assert info["path"] == str(cache_folder.resolve()) and info["entries"] == 2
    ours = [p for p in cache_folder.rglob("*") if p.is_file() and p != foreign]
    assert info["bytes"] == sum(p.stat().st_size for p in ours) > 0
    removed = cache.clear_cache()
    assert removed == 2 + 3  # two entries, plus the kernel's .nbi, .nbc and manifest
    assert cache.cache_info()["entries"] == 0 and cache.cache_info()["bytes"] == 0
    assert foreign.read_text() == "not ours"


def test_unwritable_cache_folder_warns_once_and_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker / "cache"))
    monkeypatch.setattr(cache, "_warned", set())
    with pytest.warns(cache.CacheWarning, match="cannot write its kernel cache"):
        module, path = cache.load_generated_module("FALLBACK = 'works'\n")
    assert module.FALLBACK == "works" and path.is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other, _ = cache.load_generated_module("FALLBACK = 'still works'\n")
    assert other.FALLBACK == "still works"


def test_numba_refusing_to_cache_warns_once(cache_folder: Path) -> None:
    source = (
        "import ctypes\nfrom numba import njit\n"
        "labs = ctypes.CDLL(None).labs\nlabs.restype = ctypes.c_long\n"
        "labs.argtypes = [ctypes.c_long]\n\n\n"
        "@njit('int64(int64)', cache=True)\ndef magnitude(x):\n    return labs(x)\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's own NumbaWarning
        module, path = cache.load_generated_module(source)
    assert module.magnitude(-3) == 3
    with pytest.warns(cache.CacheWarning, match="did not cache magnitude"):
        assert cache.record_compiled(path) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        assert cache.record_compiled(path) is False


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(cache.os, "replace", refuse)
    with pytest.raises(OSError, match="simulated"):
        cache._write_atomically(tmp_path / "gc_entry.py", b"VALUE = 1\n")
    assert list(tmp_path.iterdir()) == []


def test_unrecorded_artefacts_are_dropped_and_recorded_ones_kept(tmp_path: Path) -> None:
    source = kernel(5.0)
    first = run_child(tmp_path, source)
    entry = Path(first["path"])
    stray = tmp_path / "__pycache__" / f"{entry.stem}.late-1.py311.nbi"
    stray.write_bytes(b"compiled after the manifest was written")
    assert cache.verify_artefacts(entry) is False
    assert not stray.exists()
    assert run_child(tmp_path, source)["hits"] == 1  # the recorded function still loads


STEP_CHILD = """\
import json
import numpy as np
import graphcomp as gc
rng = np.random.default_rng(0)
with gc.Graph():
    x = gc.placeholder((None, 5), "float32", name="x")
    w = gc.parameter(rng.standard_normal((5, 3)).astype("float32"), name="w")
    loss = gc.mean(gc.tanh(x @ w) ** 2)
    (g,) = gc.grad(loss, [w])
    f = gc.compile([x], loss, updates=[(w, w - 0.1 * g)], backend="numba", driver_jit=False)
value = float(f(np.ones((4, 5), np.float32)))
print(json.dumps({"hit": f.cache_hit, "value": value, "acc": "gemm_acc_f32(" in f.source}))
"""


def test_a_python_driver_step_with_blas_updates_is_cached_whole(tmp_path: Path) -> None:
    env = {**os.environ, cache.ENV_VAR: str(tmp_path)}

    def child() -> dict:
        done = subprocess.run([sys.executable, "-c", STEP_CHILD], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = child(), child()
    assert first["acc"] and not first["hit"]
    assert second["hit"] and second["value"] == first["value"]
