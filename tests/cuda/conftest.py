"""CUDA tests: they run where numba-cuda is installed, on a GPU or on its CPU simulator.

Command (docs/cuda.md): ``NUMBA_ENABLE_CUDASIM=1 pytest -n0 tests/cuda`` in an environment
with ``pip install -e '.[test,cuda]'``. Tests marked ``needs_numba_cuda`` skip, with the
reason, where the package is absent; the others (op table, error messages) run everywhere.

``GRAPHCOMP_REQUIRE_CUDA=1`` (set by .ci/run once the CUDA extra is installed) turns every
such skip into an error: there, a skipped CUDA test would hide a broken install.
"""

from __future__ import annotations

import os

import pytest

from graphcomp.backends.cuda import device


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if not device.numba_cuda_installed():
        reason = "numba-cuda is not installed (pip install 'graphcomp[cuda]')"
    elif not device.simulator_requested():
        from numba import cuda

        if not cuda.is_available():
            reason = "no GPU here and NUMBA_ENABLE_CUDASIM is not set (set it to 1 to simulate)"
    if reason is None:
        return
    marked = [item for item in items if item.get_closest_marker("needs_numba_cuda")]
    if marked and os.environ.get("GRAPHCOMP_REQUIRE_CUDA") == "1":
        raise pytest.UsageError(f"GRAPHCOMP_REQUIRE_CUDA=1, but the CUDA tests cannot run: "
                                f"{reason}")
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_numba_cuda: runs CUDA kernels (GPU or simulator)")
