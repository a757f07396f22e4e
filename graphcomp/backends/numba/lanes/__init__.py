"""A second lane for matrix products: a helper thread that takes half of each mid-size GEMM.

numpy's OpenBLAS runs a GEMM on one thread until it is large: measured here, 32x128x128 to
128x256x128 float32 products run at ~100 GFLOP/s on one core whether OpenBLAS may use one
thread or two. A recurrent network's step is mostly such products, so one of the two cores
stays idle. A program whose GEMMs reach ``LANE_MIN_WORK`` multiply-adds therefore splits each
of them in two (rows or columns) and lets a helper thread compute one half while the calling
thread computes the other (``benchmarks/bench_lanes.py`` measures both).

How the two threads meet, without locks or sleeping inside a step:

- Work is published in one int64 array ``lanes`` (its layout, by name: ``protocol.py``): a
  header row, one row per piece of the current product (pointers, sizes, leading dimensions,
  transposes, alpha, beta), and a row for the current row task.
- A piece is claimed by a compare-and-swap on one word holding ``(generation << 32) | next``,
  so a thread still looking at an old product can never claim a piece of a new one. Whoever
  finishes a piece adds one to ``DONE``; the caller returns when ``DONE`` reaches the count.
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

The package:

- ``protocol.py``: the layout of the lanes array and of a segment's argument block, by name,
  and the tuning constants (plain Python).
- ``intrinsics.py``: the LLVM atomics, the call by address, libc and BLAS-by-address
  declarations (imports numba).
- ``code.py``: the compiled code, a real module: ``gemm_split``, ``rows_first``/
  ``rows_next``, the helper's ``serve``.
- ``source.py``: ``helper_text(blas)``, the copy of ``code.py`` in the kernel cache that the
  helper thread and generated drivers use, so numba's cache never mixes old and new code.
- ``worker.py``: ``LaneWorker`` (the helper thread) and ``lanes_array``.

>>> LANE_MIN_WORK >= 2**18
True
"""

from graphcomp.backends.numba.lanes.protocol import (
    ACTIVE,
    BACKOFF,
    BACKOFF_PRODUCTS,
    CLAIM,
    COUNT,
    DONE,
    ENABLED,
    FIELDS,
    HEADER,
    HELPED,
    LANE_MIN_ROWS,
    LANE_MIN_WORK,
    LATE,
    PARK_SECONDS,
    PARKED,
    PIECES,
    ROW_CALLER,
    ROW_DONE,
    ROW_HELPER,
    ROW_POSTED,
    ROWS,
    ROWS_BACKOFF,
    ROWS_LATE,
    SPARE,
    SPIN_SECONDS,
    T_BLOCK,
    T_COUNT,
    T_FUNCTION,
    TASK,
    TASK_ROW,
)
from graphcomp.backends.numba.lanes.source import helper_text, module_text
from graphcomp.backends.numba.lanes.worker import SUPPORTED, LaneWorker, lanes_array

__all__ = [
    "ACTIVE", "BACKOFF", "BACKOFF_PRODUCTS", "CLAIM", "COUNT", "DONE", "ENABLED", "FIELDS",
    "HEADER", "HELPED", "LANE_MIN_ROWS", "LANE_MIN_WORK", "LATE", "PARKED", "PARK_SECONDS",
    "PIECES", "ROWS", "ROWS_BACKOFF", "ROWS_LATE", "ROW_CALLER", "ROW_DONE", "ROW_HELPER",
    "ROW_POSTED", "SPARE", "SPIN_SECONDS", "SUPPORTED", "TASK", "TASK_ROW", "T_BLOCK",
    "T_COUNT", "T_FUNCTION", "LaneWorker", "helper_text", "lanes_array", "module_text",
]
