"""Row segments: a repeated run of row-wise calls becomes one loop, split in two by rows.

An unrolled recurrence (an RNN over T steps) compiles to T copies of the same few calls, such
as a product ``h @ W`` and an elementwise kernel, each reading and writing the rows of
``(B, n)`` buffers. Two facts make such runs worth a rewrite:

* Row ``i`` of everything the run writes depends only on row ``i`` of what it reads (a product
  splits by the rows of its left operand; an elementwise kernel reads its operands at its own
  row, or reads a broadcast value whole). So rows ``0:h`` and ``h:B`` of the *whole run* are
  independent: two threads can each take one half of the run, with one hand-over for the run
  instead of one per product (``lanes/code.py``, ``gemm_split``).
* The copies differ only in which buffers they use. ``find_runs`` finds periodic runs of
  calls; a run becomes one njit function looping over a table of buffer offsets (built once
  per binding), so its compile time does not grow with T.

The driver calls the run's entry (``segment_entry``): the compiled run posts a task in the
lanes array (``rows_first``/``rows_next``, ``lanes/code.py``), runs the first half of the rows
and then claims the second half unless the lane helper already has it (the helper calls the
run's C entry by address, without the GIL, with an argument block laid out as
``lanes.protocol.SegmentBlock`` says): a helper that is busy, asleep or absent costs speed,
never a wait. Before a
binding's first step, ``rows_safe`` checks the actual buffer addresses: two buffers of the run
that share memory must share it row for row (same start and size), else the run stays whole
on the calling thread.

>>> [(r.start, r.period, r.repeats) for r in find_runs([None, *[_example()] * 6])]
[(1, 1, 6)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcomp.backends.numba.lanes.protocol import (
    BLOCK_FUNCTION,
    BLOCK_LANES,
    BLOCK_SAFE,
    BLOCK_SELF,
    FIELDS,
    ROWS,
    SegmentBlock,
)

ROWS_SHAPE = f"{ROWS}, {FIELDS}"

# Runs shorter than this stay as they are: the loop's own compile (~0.5–1 s) and a hand-over
# (a few microseconds) only pay off over several repeats.
MIN_REPEATS = 4
MAX_PERIOD = 8  # calls per repeat
# Fewer rows than this stay on one thread (a half of a few rows is too small to hand over).
MIN_ROWS = 16


@dataclass(frozen=True)
class RowArg:
    """One array argument of a row-wise call."""

    text: str  # expression for the whole buffer in the step's scope (a transposed one's base)
    value: int  # the value it holds (equal values: the same buffer in every repeat)
    dtype: str
    shape: tuple[int, ...]
    role: str  # "rows": rows lo:hi; "flat_rows": those rows as a flat range; "whole"
    written: bool = False
    arena: str | None = None  # the arena it lives in, when bind() makes its view
    transposed: bool = False  # passed as ``.T``
    view_shape: tuple[int | str, ...] = ()  # of the array ``text`` names

    @property
    def ndim(self) -> int:
        return len(self.view_shape)

    def kind(self) -> tuple:
        return (self.dtype, self.shape, self.role, self.written, self.transposed)


@dataclass(frozen=True)
class RowCall:
    """A driver call that works row by row: ``template`` holds ``{0}``, ``{1}``, … for the
    arguments and ``{n}`` for the element count of the rows (flat loops)."""

    template: str
    args: tuple[RowArg, ...]
    rows: int
    comment: str = ""

    def key(self) -> tuple:
        return (self.template, self.rows, tuple(a.kind() for a in self.args))


@dataclass(frozen=True)
class Run:
    """``repeats`` copies of the ``period`` calls starting at ``start``."""

    start: int
    period: int
    repeats: int


def _example() -> RowCall:
    arg = RowArg("v1", 1, "float32", (32, 4), "rows", arena="arena_float32")
    return RowCall("k0({0})", (arg,), 32)


def find_runs(calls: Sequence[RowCall | None]) -> list[Run]:
    """Periodic runs of row-wise calls (``None``: any other statement), longest first at
    each position, not overlapping, each with at least ``MIN_REPEATS`` repeats.

    >>> a, b = _example(), RowCall("k1({0})", _example().args, 32)
    >>> find_runs([a, b] * 5 + [a])
    [Run(start=0, period=2, repeats=5)]
    """
    runs: list[Run] = []
    start = 0
    while start < len(calls):
        best: Run | None = None
        for period in range(1, MAX_PERIOD + 1):
            head = [c for c in calls[start:start + period] if c is not None]
            if len(head) < period:
                break
            keys = [c.key() for c in head]
            if len({c.rows for c in head}) != 1 or head[0].rows < MIN_ROWS:
                break
            repeats = 1
            while all(_same(calls, start + repeats * period + j, keys[j])
                      for j in range(period)):
                repeats += 1
            run = Run(start, period, repeats)
            if repeats >= MIN_REPEATS and (best is None or _size(run) > _size(best)):
                best = run
        if best is not None and segment_columns(calls, best) is not None:
            runs.append(best)
            start += _size(best)
        else:
            start += 1
    return runs


def _same(calls: Sequence[RowCall | None], index: int, key: tuple) -> bool:
    call = calls[index] if index < len(calls) else None
    return call is not None and call.key() == key


def _size(run: Run) -> int:
    return run.period * run.repeats


@dataclass
class Columns:
    """How a run's arguments reach its loop: the same buffer in every repeat (an argument of
    the segment function) or a column of the offsets table (an arena view per repeat)."""

    invariant: list[str]  # step-scope expressions, one parameter each
    invariant_args: list[RowArg]  # the first use of each
    varying: list[tuple[int, ...]]  # per table column: its value in each repeat
    where: dict[tuple[int, int], tuple[str, int]]  # (call in period, arg) -> ("w"|"c", index)
    arena_of: list[str]  # per column: its arena
    arenas: list[str]  # arenas the loop reads


def segment_columns(calls: Sequence[RowCall | None], run: Run) -> Columns | None:
    """Sort a run's arguments into invariant ones and table columns; None when an argument
    changes between repeats but is not an arena view, or an invariant one is written."""
    columns = Columns([], [], [], {}, [], [])
    in_run = [c for c in calls[run.start:run.start + _size(run)] if c is not None]
    if len(in_run) != _size(run):
        return None
    for j in range(run.period):
        for a in range(len(in_run[j].args)):
            uses = [in_run[r * run.period + j].args[a] for r in range(run.repeats)]
            if all(u.value == uses[0].value and u.text == uses[0].text for u in uses):
                if uses[0].written:
                    return None
                if uses[0].text not in columns.invariant:
                    columns.invariant.append(uses[0].text)
                    columns.invariant_args.append(uses[0])
                columns.where[(j, a)] = ("w", columns.invariant.index(uses[0].text))
                continue
            arenas = {u.arena for u in uses}
            arena = arenas.pop()
            if arena is None or arenas:
                return None
            values = tuple(u.value for u in uses)
            if values not in columns.varying:
                columns.varying.append(values)
                columns.arena_of.append(arena)
            columns.where[(j, a)] = ("c", columns.varying.index(values))
    columns.arenas = sorted(set(columns.arena_of))
    return columns


def segment_source(name: str, calls: Sequence[RowCall], run: Run, columns: Columns,
                   decorator: str) -> tuple[str, str]:
    """``<name>(lanes, safe, who, function, block, …)``: the caller's (``who`` 0) or the
    helper's (``who``: the task it claimed) share of the rows of every repeat of ``run``; and
    ``<name>_native(block, who)``, the same as a C function of an argument block
    (``segment_entry``), which the helper calls without the GIL. The second text compiles
    when it runs (a cfunc): the module places it after everything it calls."""
    period = calls[run.start:run.start + run.period]
    rows = period[0].rows
    half = rows // 2
    params = [*columns.arenas, "table", *[f"w{k}" for k in range(len(columns.invariant))]]
    # One function, one copy of the loop: the hand-over (rows_first/rows_next) hands out ranges
    # of rows. (A loop function called from several places compiled ~3x slower.)
    lines = [f"# {run.repeats} repeats of: " + "; ".join(c.comment for c in period),
             decorator[:-1] + ', inline="always")',  # compiled inside the cfunc only
             f"def {name}(lanes, safe, who, function, block, {', '.join(params)}):",
             f'    """Rows 0:{half} of {run.repeats} repeats of {run.period} call(s) here, '
             f'{half}:{rows} in the',
             '    lane helper when it claims them."""',
             f"    lo, hi, task = rows_first(lanes, safe, who, {half}, {rows}, function, block)",
             "    while lo < hi:",
             "        for r in range(table.shape[0]):",
             "            c = table[r]"]
    made: dict[tuple[str, int, str], str] = {}
    for j, call in enumerate(period):
        texts = []
        for a, arg in enumerate(call.args):
            source, index = columns.where[(j, a)]
            key = (source, index, arg.role)
            if key not in made:
                made[key] = f"b{len(made)}"
                lines.append(f"            {made[key]} = {_view(arg, source, index, columns)}")
            texts.append(made[key] + (".T" if arg.transposed else ""))
        inner = int(np.prod(call.args[0].shape[1:], dtype=np.int64)) if call.args else 1
        lines.append("            " + call.template.format(*texts, n=f"(hi - lo) * {inner}")
                     + (f"  # {call.comment}" if call.comment else ""))
    lines.append(f"        lo, hi = rows_next(lanes, task, who, hi, {half}, {rows})")
    # The argument block (segment_entry; its layout: protocol.SegmentBlock): the segment's
    # arrays in the order of its parameters (arenas, table, invariant arrays).
    block = SegmentBlock(arrays=len(params), arenas=len(columns.arenas))
    arrays = []
    for k, arena in enumerate(columns.arenas):
        arrays.append(f"carray(address_pointer(b[{block.address(k)}], "
                      f"np.{arena.removeprefix('arena_')}), (b[{block.length(k)}],))")
    shape = block.table_shape
    arrays.append(f"carray(address_pointer(b[{block.address(block.table)}], np.int64), "
                  f"(b[{shape}], b[{shape + 1}]))")
    for w, arg in enumerate(columns.invariant_args):
        dims = ", ".join(str(d) for d in arg.view_shape) + ("," if len(arg.view_shape) == 1
                                                           else "")
        arrays.append(f"carray(address_pointer(b[{block.address(block.table + 1 + w)}], "
                      f"np.{arg.dtype}), ({dims}))")
    native = [
        "if not numba_config.DISABLE_JIT:",
        '    @cfunc(types.void(types.int64, types.int64), cache=True, error_model="numpy")',
        f"    def {name}_native(address, who):",
        f'        """{name} on the arrays an argument block describes (segment_entry)."""',
        f"        b = carray(address_pointer(address, np.int64), ({block.size},))",
        f"        lanes = carray(address_pointer(b[{BLOCK_LANES}], np.int64), ({ROWS_SHAPE}))",
        f"        {name}(lanes, b[{BLOCK_SAFE}], who, b[{BLOCK_FUNCTION}], address,",
        *[f"              {text}," for text in arrays[:-1]],
        f"              {arrays[-1]})",
        "else:",
        f"    {name}_native = None",
    ]
    return "\n".join(lines), "\n".join(native)


