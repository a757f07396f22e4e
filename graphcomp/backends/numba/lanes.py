"""A second lane for matrix products: a helper thread that takes half of each mid-size GEMM.

numpy's OpenBLAS runs a GEMM on one thread until it is large: measured here, 32x128x128 to
128x256x128 float32 products run at ~100 GFLOP/s on one core whether OpenBLAS may use one
thread or two. A recurrent network's step is mostly such products, so one of the two cores
stays idle. A program whose GEMMs reach ``LANE_MIN_WORK`` multiply-adds therefore splits each
of them in two (rows or columns) and lets a helper thread compute one half while the calling
thread computes the other (``benchmarks/bench_lanes.py`` measures both).

How the two threads meet, without locks or sleeping inside a step:

- Work is published in one int64 array ``lanes``: row 0 is the header, rows 1..PIECES
  describe the pieces of the current product (pointers, sizes, leading dimensions,
  transposes, alpha, beta), and the last row the current row task.
- A piece is claimed by a compare-and-swap on one word holding ``(generation << 32) | next``,
  so a thread still looking at an old product can never claim a piece of a new one. Whoever
  finishes a piece adds one to ``done``; the caller returns when ``done`` reaches the count.
- Claims are opportunistic: the caller computes every piece the helper has not claimed. A
  helper that is asleep, slow to wake or missing (after ``os.fork``) only costs speed, never
  a wait on it.
- For the duration of a step the caller owns the lanes (``LaneWorker.begin``/``end``) and
  OpenBLAS is limited to one thread, so the two halves never compete with OpenBLAS's own pool.
  A step that cannot take the lanes (another thread's step has them) passes a disabled array
  and runs every product whole, with OpenBLAS threads as usual.
- After a step the helper spins for ``SPIN_SECONDS``, then polls with ``usleep`` (more
  slowly after ``DOZE_SECONDS``); after ``PARK_SECONDS`` without a step it returns to Python
  and waits on an event, so an idle process burns no CPU.

Row tasks (``rows.py``) use the same array: the caller posts a segment's native function and
argument block in the task row and the TASK word, and the helper calls that function by
address (``call_task``) to claim and run the second half of the segment's rows.

The generated module carries its own ``gemm_split_*`` functions (``split_gemm_source``) so that
a cached module never calls into code that may have changed; only the atomic intrinsics and the
helper thread live here.

>>> LANE_MIN_WORK >= 2**18
True
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from typing import Any

import numpy as np

from graphcomp.backends.numba.blas import BlasLibrary, gemm_externals, numpy_blas

# Products with fewer multiply-adds (m * n * k) than this run whole: the two halves of a
# 32x128x128 float32 product take ~6.5 us against ~9.8 us whole; below that the hand-over
# (a few hundred ns each way, plus moving the output between caches) eats the gain.
LANE_MIN_WORK = 2**19
# The smallest half worth a piece, along the split dimension.
LANE_MIN_ROWS = 8
PIECES = 2
# The helper calls usleep, sched_yield and clock_gettime from libc.
SUPPORTED = os.name == "posix"
FIELDS = 16  # int64 words per row of the lanes array
ROWS = 2 + PIECES  # the header, the pieces, the row task
# The row task's row (rows.py): the segment's native function, its argument block, and the
# number of the last task posted.
TASK_ROW = ROWS - 1
T_FUNCTION, T_BLOCK, T_COUNT = 0, 1, 2

# Header words (row 0). HELPED counts the pieces and row halves the helper computed (for tests
# and stats). TASK is the row task word (see "Row tasks" below).
CLAIM, COUNT, DONE, ENABLED, ACTIVE, PARKED, HELPED, TASK = 0, 1, 2, 3, 4, 5, 6, 7
# The caller's own words, on the header's second cache line (the helper polls the first):
# a timespec for clock_gettime, how many late helpers in a row, how many products to run
# whole before splitting again, how many row tasks to run alone, when the current row task
# was posted, and how many row tasks in a row the helper came late to (word 12 is free).
CLOCK, LATE, BACKOFF, ROWS_BACKOFF, ROWS_STARTED, ROWS_LATE = 8, 10, 11, 13, 14, 15
# The helper is late when the caller, done with its own piece, waits longer than that piece took
# plus this (it was preempted, or its core is busy elsewhere). Splitting then pauses for
# BACKOFF_PRODUCTS << (late helpers in a row, at most MAX_LATE) products, so an oversubscribed
# machine costs one wait now and then instead of one per product.
LATE_SLACK_NS = 50_000
BACKOFF_PRODUCTS = 4
MAX_LATE = 9
# Piece words (rows 1..): dtype code, transposes, sizes, pointers, leading dims, alpha, beta.
P_DTYPE, P_TA, P_TB, P_M, P_N, P_K, P_A, P_LDA, P_B, P_LDB, P_C, P_LDC, P_ALPHA, P_BETA = range(14)

# After a step the helper spins this long (a training loop's next step usually starts sooner),
# then polls every POLL_MICROSECONDS; after DOZE_SECONDS it polls every DOZE_MICROSECONDS
# (~0.1 % of a core), and after PARK_SECONDS without a step it sleeps on an event. Waking
# from the event needs the GIL, which the stepping thread holds between its native calls:
# measured, the helper then often joined only 5 ms later (Python's switch interval), so the
# first steps after a pause ran alone. Polling keeps pauses of up to PARK_SECONDS (an
# evaluation, a log line) off the interpreter.
SPIN_SECONDS = 0.0005
POLL_MICROSECONDS = 50
DOZE_SECONDS = 0.1
DOZE_MICROSECONDS = 1000
PARK_SECONDS = 2.0
# Row tasks (rows.py): the TASK word holds (task << 8) | state, where the state is one of:
ROW_POSTED, ROW_HELPER, ROW_CALLER, ROW_DONE = 0, 1, 2, 3
# A row task the helper came late to makes the caller run the next 1 << (late tasks in a
# row, at most ROWS_MAX_LATE) alone.
ROWS_MAX_LATE = 6
# Bumped whenever the protocol above changes: generated modules embed it, so a module built
# against an older protocol gets a different hash and is never loaded from the cache.
PROTOCOL = 8


def lanes_array(enabled: bool = False) -> np.ndarray:
    """A fresh lanes array (header plus piece rows).

    >>> int(lanes_array()[0, ENABLED]), lanes_array(enabled=True).shape == (ROWS, FIELDS)
    (0, True)
    """
    lanes = np.zeros((ROWS, FIELDS), dtype=np.int64)
    lanes[0, ENABLED] = int(enabled)
    return lanes


# ---- atomics (numba has none for CPU code)

@functools.cache
def intrinsics() -> dict[str, Any]:
    """``atomic_load``/``atomic_store``/``atomic_add``/``atomic_cas`` on an int64 array element.

    Acquire loads and release stores: data written before a release store is visible to a
    thread whose acquire load sees the stored value.
    """
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
    from numba.np.arrayobj import make_array

    def pointer(context, builder, array_type, array, row, column):
        array = make_array(array_type)(context, builder, array)
        return cgutils.get_item_pointer(context, builder, array_type, array, [row, column])

    @intrinsic
    def atomic_load(typingctx, array, row, column):
        def codegen(context, builder, signature, args):
            address = pointer(context, builder, signature.args[0], *args)
            return builder.load_atomic(address, "acquire", 8)
        return types.int64(array, row, column), codegen

    @intrinsic
    def atomic_store(typingctx, array, row, column, value):
        def codegen(context, builder, signature, args):
            address = pointer(context, builder, signature.args[0], *args[:3])
            builder.store_atomic(args[3], address, "release", 8)
            return context.get_dummy_value()
        return types.void(array, row, column, types.int64), codegen

    @intrinsic
    def atomic_add(typingctx, array, row, column, value):
        def codegen(context, builder, signature, args):
            address = pointer(context, builder, signature.args[0], *args[:3])
            return builder.atomic_rmw("add", address, args[3], "acq_rel")
        return types.int64(array, row, column, types.int64), codegen

    @intrinsic
    def atomic_cas(typingctx, array, row, column, expected, new):
        def codegen(context, builder, signature, args):
            address = pointer(context, builder, signature.args[0], *args[:3])
            result = builder.cmpxchg(address, args[3], args[4], "acq_rel", "acquire")
            return builder.extract_value(result, 1)
        return types.boolean(array, row, column, types.int64, types.int64), codegen

    @intrinsic
    def call_task(typingctx, function, block, who):
        """Call the native ``void f(int64 block, int64 who)`` at address ``function``."""
        def codegen(context, builder, signature, args):
            from llvmlite import ir

            int64 = ir.IntType(64)
            callee_type = ir.FunctionType(ir.VoidType(), [int64, int64])
            callee = builder.inttoptr(args[0], callee_type.as_pointer())
            builder.call(callee, [args[1], args[2]])
            return context.get_dummy_value()
        return types.void(types.int64, types.int64, types.int64), codegen

    @intrinsic
    def address_pointer(typingctx, address, kind):
        """A typed pointer to ``address`` (``kind``: a numpy scalar type such as np.float32)."""
        pointer_type = types.CPointer(kind.dtype)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer_type))
        return pointer_type(types.int64, kind), codegen

    return {"atomic_load": atomic_load, "atomic_store": atomic_store,
            "atomic_add": atomic_add, "atomic_cas": atomic_cas, "call_task": call_task,
            "address_pointer": address_pointer}


def pointer_gemm_externals(library: BlasLibrary) -> dict[str, object]:
    """``[sd]gemm_at`` (numpy's GEMMs taking integer addresses, so a piece can start in the
    middle of an array), and libc's ``sched_yield`` and ``clock_gettime``."""
    from numba import types

    externals = gemm_externals(library, by_address=True)
    externals["sched_yield"] = types.ExternalFunction("sched_yield", types.int32())
    externals["clock_gettime"] = types.ExternalFunction(
        "clock_gettime", types.int32(types.int32, types.voidptr))
    return externals


