"""The compile helper process (backends/numba/parallel.py) off and on, with CPU times.

For each example, fresh processes with an empty ``GRAPHCOMP_CACHE_DIR`` compile the training
step (eagerly) with ``GRAPHCOMP_COMPILE_HELPER=0`` and ``=1`` alternately. Each reports the
step's ``compile_seconds`` (wall), this process's CPU seconds during it, the helper's CPU
seconds (its whole life, start included), how many functions numba compiled in this process
(a deterministic count) and the 1-minute load average. On a machine whose cores are busy
with other work the wall times say little; the CPU times bound what an idle second core
gives: about ``max(this process, helper)`` against ``this process`` with the helper off::

    python benchmarks/bench_compile_helper.py --processes 3 --only cnn-digits
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

EXAMPLES = ["cnn-digits", "mlp-dropout-bn-digits", "vae-digits", "autoencoder-digits"]


def child(name: str) -> None:
    from numba.core import event

    from graphcomp.backends.numba import backend

    compiles = [0]

    class Count(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            pass

        def on_end(self, ev: event.Event) -> None:
            compiles[0] += 1

    event.register("numba:compile", Count())
    original = backend.compile_generated

    def first_compile(program, lp, memory, module, start):  # type: ignore[no-untyped-def]
        cpu = time.process_time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        executable = original(program, lp, memory, module, start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        helper = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(json.dumps({"wall": executable.compile_seconds,
                          "cpu": time.process_time() - cpu, "helper_cpu": helper,
                          "compiles": compiles[0], "load": os.getloadavg()[0]}), flush=True)
        os._exit(0)

    backend.compile_generated = first_compile
    from graphcomp.train.examples import run_example

    run_example(name, epochs=1, backend="numba", progress=False)


def run(name: str, setting: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-helper-") as cache:
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": cache, "GRAPHCOMP_COMPILE_HELPER": setting}
        done = subprocess.run([sys.executable, __file__, "--child", name], env=env,
                              capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=EXAMPLES)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"load average {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for round_number in range(args.processes):
        for name in args.only:
            for setting in ("0", "1"):
                got = run(name, setting)
                results.setdefault((name, setting), []).append(got)
                print(f"round {round_number} {name} helper={setting}: {json.dumps(got)}",
                      flush=True)
    print("\n| example | helper | compile wall (s) | this process CPU (s) | helper CPU (s) "
          "| numba compiles here | load |")
    print("|---|---|---|---|---|---|---|")
    for (name, setting), runs in results.items():
        ok = [r for r in runs if "error" not in r]

        def cell(key: str, digits: int = 2, ok: list[dict] = ok) -> str:
            values = [r[key] for r in ok]
            if not values:
                return "-"
            return (f"{statistics.median(values):.{digits}f} "
                    f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")

        print(f"| {name} | {'on' if setting == '1' else 'off'} | {cell('wall')} | {cell('cpu')} "
              f"| {cell('helper_cpu')} | {cell('compiles', 0)} | {cell('load', 1)} |")


if __name__ == "__main__":
    main()
