"""Fusion: decide which values get a buffer and which are computed inside another kernel.

A *kernel* computes one materialised value (its ``root``). Elementwise ops and the index-only
views (``transpose``, ``broadcast_to``, ``slice``) are inlined into the kernel of their single
consumer when that consumer is elementwise or a reduction over them; a fused chain then runs as
one loop nest, reading only materialised buffers. ``reshape`` never copies: it aliases its
input's buffer. Matmul reads a transposed 2-D buffer through a free ``.T`` view.

Then *loop merging*: kernels that run one flat loop over the same shape (elementwise kernels
reading every buffer at their own index, and full float sums) are merged into one ``loop``
kernel when nothing outside needs a member's result before the last member runs. The merged
loop reads each input once and keeps intermediate results in registers: a training step's
forward values, gradients and parameter updates of an elementwise model become one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeGuard, get_args

from graphcomp.errors import CompileError
from graphcomp.ops import get_op
from graphcomp.passes.lowered import BACKEND_OPS, LOp, LoweredProgram, size_key

VIEW_OPS = frozenset({"transpose", "broadcast_to", "slice"})
FUSING_REDUCTIONS = frozenset({"reduce_sum", "reduce_prod", "reduce_max", "argmax"})
SCALAR_LEAVES = frozenset({"dim_size"})
IDENTITY_OPS = frozenset({"stop_gradient"})
PRODUCTS = frozenset({"matmul", "matmul_acc"})  # BLAS calls: read a transposed buffer as .T
MAX_KERNEL_READS = 8  # buffers one fused kernel may read (see _limit_reads)
MAX_LOOP_MEMBERS = 24  # kernels one merged loop may hold
MAX_LOOP_SUMS = 4  # full sums one merged loop may compute (each needs a scratch row)
# Elementwise ops cheap enough to recompute in every consumer (on source operands only).
CHEAP_OPS = frozenset({"add", "subtract", "multiply", "negative", "abs", "cast", "maximum",
                       "minimum", "stop_gradient"})  # the value of the input, unchanged


# Ops that are never fused: each runs as a kernel of its own, whose kind is the op's name.
SoloKernelOp = Literal[
    "matmul", "matmul_acc", "concatenate", "pad", "take", "scatter_add", "check_index",
    "cumsum", "cumprod", "sort", "argsort", "permute",
    "random_uniform", "random_normal", "random_randint",
    "conv2d", "conv2d_input_grad", "conv2d_filter_grad", "max_pool2d", "max_pool2d_grad",
    "max_pool2d_gather", "avg_pool2d", "avg_pool2d_grad", "im2col", "col2im",
    "sparse_sgd", "sparse_moment", "sparse_adam_step",
]
SOLO_KERNEL_OPS: frozenset[str] = frozenset(get_args(SoloKernelOp))
# A fused elementwise chain, a fused reduction, a view of another buffer (no code), merged
# flat loops, or one of the solo ops.
KernelKind = Literal["elementwise", "reduction", "alias", "loop", SoloKernelOp]
# How a flat kernel joins a merged loop: element by element, or as a full sum.
LoopRole = Literal["map", "sum"]


@dataclass
class Kernel:
    """One materialised value and the values computed inline while producing it.

    A ``loop`` kernel merges flat kernels (``members``) into one loop: ``outputs`` are the
    members' results that get a buffer, ``inlined`` every other value it computes.
    """

    root: int
    kind: KernelKind
    inlined: list[int] = field(default_factory=list)  # schedule order
    outputs: list[int] = field(default_factory=list)  # loop kernels: values written to buffers
    members: list[Kernel] = field(default_factory=list)  # loop kernels: merged kernels, in order

    @property
    def results(self) -> list[int]:
        """Values this kernel writes to buffers."""
        return self.outputs if self.kind == "loop" else [self.root]

    @property
    def computed(self) -> list[int]:
        """Every value this kernel computes (written or not)."""
        if self.kind == "loop":
            return [*self.inlined, *[m.root for m in self.members]]
        return [*self.inlined, self.root]


@dataclass
class FusionPlan:
    """Kernels in schedule order, and how each value is reached."""

    kernels: list[Kernel]
    materialised: set[int]  # values with a buffer of their own (or a source/alias)
    inlined: set[int]  # values recomputed inside their consumer's loop nest
    transposed_views: set[int]  # 2-D transposes read by matmul as ``base.T``


def _is_elementwise(op_name: str) -> bool:
    if op_name in BACKEND_OPS:  # made by passes, not registry ops
        return op_name == "copy"
    return get_op(op_name).kind == "elementwise" or op_name in SCALAR_LEAVES


# A transposed matrix that this many products read as their right operand gets a contiguous
# copy instead of a ``.T`` view: OpenBLAS's small-matrix path is slower with a transposed
# right operand (32x128 @ (128x128).T: 12.9 us against 10.0 us), and the copy is made once.
COPY_TRANSPOSE_MIN_USES = 4


def _worth_copying(lp: LoweredProgram, value: int, users: list[int]) -> bool:
    return sum(1 for u in users if lp.ops[u].op in PRODUCTS
               and lp.ops[u].inputs[1] == value) >= COPY_TRANSPOSE_MIN_USES


def plan_kernels(lp: LoweredProgram) -> FusionPlan:
    """Group the program's values into kernels (see the module docstring).

    >>> # plan = plan_kernels(lp); [k.kind for k in plan.kernels]
    """
    consumers = lp.consumers()
    roots = set(lp.roots)
    inlined: set[int] = set()
    transposed: set[int] = set()

    def fuses_into(value_id: int, consumer_id: int) -> bool:
        """Can ``value_id`` be computed inside ``consumer_id``'s loop nest?"""
        consumer = lp.ops[consumer_id]
        if consumer.op in FUSING_REDUCTIONS:
            return True
        if _is_elementwise(consumer.op):
            # No broadcast expansion: each element of the value is computed once.
            return size_key(lp.ops[value_id].shape) == size_key(consumer.shape)
        if consumer.op in ("transpose", "slice"):
            # Through a view only if that view feeds exactly one kernel.
            return (consumer_id in inlined and consumer_id not in transposed
                    and len(consumers[consumer_id]) == 1)
        return False

    # Reverse schedule order: a value's consumers are decided before the value itself.
    for op in reversed(list(lp.ops.values())):
        if op.is_source or op.id in roots:
            continue
        users = consumers[op.id]
        if op.op in SCALAR_LEAVES:
            inlined.add(op.id)
        elif op.op in VIEW_OPS:
            if op.op == "transpose" and op.ndim == 2 and all(
                lp.ops[u].op in PRODUCTS or fuses_into(op.id, u) for u in users
            ) and any(lp.ops[u].op in PRODUCTS for u in users) and not _worth_copying(lp, op.id,
                                                                                     users):
                source = lp.ops[op.inputs[0]]
                if source.op not in VIEW_OPS:
                    transposed.add(op.id)
                    inlined.add(op.id)
                    continue
            if users and all(_fusing_consumer(lp, u) for u in users):
                inlined.add(op.id)
        elif _is_elementwise(op.op):
            if len(users) == 1 and fuses_into(op.id, users[0]):
                inlined.add(op.id)
            elif (op.op in CHEAP_OPS and users and all(fuses_into(op.id, u) for u in users)
                  and all(lp.ops[i].is_source for i in op.inputs)):
                # Recomputing x * w in each consumer costs less than storing and reloading it.
                inlined.add(op.id)
    _limit_reads(lp, inlined, transposed)
    # A transposed view whose source got inlined cannot be a ``.T`` of a buffer.
    for value in list(transposed):
        if lp.ops[value].inputs[0] in inlined:
            transposed.discard(value)
            inlined.discard(value)

    kernels: list[Kernel] = []
    materialised: set[int] = set()
    for op in lp.ops.values():
        if op.id in inlined:
            continue
        materialised.add(op.id)
        if op.is_source:
            continue
        kind = _kind(op)
        if op.op in IDENTITY_OPS and lp.ops[op.inputs[0]].id not in inlined:
            kind = "alias"  # same buffer, no copy
        elif op.op == "slice" and op.inputs[0] not in inlined and contiguous_slice(lp, op.id):
            kind = "alias"  # a contiguous block of the input's buffer
        kernels.append(Kernel(op.id, kind, _members(lp, op.id, inlined) if kind != "alias" else []))
    kernels = merge_loops(lp, kernels, transposed)
    for kernel in kernels:
        for value in kernel.computed:
            if value not in kernel.results:
                materialised.discard(value)
                inlined.add(value)
    return FusionPlan(kernels, materialised, inlined, transposed)


