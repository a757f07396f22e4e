"""The memory plan: which buffer ("slot") holds each materialised value.

Liveness runs over the kernel order. A value's slot is freed after the last kernel that reads
it (through aliases and views too) and reused by a later value of the same dtype and element
count. Outputs and new parameter values live to the end. Slot sizes are symbolic; the runtime
evaluates them once per binding of the symbols and carves every slot out of one flat "arena"
array per dtype.

A concatenation along the first axis whose parts are all buffers of their own (of known size,
made by kernels, not outputs) is *placed*: its buffer is taken when its first part is made,
each part is written straight into its block of it (a child slot at a fixed offset), and the
concatenation itself copies nothing (``MemoryPlan.placed``). The stacks that batched products
read (``batching.py``) cost no copy then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from graphcomp.ops.sparse_updates import SPARSE_UPDATE_OPS
from graphcomp.passes.fusion import FusionPlan, reads_of
from graphcomp.passes.lowered import LoweredProgram, size_key


@dataclass(frozen=True)
class Slot:
    """A reusable buffer: a dtype and a symbolic element count; or, with ``parent`` set, the
    block of another slot that starts ``offset`` elements into it (a placed part)."""

    index: int
    dtype: np.dtype
    size: tuple[int, tuple[str, ...]]
    parent: int | None = None
    offset: int = 0


@dataclass
class MemoryPlan:
    """Slot of every arena value, and the base value each alias (reshape) shares."""

    slots: list[Slot]
    slot_of: dict[int, int]  # value id -> slot index
    alias_of: dict[int, int]  # reshape value id -> the value whose buffer it views
    in_place: dict[int, int] = field(default_factory=dict)  # new value -> parameter it overwrites
    placed: set[int] = field(default_factory=set)  # concatenations whose parts are in place

    def base(self, value: int) -> int:
        """Follow aliases to the value that owns the buffer."""
        while value in self.alias_of:
            value = self.alias_of[value]
        return value


def kernel_reads(lp: LoweredProgram, plan: FusionPlan, kernel_index: int) -> list[int]:
    """Materialised values a kernel reads (views and inlined values followed to buffers)."""
    return reads_of(lp, plan.kernels[kernel_index], plan.transposed_views)


def plan_memory(lp: LoweredProgram, plan: FusionPlan) -> MemoryPlan:
    """Assign slots by liveness over ``plan.kernels`` (see the module docstring).

    >>> # memory = plan_memory(lp, plan_kernels(lp)); len(memory.slots)
    """
    alias_of = {k.root: lp.ops[k.root].inputs[0] for k in plan.kernels if k.kind == "alias"}

    def base(value: int) -> int:
        while value in alias_of:
            value = alias_of[value]
        return value

    reads = [kernel_reads(lp, plan, index) for index in range(len(plan.kernels))]
    in_place = _in_place_updates(lp, plan, reads, base)
    alias_of.update(in_place)
    owners = {v for k in plan.kernels if k.kind != "alias" for v in k.results
              if v not in in_place}
    last_use: dict[int, int] = {}
    for index in range(len(plan.kernels)):
        for source in reads[index]:
            last_use[base(source)] = index
    end = len(plan.kernels)
    for value in lp.roots:
        last_use[base(value)] = end
    part_of = _placed_parts(lp, plan, owners)
    for stack in {stack for stack, _ in part_of.values()}:
        parts = [v for v, (s, _) in part_of.items() if s == stack]
        last_use[stack] = max([last_use.get(stack, -1)] + [last_use.get(v, -1) for v in parts])

    slots: list[Slot] = []
    slot_of: dict[int, int] = {}
    free: dict[tuple, list[int]] = {}
    live: list[int] = []
    for index, kernel in enumerate(plan.kernels):
        # Release buffers whose last reader ran before this kernel.
        for value in [v for v in live if last_use.get(v, -1) < index]:
            live.remove(value)
            slot = slots[slot_of[value]]
            free.setdefault((slot.dtype.str, slot.size), []).append(slot.index)
        for value in [] if kernel.kind == "alias" else kernel.results:
            if value not in owners or value in slot_of:  # a placed stack has its slot already
                continue
            part = part_of.get(value)  # (stack, offset) when value is a part of a placed stack
            target = value if part is None else part[0]
            if target not in slot_of:
                op = lp.ops[target]
                key = (op.dtype.str, size_key(op.shape))
                if free.get(key):
                    slot_of[target] = free[key].pop()
                else:
                    slot_of[target] = len(slots)
                    slots.append(Slot(len(slots), op.dtype, size_key(op.shape)))
                live.append(target)
            if part is not None:  # the part is a block of its stack's buffer, never freed alone
                stack, offset = part
                op = lp.ops[value]
                slot_of[value] = len(slots)
                slots.append(Slot(len(slots), op.dtype, size_key(op.shape),
                                  parent=slot_of[stack], offset=offset))
    placed = {stack for stack, _ in part_of.values()}
    return MemoryPlan(slots, slot_of, alias_of, in_place, placed)


def _placed_parts(lp: LoweredProgram, plan: FusionPlan, owners: set[int]
                  ) -> dict[int, tuple[int, int]]:
    """part value -> (concatenation, element offset) for every concatenation placed (see the
    module docstring). A part belongs to at most one placed concatenation: the first."""
    roots = set(lp.roots)
    part_of: dict[int, tuple[int, int]] = {}
    for kernel in plan.kernels:
        op = lp.ops[kernel.root]
        if kernel.kind != "concatenate" or op.attrs.get("axis") != 0 or op.id in roots:
            continue
        parts = list(op.inputs)
        if len(set(parts)) != len(parts) or not all(
            v in owners and v not in roots and v not in part_of
            and all(isinstance(d, int) for d in lp.ops[v].shape) for v in parts
        ):
            continue
        offset = 0
        for v in parts:
            part_of[v] = (op.id, offset)
            offset += size_key(lp.ops[v].shape)[0]
    return part_of


def _in_place_updates(lp: LoweredProgram, plan: FusionPlan, reads: list[list[int]],
                      base: Callable[[int], int]) -> dict[int, int]:
    """New parameter values that a kernel can write straight into the parameter's storage.

    Safe when the kernel reads the parameter only at the element (a row-wise update: the row)
    it writes, no later kernel
    reads the parameter's old value, and nothing else (another update, an output) needs it.
    """
    targets: dict[int, list[int]] = {}
    for param, value in lp.updates:
        targets.setdefault(value, []).append(param)
    bases = [base(v) for _, v in lp.updates] + [base(v) for v in lp.outputs]
    result: dict[int, int] = {}
    for index, kernel in enumerate(plan.kernels):
        if kernel.kind == "matmul_acc":
            # BLAS accumulates into its third operand: that must be the parameter, and the
            # product's own operands must not read it while it is being written.
            a, b, c = lp.ops[kernel.root].inputs
            if targets.get(kernel.root) != [c] or _product_reads(lp, plan, a, b, c, base):
                continue
        elif kernel.kind in SPARSE_UPDATE_OPS:
            # A row-wise update reads the table only at the rows it writes; no other operand
            # may share the table's buffer.
            table, *others = lp.ops[kernel.root].inputs
            if targets.get(kernel.root) != [table] or any(base(v) == base(table)
                                                           for v in others):
                continue
        elif kernel.kind != "loop":
            # Only a loop kernel (every flat elementwise kernel is one) reads each buffer at
            # the element it writes; a nested elementwise kernel may read it elsewhere.
            continue
        for value in kernel.results:
            if len(targets.get(value, [])) != 1:
                continue
            param = targets[value][0]
            if value in lp.outputs or bases.count(param):
                continue
            if any(base(r) == param for later in reads[index + 1:] for r in later):
                continue
            if lp.ops[value].shape != lp.ops[param].shape:
                continue
            result[value] = param
    return result


def _product_reads(lp: LoweredProgram, plan: FusionPlan, a: int, b: int, c: int,
                   base: Callable[[int], int]) -> bool:
    """True when a product's operand (through transposed views and aliases) is ``c``."""
    for operand in (a, b):
        while operand in plan.transposed_views:
            operand = lp.ops[operand].inputs[0]
        if base(operand) == base(c):
            return True
    return False
