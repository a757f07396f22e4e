"""The lanes protocol: the layout of the shared int64 array and of a row segment's argument block.

Plain Python, no numba: the compiled code (``code.py``) reads these names as globals, which
numba freezes into the machine code as constants, and the generated modules carry a hash of
this file's text (``source.module_text``) so a cached module never runs with an old layout.

The lanes array has ``ROWS`` rows of ``FIELDS`` int64 words::

    row HEADER        the header words below (claim word, counters, the row task word, ...)
    rows FIRST_PIECE  one row per piece of the current product: its BLAS call (P_* words)
      .. + PIECES-1
    row TASK_ROW      the current row task: the segment's C entry, its argument block (T_*)

>>> (ROWS, FIELDS), TASK_ROW == FIRST_PIECE + PIECES
((4, 16), True)
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- the lanes array

FIELDS = 16  # int64 words per row
PIECES = 2  # a split product's pieces: one per lane
HEADER = 0
FIRST_PIECE = 1
TASK_ROW = FIRST_PIECE + PIECES
ROWS = TASK_ROW + 1

# Header words, first cache line (the helper polls these).
CLAIM = 0  # (generation << GENERATION_SHIFT) | index of the next unclaimed piece
COUNT = 1  # pieces of the current product
DONE = 2  # pieces finished
ENABLED = 3  # 1: split products and post row tasks; 0: run everything whole
ACTIVE = 4  # 1 while a step holds the lanes (LaneWorker.begin/end)
PARKED = 5  # 1 while the helper waits on its event (or has not started yet)
HELPED = 6  # pieces and row halves the helper computed (for tests and stats)
TASK = 7  # the row task word: (task << TASK_SHIFT) | ROW_* state
# Header words, second cache line: the caller's own.
CLOCK = 8  # two words: a timespec for clock_gettime
LATE = 10  # products in a row the helper came late to
BACKOFF = 11  # products to run whole before splitting again
SPARE = 12  # free (tests mark things in it)
ROWS_BACKOFF = 13  # row tasks to run alone before posting again
ROWS_STARTED = 14  # when the current row task was posted (ns)
ROWS_LATE = 15  # row tasks in a row the helper came late to

GENERATION_SHIFT = 32  # CLAIM: a product's generation above, the next piece's index below
INDEX_MASK = (1 << GENERATION_SHIFT) - 1

# Piece words (rows FIRST_PIECE..): one cblas_[sd]gemm call, its matrices as addresses.
P_DTYPE = 0  # the element size: 4 (float32, sgemm) or 8 (float64, dgemm)
P_TA, P_TB = 1, 2  # CBLAS_NO_TRANS or CBLAS_TRANS
P_M, P_N, P_K = 3, 4, 5
P_A, P_LDA = 6, 7  # address of op(a)'s first element, leading dimension
P_B, P_LDB = 8, 9
P_C, P_LDC = 10, 11
P_ALPHA, P_BETA = 12, 13  # float64 bits

# CBLAS's enums, as a piece stores them.
CBLAS_ROW_MAJOR = 101
CBLAS_NO_TRANS, CBLAS_TRANS = 111, 112

# Task row words (row TASK_ROW).
T_FUNCTION = 0  # address of the segment's C entry, ``void f(int64 block, int64 who)``
T_BLOCK = 1  # address of its argument block (below)
T_COUNT = 2  # the number of the last task posted (wraps at MAX_TASKS)

# The TASK word: (task << TASK_SHIFT) | state, the state one of ROW_*.
TASK_SHIFT = 8
STATE_MASK = (1 << TASK_SHIFT) - 1
MAX_TASKS = 1 << 48
ROW_POSTED = 0  # the caller posted it and runs the first half
ROW_HELPER = 1  # the helper claimed the second half
ROW_CALLER = 2  # the caller claimed the second half back
ROW_DONE = 3  # the helper finished the second half

assert ROWS_LATE < FIELDS and P_BETA < FIELDS and T_COUNT < FIELDS

# ---- a row segment's argument block (rows.segment_entry writes it, the segment's C entry reads
# it; the helper passes its address): these words, then SegmentBlock's variable part.

BLOCK_LANES = 0  # address of the lanes array
BLOCK_SAFE = 1  # 1 when rows.rows_safe allowed two threads
BLOCK_FUNCTION = 2  # address of the segment's C entry
BLOCK_SELF = 3  # address of the block itself
BLOCK_ARRAYS = 4  # the first array address


@dataclass(frozen=True)
class SegmentBlock:
    """Where a segment's arrays sit in its argument block: after the fixed words, one address
    per array (the ``arenas`` arenas first, then the offsets table, then the invariant arrays),
    then each arena's length, then the table's two dimensions.

    >>> block = SegmentBlock(arrays=3, arenas=1)
    >>> block.address(0), block.address(1), block.length(0), block.table_shape, block.size
    (4, 5, 7, 8, 10)
    """

    arrays: int
    arenas: int

    def address(self, k: int) -> int:
        """The word holding array ``k``'s address."""
        return BLOCK_ARRAYS + k

    def length(self, k: int) -> int:
        """The word holding arena ``k``'s length (elements)."""
        return BLOCK_ARRAYS + self.arrays + k

    @property
    def table(self) -> int:
        """Index of the offsets table among the arrays (it follows the arenas)."""
        return self.arenas

    @property
    def table_shape(self) -> int:
        """The first of the two words holding the table's shape."""
        return BLOCK_ARRAYS + self.arrays + self.arenas

    @property
    def size(self) -> int:
        return self.table_shape + 2


# ---- tuning

# Products with fewer multiply-adds (m * n * k) than this run whole: the two halves of a
# 32x128x128 float32 product take ~6.5 us against ~9.8 us whole; below that the hand-over
# (a few hundred ns each way, plus moving the output between caches) eats the gain.
LANE_MIN_WORK = 2**19
# The smallest half worth a piece, along the split dimension.
LANE_MIN_ROWS = 8
# The helper is late when the caller, done with its own piece, waits longer than that piece took
# plus this (it was preempted, or its core is busy elsewhere). Splitting then pauses for
# BACKOFF_PRODUCTS << (late helpers in a row, at most MAX_LATE) products, so an oversubscribed
# machine costs one wait now and then instead of one per product.
LATE_SLACK_NS = 50_000
BACKOFF_PRODUCTS = 4
MAX_LATE = 9
# A row task the helper came late to makes the caller run the next 1 << (late tasks in a
# row, at most ROWS_MAX_LATE) alone.
ROWS_MAX_LATE = 6

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
DOZE_NS = int(DOZE_SECONDS * 1e9)
DOZE_MICROSECONDS = 1000
PARK_SECONDS = 2.0
