"""Where a cold compile's seconds go, per numba-compiled function and per compiler stage.

One fresh process per target (an example of ``graphcomp/train/examples`` or a workload of
``benchmarks/workloads.py``) with an empty ``GRAPHCOMP_CACHE_DIR`` and the compile helper off
(every kernel compiles here) compiles the training step eagerly. A listener on numba's
``numba:compile`` and ``numba:run_pass`` events and wrappers around numba's LLVM stages charge
each moment to the innermost function being compiled and the stage it is in:

- ``typing``: numba's type inference, its own part (a callee compiled while the caller is typed
  is charged to the callee);
- ``lower``: numba's lowering to LLVM IR, less the LLVM work inside it;
- ``llvm_fn``: LLVM's per-function passes (run as each IR module is added);
- ``llvm_mod``: LLVM's module passes on the library's final module (callees linked in);
- ``mcode``: machine code generation (``finalize_object``);
- ``cache``: numba's cache writes (``save_overload``);
- ``other``: the rest of numba's pipeline (bytecode analysis, rewrites, ...).

It prints one row per compiled function (self seconds by stage, largest first), the totals
by stage, the number of distinct functions, the step's ``compile_seconds`` and the process's
CPU seconds::

    python benchmarks/bench_compile_events.py cnn-digits mlp-dropout-bn-digits
    python benchmarks/bench_compile_events.py cnn --top 40
    python benchmarks/bench_compile_events.py cnn --env NUMBA_OPT=2
    python benchmarks/bench_compile_events.py cnn-digits --rounds 3 --trees /work/main .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES = ["typing", "lower", "llvm_fn", "llvm_mod", "mcode", "cache", "other"]
_PASS_STAGE = {"nopython_type_inference": "typing", "native_lowering": "lower",
               "native_parfor_lowering": "lower"}


class Clock:
    """A stack of (function, stage) frames; the time between two events is charged to the
    frame on top."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, str]] = []
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.last = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        if self.stack:
            name, stage = self.stack[-1]
            self.seconds[name][stage] += now - self.last
        self.last = now

    def push(self, name: str | None, stage: str) -> None:
        self._charge()
        if name is None:
            name = self.stack[-1][0] if self.stack else "?"
        self.stack.append((name, stage))

    def pop(self) -> None:
        self._charge()
        self.stack.pop()


