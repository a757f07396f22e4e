"""Lower a ``Program`` into the backend IR (``LoweredProgram``), leaving the user's graph alone."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphcomp.ir import dim_factors
from graphcomp.passes.lowered import LOp, LoweredProgram
from graphcomp.runtime.program import Program


def lower(program: Program) -> LoweredProgram:
    """Copy the program's schedule into ``LOp``s with canonical shapes.

    ``dim_size`` loses its input (it reads only the shape, resolved here), so passes may drop
    a value that was needed only for its size.

    >>> # lp = lower(build_program([x], [y]))
    """
    dims = program.dims
    ops: dict[int, LOp] = {}
    symbols: list[str] = []
    scheduled = {node.id for node in program.schedule}
    # Inputs nothing reads still belong to the interface: they come first.
    unused = [node for node in program.inputs if node.id not in scheduled]
    # So are updated parameters nothing reads (their storage receives the new value).
    unused += [p for p, _ in program.updates if p.id not in scheduled]
    for node in unused + list(program.schedule):
        shape = dims.resolve_shape(node.shape)
        attrs: dict[str, Any] = dict(node.attrs)
        inputs = [i.id for i in node.inputs]
        if node.op == "dim_size":
            source_shape = dims.resolve_shape(node.inputs[0].shape)
            attrs["dims"] = tuple(source_shape[axis] for axis in attrs["axes"])
            inputs = []
        elif node.op == "constant":
            attrs["value"] = np.asarray(attrs["value"], dtype=node.dtype)
        elif node.op == "parameter":
            attrs["storage_id"] = node.id
        for key in ("shape", "stops"):
            if key in attrs:
                attrs[key] = tuple(dims.resolve(d) for d in attrs[key])
        for d in shape + tuple(attrs.get("dims", ())):
            symbols += [s for s in dim_factors(d)[1] if s not in symbols]
        label = f"%{node.id} {node.op}" + (f' "{node.name}"' if node.name else "")
        ops[node.id] = LOp(node.id, node.op, inputs, attrs, shape, node.dtype, [label])
    return LoweredProgram(
        ops=ops,
        inputs=[n.id for n in program.inputs],
        outputs=[n.id for n in program.outputs],
        updates=[(p.id, v.id) for p, v in program.updates],
        symbols=symbols,
        graph_name=program.graph.name,
    )
