"""The lanes' compiled code: split products, the row-task hand-over, and the helper's loop.

The single source of this code. The lanes' module in the kernel cache (``source.helper_text``,
which generated drivers import by its hashed name) is a copy of the text below the marker line,
compiled there with ``cache=True``: numba keys its cache by a file's own text, so a cached
module must not call into a file that may change under the same name. Here, imported as
itself, the functions compile uncached (for tests and debugging) against numpy's BLAS.

What differs between modules stays out of the text: ``_LANES_BLAS``, the ``BlasLibrary`` the
module calls, is defined before the copy, and ``blas_at(_LANES_BLAS)`` makes its GEMMs and its
integer type globals (numba freezes globals into the compiled code as constants).

- ``gemm_split``: out = alpha * op(a) @ op(b) + beta * out, in two pieces that this thread
  and the helper claim (``claim_pieces``) when the lanes are enabled and the product is large.
- ``rows_first``/``rows_next``: the hand-over that row segments (``rows.py``) loop over.
- ``serve``: the helper thread's loop (only the helper's module calls it).
"""

# A module carrying the copy defines its own _LANES_BLAS before it (source.module_text).
from graphcomp.backends.numba.lanes.intrinsics import STANDALONE_BLAS as _LANES_BLAS

# isort: split
# ---- copied into generated modules from here on (source.module_text)
import time

import numpy as np
from numba import config as numba_config
from numba import njit

from graphcomp.backends.numba.lanes.intrinsics import (
    address_pointer,  # noqa: F401  (row segments' C entries use it)
    atomic_add,
    atomic_cas,
    atomic_load,
    atomic_store,
    blas_at,
    call_task,
    clock_gettime,
    sched_yield,
    usleep,
)
from graphcomp.backends.numba.lanes.protocol import (
    ACTIVE,
    BACKOFF,
    BACKOFF_PRODUCTS,
    CBLAS_NO_TRANS,
    CBLAS_ROW_MAJOR,
    CBLAS_TRANS,
    CLAIM,
    CLOCK,
    COUNT,
    DONE,
    DOZE_MICROSECONDS,
    DOZE_NS,
    ENABLED,
    FIRST_PIECE,
    GENERATION_SHIFT,
    HEADER,
    HELPED,
    INDEX_MASK,
    LANE_MIN_ROWS,
    LANE_MIN_WORK,
    LATE,
    LATE_SLACK_NS,
    MAX_LATE,
    MAX_TASKS,
    P_A,
    P_ALPHA,
    P_B,
    P_BETA,
    P_C,
    P_DTYPE,
    P_K,
    P_LDA,
    P_LDB,
    P_LDC,
    P_M,
    P_N,
    P_TA,
    P_TB,
    PARKED,
    PIECES,
    POLL_MICROSECONDS,
    ROW_CALLER,
    ROW_DONE,
    ROW_HELPER,
    ROW_POSTED,
    ROWS_BACKOFF,
    ROWS_LATE,
    ROWS_MAX_LATE,
    ROWS_STARTED,
    STATE_MASK,
    T_BLOCK,
    T_COUNT,
    T_FUNCTION,
    TASK,
    TASK_ROW,
    TASK_SHIFT,
)

sgemm_at, dgemm_at, BLAS_INT = blas_at(_LANES_BLAS)
CLOCK_MONOTONIC = getattr(time, "CLOCK_MONOTONIC", 1)  # the lanes run on POSIX only


