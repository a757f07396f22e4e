"""Cold compile of an njit driver (linking its kernels) cut after its first N native calls.

    python benchmarks/driver_variants/njit_driver_chunk.py rnn 32
    python benchmarks/driver_variants/njit_driver_chunk.py rnn 10000 --optnone   # whole driver
"""

from __future__ import annotations

import json
import re
import sys
import time

from workload_module import generate_module, prepared_step

from graphcomp.backends.numba.backend import _signature
from graphcomp.backends.numba.cache import load_generated_module

CALL = re.compile(r"^\s+(k\d+|copy_flat|matmul_2d|gemm_\w+)\(")


def main() -> None:
    work, limit = sys.argv[1], int(sys.argv[2])
    _, prepared = prepared_step(work)
    module = generate_module(prepared, driver_jit=True)
    source = module.source
    if "--optnone" in sys.argv[3:]:
        source, count = re.subn(r"@njit\(([^)]*)\)\ndef step\(",
                                r"@njit(\1, _dbg_optnone=True)\ndef step(", source)
        assert count == 1, "the driver's decorator was not found"
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def step("))
    # The step's body ends at the first line that is not indented; what follows (the fast-math
    # library the kernels call) is kept.
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace())
    kept, calls = lines[:start + 1], 0
    for line in lines[start + 1:end]:
        if calls >= limit:
            break
        kept.append(line)
        calls += bool(CALL.match(line))
    kept += ["    return 0", "", "", *lines[end:]]
    clock = time.perf_counter()
    loaded, _ = load_generated_module("\n".join(kept) + "\n")
    loaded.step.compile(_signature(module))
    print(json.dumps({"work": work, "calls": calls,
                      "compile_s": round(time.perf_counter() - clock, 2),
                      "hits": sum(loaded.step.stats.cache_hits.values())}))


if __name__ == "__main__":
    main()
