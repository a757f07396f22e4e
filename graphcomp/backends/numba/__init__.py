"""Numba code-generation backend.

Importing it asks OpenMP (the threading layer of Numba's parallel loops) to put idle threads
to sleep instead of spinning, unless the user chose otherwise: spinning threads take the cores
from BLAS's own threads right after a parallel loop (measured: an MLP step's GEMMs went from
3 ms to 10-100 ms; docs/performance.md, "Parallel loops"). OpenMP reads the setting when
Numba starts its threads, at the first parallel loop, so it is set here, before any kernel.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
