"""``python -m graphcomp``: the same as the ``graphcomp`` command."""

from graphcomp.cli import run

run()