def reads_of(lp: LoweredProgram, kernel: Kernel, transposed: set[int]) -> list[int]:
    """Materialised values a kernel reads (transposed views followed to their buffers)."""
    members = set(kernel.computed)
    reads: list[int] = []
    for value in kernel.computed:
        for source in lp.ops[value].inputs:
            if source in members:
                continue
            while source in transposed:
                source = lp.ops[source].inputs[0]
            if source not in reads:
                reads.append(source)
    return reads


def loop_role(lp: LoweredProgram, kernel: Kernel, transposed: set[int]) -> LoopRole | None:
    """"map" for an elementwise kernel reading every buffer at its own index, "sum" for a full
    float sum over such an expression (or over a buffer); None for kernels a loop cannot hold."""
    if kernel.kind == "elementwise":
        return "map" if reads_at_own_index(lp, kernel) else None
    root = lp.ops[kernel.root]
    if kernel.kind != "reduction" or root.op != "reduce_sum":
        return None
    source = lp.ops[root.inputs[0]]
    if source.dtype.kind != "f" or len(root.attrs["axes"]) != source.ndim:
        return None
    if source.id not in kernel.inlined:
        return None if source.id in transposed else "sum"
    probe = Kernel(source.id, "elementwise", [i for i in kernel.inlined if i != source.id])
    return "sum" if reads_at_own_index(lp, probe) else None


