"""docs/numpy_coverage.md is what graphcomp.inspect.coverage writes from the code's tables."""

from __future__ import annotations

from pathlib import Path

from graphcomp.inspect.coverage import coverage_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "numpy_coverage.md"


def test_the_coverage_page_is_what_the_code_would_write():
    assert PAGE.read_text() == coverage_markdown(), (
        "docs/numpy_coverage.md is stale: run "
        "python -m graphcomp.inspect.coverage > docs/numpy_coverage.md")