def claim_source(int_type: str) -> str:
    """Source of ``run_piece`` and ``claim_pieces``: shared by the helper thread (compiled
    here) and every generated module (compiled there). ``int_type`` is the BLAS integer."""
    return f'''
@njit(nogil=True, cache=True)
def run_piece(lanes, row):
    """Compute one described piece with numpy's BLAS."""
    p = lanes[row]
    trans_a, trans_b = np.int32(p[{P_TA}]), np.int32(p[{P_TB}])
    m, n, k = {int_type}(p[{P_M}]), {int_type}(p[{P_N}]), {int_type}(p[{P_K}])
    lda, ldb, ldc = {int_type}(p[{P_LDA}]), {int_type}(p[{P_LDB}]), {int_type}(p[{P_LDC}])
    alpha = np.int64(p[{P_ALPHA}]).view(np.float64)
    beta = np.int64(p[{P_BETA}]).view(np.float64)
    if p[{P_DTYPE}] == 4:
        sgemm_at(101, trans_a, trans_b, m, n, k, np.float32(alpha), p[{P_A}], lda, p[{P_B}], ldb,
                 np.float32(beta), p[{P_C}], ldc)
    else:
        dgemm_at(101, trans_a, trans_b, m, n, k, alpha, p[{P_A}], lda, p[{P_B}], ldb, beta,
                 p[{P_C}], ldc)


@njit(nogil=True, cache=True)
def clock_ns(clock):
    """CLOCK_MONOTONIC in nanoseconds; ``clock`` holds the timespec (two int64)."""
    clock_gettime({time.CLOCK_MONOTONIC}, clock.ctypes)
    return clock[0] * 1000000000 + clock[1]


@njit(nogil=True, cache=True)
def claim_pieces(lanes, generation, helper):
    """Claim and compute pieces of product ``generation`` until none is left."""
    while True:
        word = atomic_load(lanes, 0, {CLAIM})
        if (word >> 32) != generation:
            return
        index = word & 0xFFFFFFFF
        if index >= lanes[0, {COUNT}]:
            return
        if atomic_cas(lanes, 0, {CLAIM}, word, word + 1):
            run_piece(lanes, 1 + index)
            if helper:
                lanes[0, {HELPED}] += 1
            atomic_add(lanes, 0, {DONE}, 1)
'''