def loop_shape(lp: LoweredProgram, kernel: Kernel) -> tuple:
    """The shape a flat loop runs over: the root's, or a sum's operand's."""
    root = lp.ops[kernel.root]
    if root.op == "reduce_sum":
        return lp.ops[root.inputs[0]].shape
    return root.shape


@dataclass
class _OpenLoop:
    shape: tuple
    kernels: list[Kernel] = field(default_factory=list)
    roots: set[int] = field(default_factory=set)
    sums: set[int] = field(default_factory=set)
    reads: set[int] = field(default_factory=set)  # values from outside the loop

    def accepts(self, reads: set[int], role: LoopRole) -> bool:
        if reads & self.sums:  # a sum is known only when the loop has finished
            return False
        if role == "sum" and len(self.sums) >= MAX_LOOP_SUMS:
            return False
        outside = (self.reads | reads) - self.roots
        return len(self.kernels) < MAX_LOOP_MEMBERS and len(outside) <= MAX_KERNEL_READS

    def add(self, kernel: Kernel, reads: set[int], role: LoopRole) -> None:
        self.kernels.append(kernel)
        self.roots.add(kernel.root)
        if role == "sum":
            self.sums.add(kernel.root)
        self.reads = (self.reads | reads) - self.roots


def merge_loops(lp: LoweredProgram, kernels: list[Kernel], transposed: set[int]) -> list[Kernel]:
    """Merge flat kernels over the same shape into ``loop`` kernels (see the module docstring).

    A merged loop runs where its last member stood. So a loop stays open for new members only
    until a kernel outside it reads one of its results; a member may read an earlier member's
    result at its own index (a register in the loop), but never a sum's (known only at the end).
    """
    order: list[Kernel | _OpenLoop] = []
    open_loops: list[_OpenLoop] = []
    for kernel in kernels:
        reads = set(reads_of(lp, kernel, transposed))
        role = loop_role(lp, kernel, transposed)
        target = None
        if role is not None:
            shape = loop_shape(lp, kernel)
            target = next((loop for loop in reversed(open_loops)
                           if loop.shape == shape and loop.accepts(reads, role)), None)
        for loop in [loop for loop in open_loops if loop is not target and reads & loop.roots]:
            open_loops.remove(loop)  # its results are needed now: it runs before this kernel
        if role is None:
            order.append(kernel)
            continue
        if target is None:
            target = _OpenLoop(shape)
            open_loops.append(target)
        else:
            order.remove(target)
        target.add(kernel, reads, role)
        order.append(target)

    consumers = lp.consumers()
    roots = set(lp.roots)
    merged: list[Kernel] = []
    for item in order:
        if isinstance(item, Kernel):
            merged.append(item)
            continue
        inner = {v for k in item.kernels for v in k.inlined}
        computed = inner | item.roots
        outputs = [k.root for k in item.kernels
                   if k.root in roots or any(c not in computed for c in consumers[k.root])]
        merged.append(Kernel(item.kernels[-1].root, "loop", [v for v in lp.ops if v in inner],
                             outputs, list(item.kernels)))
    return merged


