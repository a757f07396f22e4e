"""The one exception hierarchy of graphcomp.

Every error a user can cause is a ``GraphcompError``; each message says what was expected, what
was given and where (the node and the user's source line, or the placeholder).
"""

from __future__ import annotations


class GraphcompError(Exception):
    """Base class of every error graphcomp raises on purpose."""


class ShapeError(GraphcompError, ValueError):
    """Shapes that do not fit together (raised while the graph is built, or at call time)."""


class DTypeError(GraphcompError, TypeError):
    """An unsupported dtype, or dtypes an op cannot combine."""


class GraphError(GraphcompError, ValueError):
    """A graph that cannot be compiled: a cycle, a missing input, tensors of two graphs."""


class CompileError(GraphcompError, RuntimeError):
    """A backend could not compile a graph (an op without a kernel, say)."""


class InputError(GraphcompError, ValueError):
    """Bad arguments to a compiled function: missing, unknown, wrong shape or dtype."""


class RangeError(GraphcompError, ValueError):
    """An argument outside the values it may take: bernoulli's ``p`` outside [0, 1],
    randint's ``low >= high``."""


class NonFiniteError(GraphcompError, ValueError):
    """A value holds NaN or inf where finite values were required (``check_finite=True``)."""


class FileFormatError(GraphcompError, ValueError):
    """A file that is not what it should be: a truncated checkpoint, an IDX file with a bad
    header."""


class CacheError(GraphcompError, OSError):
    """The compiled-kernel cache cannot be used as asked: its path is a file, say."""


class CompileWarning(UserWarning):
    """A background compile failed or could not start; the function runs on the numpy backend
    (or compiled in this process) and the warning says why."""


class CacheWarning(UserWarning):
    """The compiled-kernel cache could not be read or written as usual; graphcomp carried on
    (compiling again, or caching in a private folder) and says what it did."""


class ForkedProcessError(GraphcompError, RuntimeError):
    """A compiled function that cannot run in this process because it was forked from one
    whose threads it needs (start worker processes with 'spawn' or 'forkserver')."""
