"""The numpy backend's step list as one straight-line Python function, after its first run.

``Steps`` (numpy_backend.py) runs its first call step by step and records what it saw
(``Observed``): which results are arrays of the node's dtype already, which dead input's
buffer can take a ufunc step's result (``out=``), and which dense parameter update can be
written into the parameter's storage. ``generate`` turns the steps and those facts into the
source of one function, compiled here from graphcomp's own text (never from user data):

    def step(inputs):
        x0, x1 = inputs
        p2 = storage[2]
        with errstate(all="ignore"):
            v8 = u8(x0, p2)              # a ufunc called directly
            v9 = u9(v8, p3, out=v8)      # a dead buffer takes the result
            k = 10
            v10 = impl10([v9], attrs10.copy(), shape10)   # any other op, as evaluate calls it
            del v8

Every value is the one ``evaluate`` computes: the same implementations, or for ufunc steps
the same ufunc, on the same arrays (``out=`` changes where a result lands, not its value).
What the first run saw holds for later runs under the binding: the shapes, dtypes and views
that the implementations make depend on the shapes and dtypes only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp.errors import InputError
from graphcomp.loops.checkpoint import materialize


@dataclass
class Observed:
    """What ``Steps``'s first run saw, by step index."""

    exact: set[int] = field(default_factory=set)  # results already arrays of the node's dtype
    out_into: dict[int, int] = field(default_factory=dict)  # step: input position, out=
    param_in_place: dict[int, int] = field(default_factory=dict)  # step: input position
    folded: dict[int, Any] = field(default_factory=dict)  # step: its value (of constants)
    zero_select: set[int] = field(default_factory=set)  # where(c, a, zeros) steps
    runner_safe: bool = False  # no output shares a parameter; no new value aliases another


