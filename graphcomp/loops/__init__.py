"""Loops: ``gc.scan`` and the body graphs it traces (docs/loops.md)."""

from graphcomp.loops.scan import (
    LOOP_OPS,
    SCAN,
    SCAN_OUTPUT,
    ScanBody,
    is_recomputed,
    is_residual,
    make_scan_node,
    output_count,
    output_type,
    residual_output,
    scan,
    scan_output,
    shared_stacks,
    stacked_leaf,
)

__all__ = [
    "LOOP_OPS",
    "SCAN",
    "SCAN_OUTPUT",
    "ScanBody",
    "is_recomputed",
    "is_residual",
    "make_scan_node",
    "output_count",
    "output_type",
    "residual_output",
    "scan",
    "scan_output",
    "shared_stacks",
    "stacked_leaf",
]