def rows_source() -> str:
    """Source of the row-task hand-over that row segments (``rows.py``) loop over:
    ``rows_first`` gives the first rows a thread runs and the task, ``rows_next`` the next
    rows (none left: an empty range). Needs ``claim_source``'s ``clock_ns``."""
    return f'''
@njit(nogil=True, cache=True)
def rows_first(lanes, safe, who, half, rows, function, block):
    """The helper (``who``: the task it claimed, see ``serve``) gets the second half. The
    caller (``who`` 0) posts a task and gets the first half, or runs every row when the
    segment is not ``safe``, the lanes are off, the helper is waking up or was late recently."""
    if who > 0:
        return half, rows, who
    if safe == 0 or lanes[0, {ENABLED}] == 0 or atomic_load(lanes, 0, {PARKED}) != 0:
        return 0, rows, 0
    if lanes[0, {ROWS_BACKOFF}] > 0:
        lanes[0, {ROWS_BACKOFF}] -= 1
        return 0, rows, 0
    task = lanes[{TASK_ROW}, {T_COUNT}] % (1 << 48) + 1
    lanes[{TASK_ROW}, {T_COUNT}] = task
    lanes[{TASK_ROW}, {T_FUNCTION}] = function
    lanes[{TASK_ROW}, {T_BLOCK}] = block
    lanes[0, {ROWS_STARTED}] = clock_ns(lanes[0, {CLOCK}:{CLOCK + 2}])
    atomic_store(lanes, 0, {TASK}, task << 8)  # publishes the task
    return 0, half, task


@njit(nogil=True, cache=True)
def rows_next(lanes, task, who, done, half, rows):
    """After rows up to ``done``: the helper reports its half; the caller claims the second
    half unless the helper has it, and then waits for it. A late helper makes the caller run
    the next tasks alone."""
    if who > 0:
        lanes[0, {HELPED}] += 1
        atomic_store(lanes, 0, {TASK}, (task << 8) | {ROW_DONE})
        return 0, 0
    if task == 0 or done == rows:
        return 0, 0
    if atomic_cas(lanes, 0, {TASK}, task << 8, (task << 8) | {ROW_CALLER}):
        return half, rows
    clock = lanes[0, {CLOCK}:{CLOCK + 2}]
    mine = clock_ns(clock)
    while atomic_load(lanes, 0, {TASK}) != (task << 8) | {ROW_DONE}:
        sched_yield()  # if the helper was preempted mid-half, let it run
    if clock_ns(clock) - mine > mine - lanes[0, {ROWS_STARTED}] + {LATE_SLACK_NS}:
        lanes[0, {ROWS_LATE}] = min(lanes[0, {ROWS_LATE}] + 1, {ROWS_MAX_LATE})
        lanes[0, {ROWS_BACKOFF}] = 1 << lanes[0, {ROWS_LATE}]
    else:
        lanes[0, {ROWS_LATE}] = 0
    return 0, 0
'''


