"""Shared test fixtures."""

import os

import pytest

import graphcomp as gc


@pytest.fixture(scope="session", autouse=True)
def _session_kernel_cache(tmp_path_factory):
    """One kernel cache folder per test session (unless GRAPHCOMP_CACHE_DIR is already set), so
    tests share compiled kernels with each other but never with the user's cache."""
    if os.environ.get("GRAPHCOMP_CACHE_DIR"):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHCOMP_CACHE_DIR", str(tmp_path_factory.mktemp("graphcomp-cache")))
        yield


@pytest.fixture(autouse=True)
def _fresh_default_graph():
    """Each test starts with an empty process-wide default graph."""
    gc.reset_default_graph()
    yield