def segment_entry(native: Any, python: Any, arrays: Sequence[np.ndarray | None], safe: bool,
                  arenas: int) -> Any:
    """``enter(lanes, *late)``, the driver's call of a row segment: ``arrays`` are the
    segment's arrays (arenas, table, invariant arrays), ``None`` where the step passes one
    (``late``: its inputs and parameters). Compiled, it writes the argument block once and
    only the late addresses per step, then calls ``native`` (the GIL is released during the
    call); with ``NUMBA_DISABLE_JIT`` it calls the Python ``python`` on one thread."""
    late_positions = [k for k, array in enumerate(arrays) if array is None]
    if native is None:
        def enter_python(lanes: np.ndarray, *late: np.ndarray) -> None:
            given = list(arrays)
            for k, array in zip(late_positions, late, strict=True):
                given[k] = array
            python(lanes, 0, 0, 0, 0, *given)
        return enter_python
    layout = SegmentBlock(arrays=len(arrays), arenas=arenas)
    block = np.zeros(layout.size, dtype=np.int64)
    block[BLOCK_SAFE] = int(safe)
    block[BLOCK_FUNCTION] = native.address
    block[BLOCK_SELF] = block.ctypes.data
    for k, array in enumerate(arrays):
        if array is not None:
            block[layout.address(k)] = array.ctypes.data
    known = [array for array in arrays[:layout.table + 1] if array is not None]
    if len(known) != layout.table + 1:
        raise ValueError("a row segment's arenas and table are bound at compile time")
    for k in range(arenas):
        block[layout.length(k)] = known[k].size
    block[layout.table_shape:layout.table_shape + 2] = known[layout.table].shape
    slots = [layout.address(k) for k in late_positions]
    call, address = native.ctypes, int(block[BLOCK_SELF])

    def enter(lanes: np.ndarray, *late: np.ndarray) -> None:
        block[BLOCK_LANES] = lanes.ctypes.data
        for slot, array in zip(slots, late, strict=True):
            block[slot] = array.ctypes.data
        call(address, 0)

    enter.arrays = list(arrays)  # type: ignore[attr-defined]  # the block points into them
    return enter