def split_gemm_source(dtype: str, int_type: str) -> str:
    """Source of ``gemm_split_<sfx>(a, ta, b, tb, out, alpha, beta, lanes)``: out = alpha *
    op(a) @ op(b) + beta * out, where op transposes when its flag is 1 (a transposed operand is
    passed as its C-ordered base, so every call has the same types and the function compiles
    once per dtype), in two halves when the lanes are enabled and the product is large enough.
    """
    suffix = {"float32": "f32", "float64": "f64"}[dtype]
    size = np.dtype(dtype).itemsize
    code = 4 if dtype == "float32" else 8
    gemm_at = "sgemm_at" if dtype == "float32" else "dgemm_at"
    scalar = f"np.{dtype}"
    return f'''
@njit(nogil=True, cache=True, error_model="numpy")
def gemm_split_{suffix}(a, ta, b, tb, out, alpha, beta, lanes):
    """out = alpha * op(a) @ op(b) + beta * out ({dtype}); halves go to two lanes when enabled."""
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
    size = {size}
    lda, ldb = a.shape[1], b.shape[1]  # row-major bases: one row apart
    trans_a = 112 if ta else 111
    trans_b = 112 if tb else 111
    whole = (lanes[0, {ENABLED}] == 0 or m * n * k < {LANE_MIN_WORK}
             or max(m, n) < 2 * {LANE_MIN_ROWS})
    if not whole and lanes[0, {BACKOFF}] > 0:  # the helper was late recently
        lanes[0, {BACKOFF}] -= 1
        whole = True
    if not whole and atomic_load(lanes, 0, {PARKED}) != 0:  # it is still waking up
        whole = True
    if whole:
        {gemm_at}(101, np.int32(trans_a), np.int32(trans_b), {int_type}(m), {int_type}(n),
                  {int_type}(k), {scalar}(alpha), a.ctypes.data, {int_type}(lda),
                  b.ctypes.data, {int_type}(ldb), {scalar}(beta), out.ctypes.data,
                  {int_type}(n))
        return
    alpha_bits = np.float64(alpha).view(np.int64)
    beta_bits = np.float64(beta).view(np.int64)
    by_rows = m >= n
    extent = m if by_rows else n
    # Split at a multiple of 16 elements, so both halves keep vector-aligned columns.
    half = (extent // 2 + 15) // 16 * 16 if extent >= 64 else extent // 2
    generation = (atomic_load(lanes, 0, {CLAIM}) >> 32) + 1
    for piece in range({PIECES}):
        start = 0 if piece == 0 else half
        stop = half if piece == 0 else extent
        p = lanes[1 + piece]
        p[{P_DTYPE}] = {code}
        p[{P_TA}] = trans_a
        p[{P_TB}] = trans_b
        p[{P_K}] = k
        p[{P_LDA}] = lda
        p[{P_LDB}] = ldb
        p[{P_LDC}] = n
        p[{P_ALPHA}] = alpha_bits
        p[{P_BETA}] = beta_bits
        p[{P_A}] = a.ctypes.data
        p[{P_B}] = b.ctypes.data
        if by_rows:  # rows start..stop of op(a) and of out
            p[{P_M}] = stop - start
            p[{P_N}] = n
            p[{P_A}] += start * size * (1 if ta else lda)
            p[{P_C}] = out.ctypes.data + start * n * size
        else:  # columns start..stop of op(b) and of out
            p[{P_M}] = m
            p[{P_N}] = stop - start
            p[{P_B}] += start * size * (ldb if tb else 1)
            p[{P_C}] = out.ctypes.data + start * size
    lanes[0, {COUNT}] = {PIECES}
    lanes[0, {DONE}] = 0
    clock = lanes[0, {CLOCK}:{CLOCK + 2}]
    started = clock_ns(clock)
    atomic_store(lanes, 0, {CLAIM}, generation << 32)  # publishes the pieces
    claim_pieces(lanes, generation, False)
    if atomic_load(lanes, 0, {DONE}) < {PIECES}:
        mine = clock_ns(clock)
        while atomic_load(lanes, 0, {DONE}) < {PIECES}:
            sched_yield()  # if the helper was preempted mid-piece, let it run
        if clock_ns(clock) - mine > mine - started + {LATE_SLACK_NS}:
            lanes[0, {LATE}] = min(lanes[0, {LATE}] + 1, {MAX_LATE})
            lanes[0, {BACKOFF}] = {BACKOFF_PRODUCTS} << lanes[0, {LATE}]
            return
    lanes[0, {LATE}] = 0
'''


