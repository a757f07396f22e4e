"""Testing helpers (like ``numpy.testing``): they run graphs and look inside compiled functions.

``gradcheck``: ``check_grads``, the finite-difference gradient check. It lives here, above the
runtime, so that ``graphcomp.autodiff`` stays a pure graph-to-graph transformation.

``numba_internals``: what the numba backend's tests read or replace inside a compiled function
(its lane worker, its driver, the generated module), so that the tests do not depend on the
executable's private attributes; when those change, only that module changes.
"""

from graphcomp.testing.gradcheck import (
    Float64Replay,
    GradCheckEntry,
    GradCheckReport,
    check_grads,
)
from graphcomp.testing.numba_internals import (
    LaneWorkerLike,
    background_process_id,
    driver_argument_count,
    lane_worker,
    library_modules,
    module_globals,
    replace_lane_worker,
    step_array_arguments,
    step_records,
    uses_native_driver,
)

__all__ = [
    "Float64Replay",
    "GradCheckEntry",
    "GradCheckReport",
    "LaneWorkerLike",
    "background_process_id",
    "check_grads",
    "driver_argument_count",
    "lane_worker",
    "library_modules",
    "module_globals",
    "replace_lane_worker",
    "step_array_arguments",
    "step_records",
    "uses_native_driver",
]