def _install(clock: Clock) -> None:
    from numba.core import caching, codegen, event

    class Compiles(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            dispatcher = ev.data["dispatcher"]
            func = dispatcher.py_func
            clock.push(f"{func.__module__}.{func.__qualname__}", "other")

        def on_end(self, ev: event.Event) -> None:
            clock.pop()

    class Passes(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            name = ev.data["name"].split(" ")[0]
            clock.push(None, _PASS_STAGE.get(name, f"other:{name}"))

        def on_end(self, ev: event.Event) -> None:
            clock.pop()

    event.register("numba:compile", Compiles())
    event.register("numba:run_pass", Passes())

    def wrap(owner: Any, attribute: str, stage: str) -> None:
        original = getattr(owner, attribute)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            clock.push(None, stage)
            try:
                return original(*args, **kwargs)
            finally:
                clock.pop()

        setattr(owner, attribute, wrapped)

    wrap(codegen.CPUCodeLibrary, "_optimize_functions", "llvm_fn")
    wrap(codegen.CPUCodeLibrary, "_optimize_final_module", "llvm_mod")
    wrap(codegen.JITCodeLibrary, "_finalize_specific", "mcode")
    wrap(caching.Cache, "save_overload", "cache")


def child(target: str) -> dict[str, Any]:
    clock = Clock()
    _install(clock)
    from graphcomp.backends.numba import backend

    result: dict[str, Any] = {}
    original = backend.compile_generated
    cpu = time.process_time()

    def first_compile(program, lp, memory, module, start):  # type: ignore[no-untyped-def]
        executable = original(program, lp, memory, module, start)
        result["compile_seconds"] = executable.compile_seconds
        result["cpu"] = time.process_time() - cpu
        result["functions"] = {n: dict(s) for n, s in clock.seconds.items()}
        print(json.dumps(result), flush=True)
        os._exit(0)

    backend.compile_generated = first_compile
    run_target(target)
    return result


def run_target(target: str) -> None:
    """Compile (and start running) the training step of an example or a workload."""
    import graphcomp as gc
    from graphcomp.train.examples import EXAMPLES

    if target in EXAMPLES:
        from graphcomp.train.examples import run_example

        run_example(target, epochs=1, backend="numba", progress=False)
        return
    from workloads import graphcomp_graph, make

    problem = make(target)
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = [(p, p - problem.lr * g) for p, g in zip(params, grads, strict=True)]
    with loss.graph:
        gc.compile(inputs, loss, updates=updates, backend="numba")


def run(target: str, env_settings: list[str], tree: Path = HERE.parent) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-events-") as cache:
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": cache, "GRAPHCOMP_COMPILE_HELPER": "0",
               "PYTHONPATH": f"{tree}{os.pathsep}{HERE}"}
        for setting in env_settings:
            name, _, value = setting.partition("=")
            env[name] = value
        done = subprocess.run([sys.executable, __file__, "--child", target], env=env,
                              capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(target: str, result: dict[str, Any], top: int) -> None:
    functions = {}
    passes: dict[str, float] = defaultdict(float)
    for name, stages in result["functions"].items():
        merged: dict[str, float] = defaultdict(float)
        for stage, seconds in stages.items():
            merged[stage.split(":")[0]] += seconds
            if stage.startswith("other:"):
                passes[stage[6:]] += seconds
        functions[name] = merged
    totals = {s: sum(f.get(s, 0.0) for f in functions.values()) for s in STAGES}
    numba = sum(totals.values())
    print(f"\n## {target}: compile_seconds {result['compile_seconds']:.2f}, process CPU "
          f"{result['cpu']:.2f} s, numba {numba:.2f} s over {len(functions)} functions")
    print("| stage | " + " | ".join(STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    print("| all (s) | " + " | ".join(f"{totals[s]:.2f}" for s in STAGES) + " |")
    largest = sorted(passes.items(), key=lambda kv: -kv[1])[:6]
    print("\nLargest of other: " + ", ".join(f"{n} {v:.2f} s" for n, v in largest))
    print(f"\n| function | self (s) | {' | '.join(STAGES)} |")
    print("|---|---|" + "---|" * len(STAGES))
    ranked = sorted(functions.items(), key=lambda kv: -sum(kv[1].values()))
    for name, stages in ranked[:top]:
        cells = " | ".join(f"{stages.get(s, 0.0):.2f}" for s in STAGES)
        print(f"| {name} | {sum(stages.values()):.2f} | {cells} |")


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def _stage_total(result: dict[str, Any], stage: str) -> float:
    return sum(seconds for stages in result["functions"].values()
               for name, seconds in stages.items() if name.split(":")[0] == stage)


def compare(results: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """Median [range] per target and tree: compile seconds, CPU, functions, stages."""
    print("\n| target | tree | compile_seconds | process CPU (s) | functions | "
          + " | ".join(STAGES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(STAGES))
    for (target, tree), runs in results.items():
        stages = [_summary([_stage_total(r, stage) for r in runs]) for stage in STAGES]
        counts = sorted({len(r["functions"]) for r in runs})
        print(f"| {target} | {tree} | {_summary([r['compile_seconds'] for r in runs])} | "
              f"{_summary([r['cpu'] for r in runs])} | {'/'.join(map(str, counts))} | "
              + " | ".join(stages) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=["cnn-digits"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE settings")
    parser.add_argument("--trees", nargs="+", default=[str(HERE.parent)],
                        help="source trees to alternate (PYTHONPATH) in each round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    print(f"load average {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for target in args.targets:
            for tree in args.trees:
                got = run(target, args.env, Path(tree))
                results.setdefault((target, tree), []).append(got)
                if args.rounds == 1 and len(args.trees) == 1:
                    report(target, got, args.top)
                else:
                    print(f"{target} {tree}: compile {got['compile_seconds']:.2f} s, CPU "
                          f"{got['cpu']:.2f} s, {len(got['functions'])} functions", flush=True)
    print(f"load average {os.getloadavg()}")
    if args.rounds > 1 or len(args.trees) > 1:
        compare(results)
    if args.json:
        Path(args.json).write_text(json.dumps({f"{t}|{tr}": r for (t, tr), r in
                                               results.items()}))


if __name__ == "__main__":
    main()
