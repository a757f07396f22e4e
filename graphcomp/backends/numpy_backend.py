"""The numpy reference backend: the oracle every other backend is tested against.

It walks the program's schedule and calls each op's numpy implementation. No fusion, no
cleverness: clear enough to trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from graphcomp.errors import InputError
from graphcomp.ops import get_op
from graphcomp.ops.indexing import INDEX_OPERAND, index_error_message
from graphcomp.runtime.binding import resolve_shape
from graphcomp.runtime.program import Program


@dataclass
class NumpyExecutable:
    """Interprets a program with numpy."""

    program: Program
    source: str | None = None
    compile_seconds: float = 0.0
    cache_hit: bool = False

    def run(
        self, inputs: Sequence[np.ndarray], binding: dict[str, int]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        values = evaluate(self.program, inputs, binding)
        outputs = [values[n.id] for n in self.program.outputs]
        updates = [values[v.id] for _, v in self.program.updates]
        return outputs, updates


def evaluate(
    program: Program, inputs: Sequence[np.ndarray], binding: dict[str, int]
) -> dict[int, np.ndarray]:
    """Value of every scheduled node, by node id."""
    values: dict[int, np.ndarray] = {n.id: a for n, a in zip(program.inputs, inputs, strict=True)}
    storage = program.graph.parameter_values
    with np.errstate(all="ignore"):
        for node in program.schedule:
            if node.id in values:
                continue
            if node.op == "parameter":
                values[node.id] = storage[node.id]
            elif node.op == "constant":
                values[node.id] = node.attrs["value"]
            else:
                shape = resolve_shape(node, binding, program.dims)
                args = [values[i.id] for i in node.inputs]
                try:
                    result = get_op(node.op).numpy_impl(args, dict(node.attrs), shape)
                except InputError as exc:  # bad data: say which node (and placeholder) met it
                    message = (index_error_message(node, str(exc)) if node.op in INDEX_OPERAND
                               else f"{node.describe()}: {exc}")
                    raise InputError(message) from None
                result = np.asarray(result, dtype=node.dtype)
                if result.shape != shape:
                    raise AssertionError(
                        f"numpy backend: {node.describe()} produced shape {result.shape}, "
                        f"its shape rule says {shape}"
                    )
                values[node.id] = result
    return values


def compile_numpy(program: Program, **options: object) -> NumpyExecutable:
    """The numpy backend needs no compilation: it interprets ``program``."""
    return NumpyExecutable(program)