def _view(arg: RowArg, source: str, index: int, columns: Columns) -> str:
    """The loop's expression for one argument in repeat ``r`` (offsets in ``c``)."""
    size = int(np.prod(arg.shape, dtype=np.int64))
    inner = size // arg.shape[0] if arg.shape else 1
    rest = "".join(f", {d}" for d in arg.shape[1:])
    if source == "w":
        whole = f"w{index}"
        if arg.role == "rows":
            return f"{whole}[lo:hi]"
        if arg.role == "flat_rows":
            return f"{whole}.reshape({size})[lo * {inner}:hi * {inner}]"
        return whole
    arena = columns.arena_of[index]
    if arg.role == "whole":
        shape = ", ".join(str(d) for d in arg.shape) + ("," if len(arg.shape) == 1 else "")
        return f"{arena}[c[{index}]:c[{index}] + {size}].reshape(({shape}))"
    flat = f"{arena}[c[{index}] + lo * {inner}:c[{index}] + hi * {inner}]"
    if arg.role == "flat_rows" or len(arg.shape) == 1:
        return flat
    return f"{flat}.reshape((hi - lo{rest}))"


def rows_table(arenas: Sequence[np.ndarray], views: Sequence[Sequence[np.ndarray]]
               ) -> np.ndarray:
    """Offsets (in elements) of each view into its column's arena: one row per repeat.

    >>> arena = np.zeros(8, np.float32)
    >>> rows_table([arena], [[arena[2:4]], [arena[6:8]]]).tolist()
    [[2], [6]]
    """
    table = np.zeros((len(views), len(arenas)), dtype=np.int64)
    for r, row in enumerate(views):
        for k, (arena, view) in enumerate(zip(arenas, row, strict=True)):
            table[r, k] = (view.ctypes.data - arena.ctypes.data) // arena.itemsize
    return table


def rows_safe(spans: Sequence[tuple[np.ndarray, bool, bool]]) -> bool:
    """Whether two threads may each run their own rows of a run: ``spans`` holds every arena
    buffer the run touches, as (view, used by rows only, written). Every buffer used by rows
    has the run's row count, so two with the same start and size split at the same byte.
    Buffers that share memory with a written one must share it that way.

    >>> arena = np.zeros(64, np.float32)
    >>> a, b = arena[:32].reshape(8, 4), arena[:64].reshape(8, 8)
    >>> rows_safe([(a, True, True), (a, True, False)])
    True
    >>> rows_safe([(a, True, True), (b, True, False)])  # rows of 16 bytes against 32
    False
    """
    items = sorted(((v.ctypes.data, v.ctypes.data + v.nbytes, rows, written)
                    for v, rows, written in spans), key=lambda s: s[:2])
    for i, (start, stop, rows, written) in enumerate(items):
        if written and not rows:
            return False
        for other_start, other_stop, other_rows, other_written in items[i + 1:]:
            if other_start >= stop:
                break
            if (written or other_written) and not (
                    rows and other_rows and (start, stop) == (other_start, other_stop)):
                return False
    return True
