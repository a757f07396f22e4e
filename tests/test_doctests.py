"""The examples in graphcomp's docstrings run and print what they show (doctest, per module)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import graphcomp

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = ["graphcomp"]
    for info in pkgutil.walk_packages(graphcomp.__path__, "graphcomp."):
        if not info.name.endswith("__main__"):  # importing it would run the command line
            names.append(info.name)
    return names


def _with_examples(names: list[str]) -> list[str]:
    """Modules whose docstrings hold at least one example; a module that cannot even be
    imported is kept, so that its test fails loudly instead of vanishing."""
    finder = doctest.DocTestFinder()
    kept = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:
            kept.append(name)
            continue
        if any(test.examples for test in finder.find(module)):
            kept.append(name)
    return kept


MODULES = _with_examples(_module_names())


def test_docstring_examples_exist():
    assert {"graphcomp", "graphcomp.ops.functions", "graphcomp.runtime.function"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str, tmp_path, monkeypatch):
    # Examples that touch the kernel cache get a folder of their own.
    monkeypatch.setenv("GRAPHCOMP_CACHE_DIR", str(tmp_path))
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, report=True, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
