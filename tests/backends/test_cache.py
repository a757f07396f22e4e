"""The on-disk kernel cache: atomic entries, cross-process hits, recovery from corruption."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
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

# A child process: load the module, compile, record, call; report numba's cache statistics and
# graphcomp's CacheWarnings. READ_ONLY names a folder the writability probe calls read-only (the
# tests run as root, which permissions do not stop).
CHILD = """\
import json, os, sys, warnings
from pathlib import Path
import numpy as np
from graphcomp.backends.numba import cache
if os.environ.get("READ_ONLY"):
    frozen = Path(os.environ["READ_ONLY"]).resolve()
    cache._writable = lambda folder: not Path(folder).resolve().is_relative_to(frozen)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module, path = cache.load_generated_module(os.environ["KERNEL_SOURCE"])
    value = float(module.total(np.arange(4.0)))
    cache.record_compiled(path)
stats = module.total.stats
print(json.dumps({
    "value": value,
    "hits": sum(stats.cache_hits.values()),
    "misses": sum(stats.cache_misses.values()),
    "path": str(path),
    "warnings": [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)],
}))
"""


def kernel(scale: float, *, lazy: bool = False) -> str:
    source = KERNEL.format(scale=repr(float(scale)))
    return source.replace('"float64(float64[::1])", ', "") if lazy else source


def child_env(folder: Path, source: str, **extra: str) -> dict[str, str]:
    # A private temporary folder: where kernels go when the cache folder is read-only.
    private_tmp = folder.parent / f"{folder.name}-tmp"
    private_tmp.mkdir(exist_ok=True)
    return {**os.environ, cache.ENV_VAR: str(folder), "KERNEL_SOURCE": source,
            "TMPDIR": str(private_tmp), **extra}


def run_child(folder: Path, source: str, **extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=child_env(folder, source, **extra),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def leftovers(folder: Path) -> list[Path]:
    """Temporary files (ours or numba's) anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture(autouse=True)
def private_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-user folder for kernels a read-only cache cannot take, inside the test's folder."""
    root = tmp_path / "private-root"
    monkeypatch.setattr(cache, "_private_root", lambda: root)
    return root


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
    (cache_folder / f"{cache.WARM_PREFIX}0123").touch()  # a background compile's warm hint
    info = cache.cache_info()
    assert info["path"] == str(cache_folder.resolve()) and info["entries"] == 2
    ours = [p for p in cache_folder.rglob("*") if p.is_file() and p != foreign]
    assert info["bytes"] == sum(p.stat().st_size for p in ours) > 0
    removed = cache.clear_cache()
    assert removed == 2 + 3 + 1  # two entries, the kernel's .nbi, .nbc, manifest; the hint
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


# ---------------------------------------------------------------- damage and read-only caches


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def test_read_only_cache_serves_hits_and_keeps_new_kernels_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: a silent miss, and numba wrote into its user-wide folder (XDG_CACHE_HOME/numba).
    shared, xdg = tmp_path / "shared", tmp_path / "xdg"
    first = run_child(shared, kernel(7.0), XDG_CACHE_HOME=str(xdg))
    assert first["misses"] == 1
    before = snapshot(shared)
    read_only = {"READ_ONLY": str(shared), "XDG_CACHE_HOME": str(xdg)}

    hit = run_child(shared, kernel(7.0), **read_only)
    assert (hit["value"], hit["hits"], hit["misses"], hit["warnings"]) == (42.0, 1, 0, [])
    new = run_child(shared, kernel(8.0), **read_only)
    assert (new["value"], new["misses"]) == (48.0, 1)
    assert any("cannot write its kernel cache" in w for w in new["warnings"])
    private = Path(new["path"]).parent
    assert private.is_relative_to(tmp_path / "shared-tmp")
    assert {p.suffix for p in (private / "__pycache__").iterdir()} == {".nbi", ".nbc", ".json"}
    again = run_child(shared, kernel(8.0), **read_only)
    assert (again["hits"], again["misses"]) == (1, 0)

    assert snapshot(shared) == before
    assert not list(xdg.rglob("*"))
    monkeypatch.setenv(cache.ENV_VAR, str(shared))
    monkeypatch.setattr(cache, "_private_root", lambda: private.parent)
    cache.clear_cache()
    assert not list(private.rglob("gc_*"))


def test_numba_cache_dir_does_not_take_graphcomp_artefacts(tmp_path: Path) -> None:
    elsewhere = tmp_path / "numba-cache-dir"
    folder = tmp_path / "kernels"
    first = run_child(folder, kernel(11.0), NUMBA_CACHE_DIR=str(elsewhere))
    stem = Path(first["path"]).stem
    names = {p.name for p in (folder / "__pycache__").iterdir()}
    assert {Path(n).suffix for n in names} == {".nbi", ".nbc", ".json"}
    assert all(n.startswith(stem) for n in names)
    assert not elsewhere.exists() or not list(elsewhere.rglob("*"))
    second = run_child(folder, kernel(11.0), NUMBA_CACHE_DIR=str(elsewhere))
    assert (second["hits"], second["misses"]) == (1, 0)


def test_pycache_that_is_a_file_is_moved_aside(tmp_path: Path) -> None:
    # Before: NotADirectoryError from verify_artefacts, on every run.
    source = kernel(9.0)
    run_child(tmp_path, source)
    pycache = tmp_path / "__pycache__"
    shutil.rmtree(pycache)
    pycache.write_text("in the way")
    healed = run_child(tmp_path, source)
    assert (healed["value"], healed["misses"]) == (54.0, 1)
    assert any("moved it to" in w for w in healed["warnings"])
    [aside] = tmp_path.glob("__pycache__.quarantined-*")
    assert aside.read_text() == "in the way" and pycache.is_dir()
    assert run_child(tmp_path, source)["hits"] == 1


def test_manifest_that_is_a_folder_is_replaced(tmp_path: Path) -> None:
    # Before: IsADirectoryError, on every run.
    source = kernel(12.0)
    run_child(tmp_path, source)
    [manifest] = (tmp_path / "__pycache__").glob("*.manifest.json")
    manifest.unlink()
    manifest.mkdir()
    (manifest / "stray").write_text("")
    healed = run_child(tmp_path, source)
    assert (healed["value"], healed["misses"]) == (72.0, 1)
    assert manifest.is_file()
    assert run_child(tmp_path, source)["hits"] == 1


@pytest.mark.parametrize(("lazy", "suffix"), [(False, "nbc"), (True, "nbc"), (True, "nbi")])
def test_recorded_but_corrupt_artefacts_are_compiled_again(
    tmp_path: Path, lazy: bool, suffix: str
) -> None:
    # Before: UnpicklingError on every run, since the manifest vouches for the damaged file.
    source = kernel(13.0, lazy=lazy)
    first = run_child(tmp_path, source)
    [artefact] = (tmp_path / "__pycache__").glob(f"*.{suffix}")
    artefact.write_bytes(artefact.read_bytes()[: artefact.stat().st_size // 2])
    cache.record_compiled(Path(first["path"]))
    assert cache.verify_artefacts(Path(first["path"])) is True
    healed = run_child(tmp_path, source)
    assert (healed["value"], healed["hits"], healed["misses"]) == (78.0, 0, 1)
    assert any("could not use numba's cached code" in w for w in healed["warnings"])
    assert run_child(tmp_path, source)["hits"] == 1


def test_numba_failing_to_write_is_a_warning(
    cache_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the OSError of numba's write reached the caller of the kernel.
    monkeypatch.setattr(cache, "_warned", set())
    module, _ = cache.load_generated_module(kernel(14.0, lazy=True))
    real_replace = os.replace

    def refuse(src: object, dst: object) -> None:
        if ".nbi" in str(dst) or ".nbc" in str(dst):
            raise OSError(28, "No space left on device (simulated)")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.warns(cache.CacheWarning, match="could not cache numba's compiled code of total"):
        assert module.total(np.arange(4.0)) == 84.0


def test_entry_that_is_a_folder_is_rewritten(cache_folder: Path) -> None:
    # Before: the entry went to a temporary folder, with a warning, on every run.
    source = "ENTRY_WAS_A_FOLDER = 1\n"
    cache_folder.mkdir()
    path = cache_folder.resolve() / f"gc_{cache.module_key(source)}.py"
    path.mkdir()
    (path / "stray").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        module, placed = cache.load_generated_module(source)
    assert placed == path and path.is_file() and module.ENTRY_WAS_A_FOLDER == 1


def test_private_folder_of_someone_else_is_not_used(
    cache_folder: Path, monkeypatch: pytest.MonkeyPatch, private_root: Path
) -> None:
    # numba unpickles what it finds there: a folder others can write must not be trusted.
    private_root.mkdir(mode=0o777)
    private_root.chmod(0o777)
    monkeypatch.setattr(
        cache, "_writable", lambda folder: not Path(folder).is_relative_to(cache_folder)
    )
    monkeypatch.setattr(cache, "_warned", set())
    with pytest.warns(cache.CacheWarning, match="for this process only"):
        _, path = cache.load_generated_module("NOT_IN_A_SHARED_FOLDER = 1\n")
    assert not path.is_relative_to(private_root)
    assert not list(private_root.iterdir())


@pytest.mark.parametrize("action", ["info", "clear"])
def test_cli_cache_on_a_file_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    action: str,
) -> None:
    from graphcomp import cli

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("user data")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker))
    assert cli.main(["cache", action]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"graphcomp: error: the kernel cache path {blocker} is not a folder")
    assert blocker.read_text() == "user data"


@pytest.mark.parametrize("driver_jit", [True, False])
def test_programs_that_differ_only_in_input_types_get_their_own_modules(driver_jit):
    # A bool and an int32 input cast to int64 alike once rendered the same module text: the
    # second compile found the first's driver, compiled for the other types and closed to
    # new ones ("compilation disabled").
    sources = []
    for dtype in ("bool", "int32"):
        with gc.Graph():
            t = gc.placeholder((None, 3), dtype, name="t")
            f = gc.compile([t], gc.sum(gc.cast(t, "int64"), axis=1), backend="numba",
                           driver_jit=driver_jit)
        np.testing.assert_array_equal(f(np.ones((2, 3), dtype=dtype)), [3, 3])
        sources.append(f.source)
    assert sources[0] != sources[1]