def arrays_of(value: Any) -> list[np.ndarray] | None:
    """The arrays a value holds (a scan's value is a tuple); None when it may hold others."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple) and all(isinstance(v, np.ndarray) for v in value):
        return list(value)
    return None


def shares_with_live(array: np.ndarray, live: Sequence[Any]) -> bool:
    """Whether ``array`` may share memory with any of the values in ``live``."""
    for value in live:
        held = arrays_of(value)
        if held is None or any(np.may_share_memory(array, a) for a in held):
            return True
    return False


def _sum(x: str, k: int, attrs: dict[str, Any], shape: tuple, scope: dict[str, Any]) -> str:
    scope[f"axes{k}"] = attrs["axes"]
    return f"add_reduce({x}, axes{k}, keepdims={bool(attrs['keepdims'])})"


def _transpose(x: str, k: int, attrs: dict[str, Any], shape: tuple, scope: dict[str, Any]
               ) -> str:
    scope[f"perm{k}"] = attrs["perm"]
    return f"{x}.transpose(perm{k})"


def _reshape(x: str, k: int, attrs: dict[str, Any], shape: tuple, scope: dict[str, Any]
             ) -> str:
    scope[f"to{k}"] = shape
    return f"{x}.reshape(to{k})"


# What numpy_impl calls on an array, called directly: np.sum(x, axis, keepdims=) is
# np.add.reduce on an ndarray, np.transpose(x, perm) is x.transpose(perm), and reshape's
# implementation is x.reshape(shape) already.
DIRECT: dict[str, Callable[[str, int, dict[str, Any], tuple, dict[str, Any]], str]] = {
    "reduce_sum": _sum, "transpose": _transpose, "reshape": _reshape}


def zero_select(args: Sequence[Any], constant: bool, shape: tuple[int, ...]) -> bool:
    """Whether ``where(c, a, b)`` on ``args`` may run as ``a``'s bits times ``c``: ``b`` a
    constant whose bits are all zero (relu's 0), ``c`` and ``a`` giving the result's shape.
    The product of an unsigned integer view of ``a`` with 0 or 1 is ``a``'s bits or zero,
    exactly ``where``'s choice, and ~10 times faster than ``where`` on a random ``c``."""
    c, a, b = args
    return (constant and bool(shape) and c.dtype == np.bool_ and a.dtype == b.dtype
            and a.dtype.kind in "fiu" and a.dtype.itemsize in (1, 2, 4, 8)
            and np.broadcast_shapes(c.shape, a.shape) == shape
            and not np.any(b.view(f"u{a.dtype.itemsize}")))


def generate(steps: Any, observed: Observed, runner: bool) -> Callable[..., Any]:
    """The straight-line function of ``steps`` (a checked ``Steps``): ``f(inputs)`` returns
    ``(outputs, new values)``; with ``runner``, it writes the new values into the parameters'
    storage itself and returns the outputs."""
    scope: dict[str, Any] = {"errstate": np.errstate, "asarray": np.asarray,
                             "materialize": materialize, "InputError": InputError,
                             "storage": steps.program.graph.parameter_values,
                             "copyto": np.copyto, "multiply": np.multiply,
                             "add_reduce": np.add.reduce,
                             "fail": steps.input_error}
    lines = ["def step(inputs):"]
    inputs = [f"v{i}" for i in steps.inputs]
    if inputs:
        lines.append(f"    {', '.join(inputs)}{',' if len(inputs) == 1 else ''} = inputs")
    lines += [f"    v{i} = storage[{i}]" for i in steps.parameters]
    for i, value in steps.constants:
        scope[f"c{i}"] = value
        lines.append(f"    v{i} = c{i}")
    lines += ["    k = -1", "    try:", "        with errstate(all='ignore'):"]
    for k, step in enumerate(steps.steps):
        lines += [" " * 12 + line for line in _step_lines(steps, k, step, observed, scope)]
    if not steps.steps:  # outputs that are inputs, parameters or constants
        lines.append(" " * 12 + "pass")
    lines += ["    except InputError as exc:", "        raise fail(k, exc) from None"]
    outputs = "[" + ", ".join(f"v{i}" for i in steps.outputs) + "]"
    if runner:
        for (param, _), value_id in zip(steps.program.updates, steps.updates, strict=True):
            if value_id not in steps.written_in_place:
                lines.append(f"    copyto(storage[{param.id}], v{value_id})")
        lines.append(f"    return {outputs}")
    else:
        news = "[" + ", ".join(f"v{i}" for i in steps.updates) + "]"
        lines.append(f"    return {outputs}, {news}")
    source = "\n".join(lines) + "\n"
    # graphcomp's own generated text (node ids and names of the scope above), no user data
    exec(compile(source, f"<graphcomp numpy steps {id(steps):x}>", "exec"), scope)
    function = scope["step"]
    function.source = source
    return function


def _step_lines(steps: Any, k: int, step: tuple, observed: Observed,
                scope: dict[str, Any]) -> list[str]:
    node_id, impl, ids, attrs, shape, dtype, scan, drop = step
    if k in observed.folded:  # the same value at every call, computed by the first
        scope[f"c{node_id}"] = observed.folded[k]
        return [f"v{node_id} = c{node_id}"] + ([f"del {', '.join(f'v{i}' for i in drop)}"]
                                               if drop else [])
    args = [f"v{i}" for i in ids]
    ufunc = steps.ufuncs.get(k)
    lines = []
    if k in observed.zero_select:  # where(c, a, 0): a's bits times c (zero_select)
        scope[f"bits{k}"], scope[f"dtype{k}"] = np.dtype(f"u{dtype.itemsize}"), dtype
        call = f"multiply({args[1]}.view(bits{k}), {args[0]}, dtype=bits{k}).view(dtype{k})"
    elif steps.nodes[k].op in DIRECT and k not in steps.materialized:
        call = DIRECT[steps.nodes[k].op](args[0], k, attrs, shape, scope)
    elif ufunc is not None:
        scope[f"u{k}"] = ufunc
        call = f"u{k}({', '.join(args)}"
        position = observed.out_into.get(k, observed.param_in_place.get(k))
        call += f", out={args[position]})" if position is not None else ")"
    else:
        lines.append(f"k = {k}")
        scope[f"impl{k}"], scope[f"attrs{k}"], scope[f"shape{k}"] = impl, attrs, shape
        listed = "[" + ", ".join(args) + "]"
        if k in steps.materialized:
            listed = f"[materialize(a) for a in {listed}]"
        call = f"impl{k}({listed}, attrs{k}.copy(), shape{k})"
    if not scan and k not in observed.exact:
        scope[f"dtype{k}"] = dtype
        call = f"asarray({call}, dtype{k})"
    lines.append(f"v{node_id} = {call}")
    if drop:
        lines.append(f"del {', '.join(f'v{i}' for i in drop)}")
    return lines