# ---- the helper thread

def module_prelude() -> str:
    """Imports, atomics and BLAS-by-address declarations for code that uses the lanes (the
    module defines ``_BLAS`` before this text)."""
    return "\n".join([
        "from graphcomp.backends.numba.lanes import intrinsics, pointer_gemm_externals",
        "",
        f"_LANES_PROTOCOL = {PROTOCOL}  # in the text, so the cache key follows the protocol",
        "_ATOMICS = intrinsics()",
        "atomic_load = _ATOMICS['atomic_load']",
        "atomic_store = _ATOMICS['atomic_store']",
        "atomic_add = _ATOMICS['atomic_add']",
        "atomic_cas = _ATOMICS['atomic_cas']",
        "call_task = _ATOMICS['call_task']",
        "address_pointer = _ATOMICS['address_pointer']",
        "_GEMM_AT = pointer_gemm_externals(_BLAS)",
        "sgemm_at = _GEMM_AT['sgemm_at']",
        "dgemm_at = _GEMM_AT['dgemm_at']",
        "sched_yield = _GEMM_AT['sched_yield']",
        "clock_gettime = _GEMM_AT['clock_gettime']",
        "",
    ])


def helper_source(library: BlasLibrary) -> str:
    """The helper thread's module: written to and loaded from graphcomp's cache like a
    generated module, so its functions compile once per machine."""
    return "\n".join([
        '"""graphcomp\'s lane helper (graphcomp/backends/numba/lanes.py)."""',
        "",
        "import numpy as np",
        "from numba import njit, types",
        "",
        "from graphcomp.backends.numba.blas import BlasLibrary, load_numpy_blas",
        "",
        f"_BLAS = BlasLibrary({library.path!r}, {library.sgemm!r}, {library.dgemm!r}, "
        f"{library.int_bits})",
        "load_numpy_blas(_BLAS.path)",
        module_prelude(),
        "usleep = types.ExternalFunction('usleep', types.int32(types.uint32))",
        claim_source(f"np.int{library.int_bits}"),
        _SERVE_SOURCE,
    ])


