"""Nested containers of tensors (tuples, lists, dicts, None): flatten to leaves and back.

``gc.scan`` takes and returns such trees; the scan node itself sees only their leaves.

>>> leaves, tree = flatten({"h": 1, "c": (2, 3)})
>>> leaves, unflatten(tree, [10, 20, 30])
([2, 3, 1], {'c': (10, 20), 'h': 30})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# A tree's structure: ("leaf",), ("none",), ("tuple", children), ("list", children) or
# ("dict", keys, children), keys sorted (as JAX does) so that equal dicts flatten alike.
TreeDef = tuple


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree`` in order, and its structure."""
    if tree is None:
        return [], ("none",)
    if isinstance(tree, (tuple, list)):
        leaves: list[Any] = []
        children = []
        for item in tree:
            sub, sub_def = flatten(item)
            leaves += sub
            children.append(sub_def)
        return leaves, ("tuple" if isinstance(tree, tuple) else "list", tuple(children))
    if isinstance(tree, dict):
        keys = tuple(sorted(tree))
        leaves, children = [], []
        for key in keys:
            sub, sub_def = flatten(tree[key])
            leaves += sub
            children.append(sub_def)
        return leaves, ("dict", keys, tuple(children))
    return [tree], ("leaf",)


def unflatten(tree: TreeDef, leaves: Sequence[Any]) -> Any:
    """The tree of structure ``tree`` holding ``leaves`` (inverse of ``flatten``)."""
    result, rest = _build(tree, list(leaves))
    if rest:
        raise ValueError(f"{len(rest)} leaves too many for the tree")
    return result


def _build(tree: TreeDef, leaves: list[Any]) -> tuple[Any, list[Any]]:
    kind = tree[0]
    if kind == "leaf":
        return leaves[0], leaves[1:]
    if kind == "none":
        return None, leaves
    children = tree[2] if kind == "dict" else tree[1]
    items = []
    for child in children:
        item, leaves = _build(child, leaves)
        items.append(item)
    if kind == "dict":
        return dict(zip(tree[1], items, strict=True)), leaves
    return (tuple(items) if kind == "tuple" else items), leaves


def describe(tree: TreeDef) -> str:
    """The structure as text, with ``*`` for each leaf: ``{'c': *, 'h': *}``."""
    kind = tree[0]
    if kind == "leaf":
        return "*"
    if kind == "none":
        return "None"
    if kind == "dict":
        inner = ", ".join(f"{k!r}: {describe(c)}" for k, c in zip(tree[1], tree[2], strict=True))
        return "{" + inner + "}"
    inner = ", ".join(describe(c) for c in tree[1])
    return f"({inner}{',' if len(tree[1]) == 1 else ''})" if kind == "tuple" else f"[{inner}]"
