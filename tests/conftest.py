"""Shared test fixtures."""

import pytest

import graphcomp as gc


@pytest.fixture(autouse=True)
def _fresh_default_graph():
    """Each test starts with an empty process-wide default graph."""
    gc.reset_default_graph()
    yield