_SERVE_SOURCE = f'''
@njit(nogil=True, cache=True)
def serve(lanes, spin_ns, park_ns):
    """The helper's loop: take pieces and row tasks while a step runs; after a step, spin for
    ``spin_ns`` (the next step of a training loop usually starts sooner), then poll. Returns
    after ``park_ns`` without a step."""
    clock = np.zeros(2, dtype=np.int64)
    seen = -1  # the current product too: it may have been published while we were away
    seen_task = atomic_load(lanes, 0, {TASK}) >> 8
    quiet_since = clock_ns(clock)
    while True:
        task = atomic_load(lanes, 0, {TASK})
        if (task & 0xFF) == {ROW_POSTED} and (task >> 8) != seen_task:
            seen_task = task >> 8
            # Claimed here, before the call: the caller then waits for this half, so the
            # segment's argument block and arrays stay alive until the helper is done.
            if atomic_cas(lanes, 0, {TASK}, task, task | {ROW_HELPER}):
                call_task(lanes[{TASK_ROW}, {T_FUNCTION}], lanes[{TASK_ROW}, {T_BLOCK}],
                          seen_task)
            continue
        generation = atomic_load(lanes, 0, {CLAIM}) >> 32
        if generation != seen:
            claim_pieces(lanes, generation, True)
            seen = generation
        elif atomic_load(lanes, 0, {ACTIVE}) != 0:
            quiet_since = -1
        elif quiet_since < 0:
            quiet_since = clock_ns(clock)
        else:
            quiet = clock_ns(clock) - quiet_since
            if quiet > park_ns:
                atomic_store(lanes, 0, {PARKED}, 1)
                if atomic_load(lanes, 0, {ACTIVE}) == 0:
                    return
                atomic_store(lanes, 0, {PARKED}, 0)
            elif quiet > {int(DOZE_SECONDS * 1e9)}:
                usleep({DOZE_MICROSECONDS})
            elif quiet > spin_ns:
                usleep({POLL_MICROSECONDS})
'''


