"""Cold compile of each training step and then of its evaluation function, in one process.

For every built-in example (``graphcomp/train/examples``) and every benchmark workload
(``benchmarks/workloads.py``), a fresh process with an empty ``GRAPHCOMP_CACHE_DIR`` compiles
the training step, then the evaluation function (the same outputs, no updates), eagerly, and
reports each one's ``compile_seconds`` (passes, code generation, Numba) and the CPU seconds
of the process and its compile helper over the same span (``*_cpu``). Median [range] over
``--processes`` rounds. ``--trees A B`` alternates source trees (``PYTHONPATH``) in each
round, so two commits are measured on the same load::

    python benchmarks/bench_compile_parts.py --processes 3
    python benchmarks/bench_compile_parts.py --trees /work/main . --only mlp-digits cnn-digits
    python benchmarks/bench_compile_parts.py --warm --only mlp-digits   # and a warm start

``--envs`` alternates environment settings the same way (``-`` for none), say the compile
helper process (backends/numba/parallel.py) off and on::

    python benchmarks/bench_compile_parts.py --envs GRAPHCOMP_COMPILE_HELPER=0 - --only cnn-digits
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
from pathlib import Path

EXAMPLES = ["mlp-digits", "cnn-digits", "mlp-dropout-bn-digits", "autoencoder-digits", "word2vec",
            "vae-digits"]
WORKLOADS = ["tiny_mlp", "mlp", "ewise", "rnn", "logreg", "cnn", "vae"]
HERE = Path(__file__).resolve().parent


Compile = tuple[str, float, bool, int, int, float]


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children waited for (the compile helper)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _record_compiles() -> list[Compile]:
    """Patch the numba backend so that each compile appends (kind, seconds, cache hit,
    modules, new modules, CPU seconds): the first compile is the training step, the second
    the evaluation function (which may have updates of its own: batch norm's statistics, the
    random state); then how many modules it loads (its libraries and its driver's module),
    how many of them no compile before it loaded, and the CPU time of this process and its
    helper from ``gc.compile``'s program build to the loaded module."""
    from graphcomp.backends.numba import backend
    from graphcomp.runtime import function

    seen: list[Compile] = []
    loaded: set[str] = set()
    original = backend.compile_generated
    build = function.build_program
    cpu_start = [0.0]

    def build_program(*args, **kwargs):  # type: ignore[no-untyped-def]
        cpu_start[0] = _cpu_seconds()
        return build(*args, **kwargs)

    def compile_generated(program, lp, memory, module, start):  # type: ignore[no-untyped-def]
        executable = original(program, lp, memory, module, start)
        kind = ("step", "eval")[len(seen)] if len(seen) < 2 else "other"
        modules = {*getattr(module, "libraries", ()), module.source}
        seen.append((kind, executable.compile_seconds, executable.cache_hit, len(modules),
                     len(modules - loaded), _cpu_seconds() - cpu_start[0]))
        loaded.update(modules)
        return executable

    backend.compile_generated = compile_generated
    function.build_program = build_program
    return seen


def child_example(name: str) -> list[Compile]:
    seen = _record_compiles()
    from graphcomp.train.examples import run_example

    run_example(name, epochs=1, backend="numba", progress=False)
    return seen


def child_workload(name: str) -> list[Compile]:
    seen = _record_compiles()
    sys.path.insert(0, str(HERE))
    from workloads import graphcomp_graph, make

    import graphcomp as gc

    problem = make(name)
    inputs, loss, params, grads = graphcomp_graph(problem)
    updates = [(p, p - problem.lr * g) for p, g in zip(params, grads, strict=True)]
    with loss.graph:
        gc.compile(inputs, loss, updates=updates, backend="numba")
        gc.compile(inputs, loss, backend="numba")
    return seen


def run_child(target: str, tree: str, warm: bool = False, setting: str = "-") -> dict:
    """One fresh process with an empty cache folder; its step and eval compile seconds (with
    ``warm``, then a second process on the filled cache: ``warm_step``, ``warm_eval``)."""
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as cache:
        env = {**os.environ, "GRAPHCOMP_CACHE_DIR": cache, "PYTHONPATH": str(Path(tree))}
        if setting != "-":
            name, _, value = setting.partition("=")
            env[name] = value
        started = time.perf_counter()
        result = _child(target, env)
        result["wall"] = time.perf_counter() - started
        if warm and "error" not in result:
            again = _child(target, env)
            result["warm_step"], result["warm_eval"] = again.get("step"), again.get("eval")
    return result


def _child(target: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", target], env=env,
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        return {"error": done.stderr[-800:]}
    compiles = json.loads(done.stdout.strip().splitlines()[-1])
    first = {}
    for kind, seconds, hit, *_, cpu in compiles:
        first.setdefault(kind, (seconds, hit, cpu))
    none = (None, None, None)
    return {"step": first.get("step", none)[0], "eval": first.get("eval", none)[0],
            "step_cpu": first.get("step", none)[2], "eval_cpu": first.get("eval", none)[2],
            "compiles": compiles}


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--trees", nargs="+", default=[str(HERE.parent)])
    parser.add_argument("--only", nargs="+", default=None)
    parser.add_argument("--envs", nargs="+", default=["-"],
                        help="NAME=VALUE settings to alternate ('-': none)")
    parser.add_argument("--child", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--warm", action="store_true",
                        help="also time a second process on the filled cache")
    args = parser.parse_args()
    if args.child is not None:
        run = child_example if args.child in EXAMPLES else child_workload
        print(json.dumps(run(args.child)))
        return
    targets = args.only or [*EXAMPLES, *WORKLOADS]
    print(f"load average {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for round_number in range(args.processes):
        for target in targets:
            for tree in args.trees:
                for setting in args.envs:
                    got = run_child(target, tree, args.warm, setting)
                    label = tree if setting == "-" else f"{tree} {setting}"
                    results.setdefault((target, label), []).append(got)
                    print(f"round {round_number} {target} {label}: {json.dumps(got)}",
                          flush=True)
    print(f"load average {os.getloadavg()}")
    columns = ["step", "step_cpu", "eval", "eval_cpu",
               *(["warm_step", "warm_eval"] if args.warm else [])]
    print("\n| function | tree | step cold (s) | step cold, CPU (s) "
          "| eval cold, after the step (s) | eval cold, CPU (s) |"
          + (" step warm (s) | eval warm (s) |" if args.warm else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if args.warm else ""))
    for (target, tree), runs in results.items():
        cells = [_summary([r[c] for r in runs if r.get(c) is not None]) for c in columns]
        print(f"| {target} | {tree} | {' | '.join(cells)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{t}|{tr}": r for (t, tr), r in results.items()}))


if __name__ == "__main__":
    main()