@njit(nogil=True, cache=False)
def run_piece(lanes, row):
    """Compute the piece described in ``lanes[row]`` with numpy's BLAS."""
    p = lanes[row]
    trans_a, trans_b = np.int32(p[P_TA]), np.int32(p[P_TB])
    m, n, k = BLAS_INT(p[P_M]), BLAS_INT(p[P_N]), BLAS_INT(p[P_K])
    lda, ldb, ldc = BLAS_INT(p[P_LDA]), BLAS_INT(p[P_LDB]), BLAS_INT(p[P_LDC])
    alpha = np.int64(p[P_ALPHA]).view(np.float64)
    beta = np.int64(p[P_BETA]).view(np.float64)
    if p[P_DTYPE] == 4:
        sgemm_at(CBLAS_ROW_MAJOR, trans_a, trans_b, m, n, k, np.float32(alpha), p[P_A], lda,
                 p[P_B], ldb, np.float32(beta), p[P_C], ldc)
    else:
        dgemm_at(CBLAS_ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, p[P_A], lda, p[P_B], ldb,
                 beta, p[P_C], ldc)


@njit(nogil=True, cache=False)
def clock_ns(clock):
    """CLOCK_MONOTONIC in nanoseconds; ``clock`` holds the timespec (two int64)."""
    clock_gettime(CLOCK_MONOTONIC, clock.ctypes)
    return clock[0] * 1000000000 + clock[1]


@njit(nogil=True, cache=False)
def claim_pieces(lanes, generation, helper):
    """Claim and compute pieces of product ``generation`` until none is left."""
    while True:
        word = atomic_load(lanes, HEADER, CLAIM)
        if (word >> GENERATION_SHIFT) != generation:
            return
        index = word & INDEX_MASK
        if index >= lanes[HEADER, COUNT]:
            return
        if atomic_cas(lanes, HEADER, CLAIM, word, word + 1):
            run_piece(lanes, FIRST_PIECE + index)
            if helper:
                lanes[HEADER, HELPED] += 1
            atomic_add(lanes, HEADER, DONE, 1)


