"""Does ``prange`` over the images pay for the convolution and pooling kernels?

Compiles the ``cnn`` workload's training step (LeNet-5, batch 64, f32) once per variant of
``conv_kernels.BATCH_PARALLEL`` (the ops whose image loop runs under ``prange`` on numba's
threads) and times the steps of all variants alternating in one process, with the same
thread settings as ``benchmarks/run.py`` (2 threads everywhere, the lane helper on):

* ``serial``  -- no kernel in parallel (the default),
* ``columns`` -- im2col and col2im,
* ``direct``  -- the direct conv2d and conv2d_input_grad loops,
* ``pool``    -- max_pool2d, its gradient and gather, avg_pool2d and its gradient,
* ``all``     -- all of them.

Prints the median step time (ms) of each variant with the range of its block medians, and
the ratio to ``serial`` measured in the same blocks. Run in a fresh process:

    PYTHONPATH=$PWD python benchmarks/bench_conv_prange.py [--repeats 40] [--blocks 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

THREADS = "2"
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = THREADS

VARIANTS = {
    "serial": set(),
    "columns": {"im2col", "col2im"},
    "direct": {"conv2d", "conv2d_input_grad"},
    "pool": {"max_pool2d", "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d",
             "avg_pool2d_grad"},
}
VARIANTS["all"] = set().union(*VARIANTS.values())


def compile_variant(name: str, workload: str):
    """The workload's step with ``BATCH_PARALLEL`` set to the variant's ops while compiling."""
    import workloads

    from graphcomp.backends.numba import conv_kernels

    problem = workloads.make(workload)
    saved = set(conv_kernels.BATCH_PARALLEL)
    conv_kernels.BATCH_PARALLEL.clear()
    conv_kernels.BATCH_PARALLEL.update(VARIANTS[name])
    try:
        step = workloads.graphcomp_step(problem, "numba")
        step(*problem.inputs)
    finally:
        conv_kernels.BATCH_PARALLEL.clear()
        conv_kernels.BATCH_PARALLEL.update(saved)
    return step, problem.inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="cnn")
    parser.add_argument("--repeats", type=int, default=40, help="timed steps per block")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(THREADS))
    steps = {name: compile_variant(name, args.workload) for name in args.variants}
    blocks: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.blocks):
        for name, (step, inputs) in steps.items():
            for _ in range(5):
                step(*inputs)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                step(*inputs)
                times.append(time.perf_counter() - start)
            blocks[name].append(1e3 * float(np.median(times)))
    print(f"{args.workload}, load average {os.getloadavg()[0]:.1f} at the end, "
          f"{args.blocks} blocks of {args.repeats} steps")
    base = np.array(blocks[args.variants[0]])
    for name, values in blocks.items():
        ratio = np.median(np.array(values) / base)
        print(f"{name:8s} {np.median(values):8.2f} ms [{min(values):.2f}-{max(values):.2f}]"
              f"  / {args.variants[0]}: {ratio:.2f}")


if __name__ == "__main__":
    main()