class LaneWorker:
    """The process's helper thread and the lanes array it serves (one per process).

    >>> worker = LaneWorker.shared()
    >>> lanes = worker.begin()  # None when another step holds the lanes
    >>> if lanes is not None:
    ...     worker.end()
    """

    _shared: LaneWorker | None = None
    _shared_lock = threading.Lock()

    def __init__(self, library: BlasLibrary) -> None:
        from numba import types

        from graphcomp.backends.numba.cache import load_generated_module, record_compiled

        self.lanes = lanes_array(enabled=True)
        self._owner = threading.Lock()
        self._wake = threading.Event()
        self._library = library
        self._blas = ctypes.CDLL(library.path)
        prefix = "scipy_openblas_" if library.sgemm.startswith("scipy_") else "openblas_"
        suffix = "64_" if library.sgemm.endswith("64_") else ""
        self._get_threads = getattr(self._blas, f"{prefix}get_num_threads{suffix}", None)
        self._set_threads = getattr(self._blas, f"{prefix}set_num_threads{suffix}", None)
        if self._set_threads is not None:
            self._set_threads.argtypes = [ctypes.c_int]
        self._blas_threads = 0
        self._pid = os.getpid()
        module, path = load_generated_module(helper_source(library))
        self._serve = module.serve
        self._serve.compile((types.Array(types.int64, 2, "C"), types.int64, types.int64))
        record_compiled(path)
        self.lanes[0, PARKED] = 1
        self._thread = threading.Thread(target=self._run, name="graphcomp-lanes", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> LaneWorker | None:
        """The process's worker, started on first use; None without numpy's BLAS, a POSIX
        libc or the JIT, or when ``GRAPHCOMP_LANES=0``."""
        from numba import config

        library = numpy_blas()
        if (library is None or not SUPPORTED or config.DISABLE_JIT
                or os.environ.get("GRAPHCOMP_LANES") == "0"):
            return None
        with cls._shared_lock:
            if cls._shared is None or cls._shared._pid != os.getpid():
                cls._shared = LaneWorker(library)  # after a fork the old thread is gone
            return cls._shared

    def in_this_process(self) -> bool:
        """False in a child forked after the helper started (it has no helper thread)."""
        return self._pid == os.getpid()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.lanes[0, PARKED] = 0
            self._serve(self.lanes, int(SPIN_SECONDS * 1e9), int(PARK_SECONDS * 1e9))

    def begin(self) -> np.ndarray | None:
        """Take the lanes for one step (None if another thread's step has them)."""
        if not self._owner.acquire(blocking=False):
            return None
        if self._get_threads is not None:
            self._blas_threads = self._get_threads()
            if self._blas_threads > 1:
                self._set_threads(1)
        self.lanes[0, ACTIVE] = 1
        if self.lanes[0, PARKED]:
            self._wake.set()
        return self.lanes

    def end(self) -> None:
        """Give the lanes back and restore OpenBLAS's thread count."""
        self.lanes[0, ACTIVE] = 0
        if self._blas_threads > 1:
            self._set_threads(self._blas_threads)
        self._owner.release()

