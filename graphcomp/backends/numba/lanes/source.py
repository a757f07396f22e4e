"""The lanes' text in the kernel cache: a copy of ``code.py``, compiled there with ``cache=True``.

numba keys a cached function by its file's text; a function that calls into another file keeps
running that file's old code after it changes. So nothing imports ``code.py`` itself: the
lanes' module in the kernel cache (``helper_text``) is a copy of its functions, and generated
drivers import ``gemm_split`` and the row hand-over from that module by its name, which is the
hash of its text (render.py), so a changed copy is a new module and its importers change too.
What the copy still takes from other files (the protocol's constants, the intrinsics, the BLAS
declarations) is compiled into it, so their texts' hash goes into the copy's text.

>>> from graphcomp.backends.numba.blas import BlasLibrary
>>> text = module_text(BlasLibrary("/lib/libopenblas.so", "cblas_sgemm", "cblas_dgemm", 32))
>>> "def gemm_split(" in text and "cache=False" not in text
True
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from graphcomp.backends.numba.blas import BlasLibrary

_HERE = Path(__file__).parent
CODE_FILE = _HERE / "code.py"
# Everything above this line of code.py is for code.py as a module of its own.
MARKER = "# ---- copied into generated modules from here on (source.module_text)\n"
# Files the copy imports from whose content ends up in its compiled code.
COMPILED_IN = (_HERE / "protocol.py", _HERE / "intrinsics.py", _HERE.parent / "blas.py")


@functools.cache
def _copied_code() -> str:
    text = CODE_FILE.read_text()
    _, found, body = text.partition(MARKER)
    if not found:
        raise RuntimeError(f"{CODE_FILE} lost its marker line {MARKER.strip()!r}")
    functions = body.count("@njit(")
    if functions == 0 or body.count("cache=False") != functions:
        raise RuntimeError(f"every @njit in {CODE_FILE} should say cache=False")
    return body.replace("cache=False", "cache=True").strip("\n")


@functools.cache
def compiled_in_key() -> str:
    """A hash of the files compiled into the copy without being copied."""
    digest = hashlib.sha256()
    for path in COMPILED_IN:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def module_text(blas: BlasLibrary) -> str:
    """The lanes' functions for a module that calls numpy's BLAS ``blas``: ``gemm_split(a, ta,
    b, tb, out, alpha, beta, lanes)``, ``rows_first``, ``rows_next``, ``serve``, with what
    they call (``run_piece``, ``claim_pieces``, ``clock_ns``, the atomics, ``sgemm_at``/
    ``dgemm_at``, ``address_pointer``) and, under ``NUMBA_DISABLE_JIT``, a plain-Python
    ``gemm_split``. Self-contained: it may go anywhere at a module's top level, before code
    that compiles while the module runs (a row segment's cfunc)."""
    return "\n".join([
        "# ---- the lanes: a copy of graphcomp/backends/numba/lanes/code.py (lanes/source.py)",
        "",
        "from graphcomp.backends.numba.blas import BlasLibrary  # noqa: E402",
        "",
        f"_LANES_BLAS = BlasLibrary({blas.path!r}, {blas.sgemm!r}, {blas.dgemm!r}, "
        f"{blas.int_bits})",
        "# protocol.py, intrinsics.py and blas.py are compiled in: the cache key follows them.",
        f"_LANES_COMPILED_IN = {compiled_in_key()!r}",
        "",
        _copied_code(),
    ])


def helper_text(blas: BlasLibrary) -> str:
    """The lanes' module: written to and loaded from graphcomp's cache like a generated
    module (the helper thread runs its ``serve``, drivers import ``gemm_split`` from it), so
    its functions compile once per cache."""
    return "\n".join([
        '"""graphcomp\'s lane helper (graphcomp/backends/numba/lanes/worker.py)."""',
        "",
        module_text(blas),
        "",
    ])