@njit(nogil=True, cache=False, error_model="numpy")
def gemm_split(a, ta, b, tb, out, alpha, beta, lanes):
    """out = alpha * op(a) @ op(b) + beta * out for float32 or float64 matrices, where op
    transposes when its flag is 1 (a transposed operand is passed as its C-ordered base, so
    every call has the same types and the function compiles once per dtype), in two pieces
    when the lanes are enabled and the product is large enough."""
    m = a.shape[1] if ta else a.shape[0]
    k = a.shape[0] if ta else a.shape[1]
    n = b.shape[0] if tb else b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                out[i, j] = beta * out[i, j] if beta != 0 else 0
        return
    size = out.itemsize
    lda, ldb = a.shape[1], b.shape[1]  # row-major bases: one row apart
    trans_a = CBLAS_TRANS if ta else CBLAS_NO_TRANS
    trans_b = CBLAS_TRANS if tb else CBLAS_NO_TRANS
    whole = (lanes[HEADER, ENABLED] == 0 or m * n * k < LANE_MIN_WORK
             or max(m, n) < 2 * LANE_MIN_ROWS)
    if not whole and lanes[HEADER, BACKOFF] > 0:  # the helper was late recently
        lanes[HEADER, BACKOFF] -= 1
        whole = True
    if not whole and atomic_load(lanes, HEADER, PARKED) != 0:  # it is still waking up
        whole = True
    if whole:
        # Both branches type-check for either dtype (matrices are addresses); one runs.
        if size == 4:
            sgemm_at(CBLAS_ROW_MAJOR, np.int32(trans_a), np.int32(trans_b), BLAS_INT(m),
                     BLAS_INT(n), BLAS_INT(k), np.float32(alpha), a.ctypes.data, BLAS_INT(lda),
                     b.ctypes.data, BLAS_INT(ldb), np.float32(beta), out.ctypes.data,
                     BLAS_INT(n))
        else:
            dgemm_at(CBLAS_ROW_MAJOR, np.int32(trans_a), np.int32(trans_b), BLAS_INT(m),
                     BLAS_INT(n), BLAS_INT(k), np.float64(alpha), a.ctypes.data, BLAS_INT(lda),
                     b.ctypes.data, BLAS_INT(ldb), np.float64(beta), out.ctypes.data,
                     BLAS_INT(n))
        return
    alpha_bits = np.float64(alpha).view(np.int64)
    beta_bits = np.float64(beta).view(np.int64)
    by_rows = m >= n
    extent = m if by_rows else n
    # Split at a multiple of 16 elements, so both halves keep vector-aligned columns.
    half = (extent // 2 + 15) // 16 * 16 if extent >= 64 else extent // 2
    generation = (atomic_load(lanes, HEADER, CLAIM) >> GENERATION_SHIFT) + 1
    for piece in range(PIECES):
        start = 0 if piece == 0 else half
        stop = half if piece == 0 else extent
        p = lanes[FIRST_PIECE + piece]
        p[P_DTYPE] = size
        p[P_TA] = trans_a
        p[P_TB] = trans_b
        p[P_K] = k
        p[P_LDA] = lda
        p[P_LDB] = ldb
        p[P_LDC] = n
        p[P_ALPHA] = alpha_bits
        p[P_BETA] = beta_bits
        p[P_A] = a.ctypes.data
        p[P_B] = b.ctypes.data
        if by_rows:  # rows start..stop of op(a) and of out
            p[P_M] = stop - start
            p[P_N] = n
            p[P_A] += start * size * (1 if ta else lda)
            p[P_C] = out.ctypes.data + start * n * size
        else:  # columns start..stop of op(b) and of out
            p[P_M] = m
            p[P_N] = stop - start
            p[P_B] += start * size * (ldb if tb else 1)
            p[P_C] = out.ctypes.data + start * size
    lanes[HEADER, COUNT] = PIECES
    lanes[HEADER, DONE] = 0
    clock = lanes[HEADER, CLOCK:CLOCK + 2]
    started = clock_ns(clock)
    atomic_store(lanes, HEADER, CLAIM, generation << GENERATION_SHIFT)  # publishes the pieces
    claim_pieces(lanes, generation, False)
    if atomic_load(lanes, HEADER, DONE) < PIECES:
        mine = clock_ns(clock)
        while atomic_load(lanes, HEADER, DONE) < PIECES:
            sched_yield()  # if the helper was preempted mid-piece, let it run
        if clock_ns(clock) - mine > mine - started + LATE_SLACK_NS:
            lanes[HEADER, LATE] = min(lanes[HEADER, LATE] + 1, MAX_LATE)
            lanes[HEADER, BACKOFF] = BACKOFF_PRODUCTS << lanes[HEADER, LATE]
            return
    lanes[HEADER, LATE] = 0


def _gemm_split_python(a, ta, b, tb, out, alpha, beta, lanes):
    """gemm_split as plain Python (NUMBA_DISABLE_JIT, for pdb), which cannot call BLAS by
    address: numpy's np.dot is the same library."""
    out *= beta
    out += alpha * np.dot(a.T if ta else a, b.T if tb else b)


if numba_config.DISABLE_JIT:
    gemm_split = _gemm_split_python


@njit(nogil=True, cache=False)
def rows_first(lanes, safe, who, half, rows, function, block):
    """The first rows a thread runs, and the task: ``(lo, hi, task)``. The helper (``who``:
    the task it claimed, see ``serve``) gets the second half. The caller (``who`` 0) posts a
    task and gets the first half, or runs every row when the segment is not ``safe``, the
    lanes are off, the helper is waking up or was late recently."""
    if who > 0:
        return half, rows, who
    if (safe == 0 or lanes[HEADER, ENABLED] == 0
            or atomic_load(lanes, HEADER, PARKED) != 0):
        return 0, rows, 0
    if lanes[HEADER, ROWS_BACKOFF] > 0:
        lanes[HEADER, ROWS_BACKOFF] -= 1
        return 0, rows, 0
    task = lanes[TASK_ROW, T_COUNT] % MAX_TASKS + 1
    lanes[TASK_ROW, T_COUNT] = task
    lanes[TASK_ROW, T_FUNCTION] = function
    lanes[TASK_ROW, T_BLOCK] = block
    lanes[HEADER, ROWS_STARTED] = clock_ns(lanes[HEADER, CLOCK:CLOCK + 2])
    atomic_store(lanes, HEADER, TASK, task << TASK_SHIFT)  # publishes the task
    return 0, half, task


@njit(nogil=True, cache=False)
def rows_next(lanes, task, who, done, half, rows):
    """The next rows after rows up to ``done`` (none left: an empty range). The helper
    reports its half; the caller claims the second half unless the helper has it, and then
    waits for it. A late helper makes the caller run the next tasks alone."""
    if who > 0:
        lanes[HEADER, HELPED] += 1
        atomic_store(lanes, HEADER, TASK, (task << TASK_SHIFT) | ROW_DONE)
        return 0, 0
    if task == 0 or done == rows:
        return 0, 0
    if atomic_cas(lanes, HEADER, TASK, task << TASK_SHIFT, (task << TASK_SHIFT) | ROW_CALLER):
        return half, rows
    clock = lanes[HEADER, CLOCK:CLOCK + 2]
    mine = clock_ns(clock)
    while atomic_load(lanes, HEADER, TASK) != (task << TASK_SHIFT) | ROW_DONE:
        sched_yield()  # if the helper was preempted mid-half, let it run
    if clock_ns(clock) - mine > mine - lanes[HEADER, ROWS_STARTED] + LATE_SLACK_NS:
        lanes[HEADER, ROWS_LATE] = min(lanes[HEADER, ROWS_LATE] + 1, ROWS_MAX_LATE)
        lanes[HEADER, ROWS_BACKOFF] = 1 << lanes[HEADER, ROWS_LATE]
    else:
        lanes[HEADER, ROWS_LATE] = 0
    return 0, 0


@njit(nogil=True, cache=False)
def serve(lanes, spin_ns, park_ns):
    """The helper's loop: take pieces and row tasks while a step runs; after a step, spin for
    ``spin_ns`` (the next step of a training loop usually starts sooner), then poll. Returns
    after ``park_ns`` without a step."""
    clock = np.zeros(2, dtype=np.int64)
    seen = -1  # the current product too: it may have been published while we were away
    seen_task = atomic_load(lanes, HEADER, TASK) >> TASK_SHIFT
    quiet_since = clock_ns(clock)
    while True:
        task = atomic_load(lanes, HEADER, TASK)
        if (task & STATE_MASK) == ROW_POSTED and (task >> TASK_SHIFT) != seen_task:
            seen_task = task >> TASK_SHIFT
            # Claimed here, before the call: the caller then waits for this half, so the
            # segment's argument block and arrays stay alive until the helper is done.
            if atomic_cas(lanes, HEADER, TASK, task, task | ROW_HELPER):
                call_task(lanes[TASK_ROW, T_FUNCTION], lanes[TASK_ROW, T_BLOCK], seen_task)
            continue
        generation = atomic_load(lanes, HEADER, CLAIM) >> GENERATION_SHIFT
        if generation != seen:
            claim_pieces(lanes, generation, True)
            seen = generation
        elif atomic_load(lanes, HEADER, ACTIVE) != 0:
            quiet_since = -1
        elif quiet_since < 0:
            quiet_since = clock_ns(clock)
        else:
            quiet = clock_ns(clock) - quiet_since
            if quiet > park_ns:
                atomic_store(lanes, HEADER, PARKED, 1)
                if atomic_load(lanes, HEADER, ACTIVE) == 0:
                    return
                atomic_store(lanes, HEADER, PARKED, 0)
            elif quiet > DOZE_NS:
                usleep(DOZE_MICROSECONDS)
            elif quiet > spin_ns:
                usleep(POLL_MICROSECONDS)