def _limit_reads(lp: LoweredProgram, inlined: set[int], transposed: set[int]) -> None:
    """Materialise inlined elementwise values whose fused subtree reads too many buffers.

    A gradient summed over 128 unrolled steps is one chain of 128 adds; fused whole, it is one
    kernel with 129 array arguments, slow to compile and too many pointers for LLVM to check
    for overlap (so no vectorisation). Cut it every MAX_KERNEL_READS buffers.
    """
    leaves: dict[int, set[int]] = {}
    for op in lp.ops.values():
        found: set[int] = set()
        for source in op.inputs:
            if source in inlined and source not in transposed:
                found |= leaves[source]
            else:
                found.add(source)
        if op.id in inlined and len(found) > MAX_KERNEL_READS and _is_elementwise(op.op) \
                and op.op not in SCALAR_LEAVES:
            inlined.discard(op.id)
        leaves[op.id] = found


def reads_at_own_index(lp: LoweredProgram, kernel: Kernel) -> bool:
    """True when every buffer an elementwise kernel reads is read at the element it writes
    (same shape as the root) or is a single element: the kernel may then write over an input."""
    shape = lp.ops[kernel.root].shape
    inlined = set(kernel.inlined)
    for value in [kernel.root, *kernel.inlined]:
        op = lp.ops[value]
        if op.op in VIEW_OPS and not _single_element_broadcast(lp, value):
            return False
        if value != kernel.root and op.shape != shape:
            return False
        for source in op.inputs:
            src = lp.ops[source]
            if source not in inlined and src.shape != shape and any(d != 1 for d in src.shape):
                return False
    return True


def _single_element_broadcast(lp: LoweredProgram, value: int) -> bool:
    op = lp.ops[value]
    return op.op == "broadcast_to" and all(d == 1 for d in lp.ops[op.inputs[0]].shape)


def contiguous_slice(lp: LoweredProgram, value: int) -> bool:
    """True when a slice selects one contiguous block of a C-ordered input (``x[t]``, say):
    single indices on leading axes, then one unit-step range, then full axes."""
    op = lp.ops[value]
    source = lp.ops[op.inputs[0]]
    stage = "single"  # leading axes with one index each
    for d, start, stop, step, n in zip(source.shape, op.attrs["starts"], op.attrs["stops"],
                                       op.attrs["steps"], op.shape, strict=True):
        full = start == 0 and stop == d and step == 1
        if stage == "single" and n == 1:
            continue
        if stage == "single":
            stage = "full"
            if step == 1 or n == 1:
                continue
            return False
        if not full:
            return False
    return True


def slice_offset(lp: LoweredProgram, value: int) -> list[tuple[int, tuple]]:
    """The flat start of a contiguous slice: (start, shape of the axes after it) terms."""
    op = lp.ops[value]
    shape = lp.ops[op.inputs[0]].shape
    return [(start, tuple(shape[k + 1:])) for k, start in enumerate(op.attrs["starts"]) if start]


def _fusing_consumer(lp: LoweredProgram, consumer_id: int) -> bool:
    consumer = lp.ops[consumer_id]
    return _is_elementwise(consumer.op) or consumer.op in FUSING_REDUCTIONS or (
        consumer.op in VIEW_OPS
    )


def _kind(op: LOp) -> KernelKind:
    if _is_elementwise(op.op) or op.op in VIEW_OPS:
        return "elementwise"
    if op.op == "reshape":
        return "alias"
    if op.op in FUSING_REDUCTIONS:
        return "reduction"
    if _is_solo(op.op):
        return op.op
    raise CompileError(f"no kernel kind computes {op.describe()} ({op.op}): a new op that is "
                       "not elementwise needs an entry in fusion.SoloKernelOp")


def _is_solo(op_name: str) -> TypeGuard[SoloKernelOp]:
    return op_name in SOLO_KERNEL_OPS


def _members(lp: LoweredProgram, root: int, inlined: set[int]) -> list[int]:
    found: set[int] = set()
    stack = list(lp.ops[root].inputs)
    while stack:
        value = stack.pop()
        if value in inlined and value not in found:
            found.add(value)
            stack.extend(lp.ops[value].inputs)
    return [i for i in lp.ops if i in found]
