"""graphcomp benchmarks: training-step time against numpy by hand, and compile times.

    python benchmarks/run.py [--workloads tiny_mlp mlp ewise rnn logreg cnn lstm vae]
                             [--backend numba]
                             [--repeats 50] [--processes 3] [--threads 2] [--json FILE]
    python benchmarks/run.py --scaling [--backend numba] [--processes 1]
    python benchmarks/run.py --scaling scan [--processes 3]
    python benchmarks/run.py --workloads rnn rnn_scan lstm

Every measurement runs in a fresh process (``benchmarks/worker.py``). For each workload and
each of ``--processes`` rounds: one process with an empty cache folder measures the cold
compile and then the step times (median of ``--repeats`` steps after warm-up, alternating
blocks of numpy-by-hand and graphcomp steps); a second process on the now warm cache measures
the start from the ``gc.compile`` call to the first result. Tables report the median over the
processes and the range.

numpy and numba (through scipy) bring two OpenBLAS copies; the idle threads of one spin (about
0.1 s by default) and steal the two cores from the other. So each timed block starts after a
short sleep (``--pause``). ``--blas-timeout N`` sets ``OPENBLAS_THREAD_TIMEOUT`` for the workers
(0: OpenBLAS's default; short timeouts made a lone 2-thread GEMM 20-50x slower in our runs).

``--scaling`` measures compile time against graph size instead (mlp with 1, 2, 4, 8 hidden
layers; rnn with T = 8, 32, 128); ``--scaling scan`` the same for loops written with gc.scan
(rnn_scan with T = 8, 32, 128, 512; lstm with T = 64), whose compile should not grow with T.
``rnn_scan`` is not in the default workload list.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ["tiny_mlp", "mlp", "ewise", "rnn", "logreg", "cnn", "lstm", "vae", "word2vec",
             "word2vec_100k"]
LOOP_WORKLOADS = ["rnn_scan"]
SCALING = {
    "size": [("mlp", "hidden_layers", n) for n in (1, 2, 4, 8)]
    + [("rnn", "steps", t) for t in (8, 32, 128)],
    "scan": [("rnn_scan", "steps", t) for t in (8, 32, 128, 512)] + [("lstm", "steps", 64)],
}
# (how graphcomp's step compares, the target) per workload
TARGETS = {
    "tiny_mlp": ("speed-up", 2.0),
    "mlp": ("gemm-ratio", 1.25),
    "ewise": ("speed-up", 4.0),
    "rnn": ("speed-up", 2.0),
    "logreg": ("speed-up", 1.5),
    "cnn": ("speed-up", 2.5),
    "lstm": ("speed-up", 2.0),
    "vae": ("speed-up", 2.0),
    "word2vec": ("speed-up", 3.0),
    "word2vec_100k": ("speed-up", 3.0),
    "rnn_scan": ("speed-up", 2.0),
}


def run_worker(workload: str, backend: str, cache: Path, args: argparse.Namespace,
               options: Sequence[str] = (), compile_only: bool = False) -> dict:
    """One fresh process; its JSON result, or {"error": ...} if it failed."""
    env = {**os.environ, "GRAPHCOMP_CACHE_DIR": str(cache)}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    if args.blas_timeout:
        env["OPENBLAS_THREAD_TIMEOUT"] = str(args.blas_timeout)
    command = [sys.executable, str(HERE / "worker.py"), "--workload", workload,
               "--backend", backend, "--repeats", str(args.repeats),
               "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--pause", str(args.pause)]
    command += [f"--option={o}" for o in options]
    if compile_only:
        command.append("--compile-only")
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_and_warm(workload: str, args: argparse.Namespace, options: Sequence[str] = (),
                  compile_only: bool = False) -> tuple[dict, dict]:
    """A cold process on an empty cache folder, then a warm one on the same folder."""
    cache = Path(tempfile.mkdtemp(prefix="graphcomp-bench-"))
    try:
        cold = run_worker(workload, args.backend, cache, args, options, compile_only)
        warm = run_worker(workload, args.backend, cache, args, options, compile_only=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return cold, warm


# ---------------------------------------------------------------- formatting


def spread(values: Sequence[float], digits: int) -> str:
    """'median [min–max]' of ``values``."""
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def ms_digits(value: float) -> int:
    return 3 if value < 1 else 2 if value < 10 else 1


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def errors_of(results: Sequence[dict]) -> str:
    return "; ".join(sorted({r["error"] for r in results if "error" in r}))


def step_table(runs: dict[str, list[tuple[dict, dict]]], backend: str) -> str:
    rows = []
    for name, pairs in runs.items():
        cold = [c for c, _ in pairs if "error" not in c]
        if not cold:
            rows.append([name, "", "", "", "", "", f"error: {errors_of([c for c, _ in pairs])}"])
            continue
        numpy_ms = [r["numpy_ms"] for r in cold]
        ours_ms = [r["graphcomp_ms"] for r in cold]
        speedups = [r["numpy_ms"] / r["graphcomp_ms"] for r in cold]
        kind, goal = TARGETS.get(name, ("speed-up", None))
        if kind == "gemm-ratio":
            ratios = [r["graphcomp_ms"] / r["gemm_ms"] for r in cold]
            verdict = f"{statistics.median(ratios):.2f}× its GEMMs (target ≤ {goal}×)"
            met = statistics.median(ratios) <= goal
        elif goal is None:
            verdict, met = "no target", None
        else:
            verdict = f"target ≥ {goal}× faster"
            met = statistics.median(speedups) >= goal
        digits = ms_digits(statistics.median(numpy_ms))
        rows.append([
            name, cold[0]["shape"], spread(numpy_ms, digits), spread(ours_ms, digits),
            spread(speedups, 2), verdict, "–" if met is None else "yes" if met else "no",
        ])
    steps = min((c["steps"] for p in runs.values() for c, _ in p if "steps" in c), default=0)
    header = ["workload", "shape", "numpy by hand (ms)", f"graphcomp {backend} (ms)",
              "speed-up vs numpy", "target", "met"]
    note = (f"Median of {steps} steps per process after warm-up; median [range] over "
            f"{max(len(p) for p in runs.values())} fresh processes.")
    return table(header, rows) + "\n\n" + note


def cpu_table(runs: dict[str, list[tuple[dict, dict]]]) -> str:
    """Each side's step: wall time, the calling thread's CPU time, and the share of steps that
    waited for a core (wall above CPU by more than 0.2 ms): on a shared machine the wall
    medians move with the other processes, the CPU medians much less."""
    rows = []
    for name, pairs in runs.items():
        cold = [c for c, _ in pairs if "graphcomp_cpu_ms" in c]
        if not cold:
            continue
        row = [name]
        for side in ("numpy", "graphcomp"):
            digits = ms_digits(statistics.median(r[f"{side}_cpu_ms"] for r in cold))
            row += [spread([r[f"{side}_ms"] for r in cold], digits),
                    spread([r[f"{side}_cpu_ms"] for r in cold], digits),
                    spread([100 * r[f"{side}_waited"] for r in cold], 0)]
        rows.append(row)
    header = ["workload", "numpy wall (ms)", "numpy CPU (ms)", "numpy steps waited (%)",
              "graphcomp wall (ms)", "graphcomp CPU (ms)", "graphcomp steps waited (%)"]
    return table(header, rows)


def compile_table(runs: dict[str, list[tuple[dict, dict]]], label: str = "workload") -> str:
    rows = []
    for name, pairs in runs.items():
        cold = [c for c, _ in pairs if "error" not in c]
        warm = [w for _, w in pairs if "error" not in w]
        if not cold or not warm:
            bad = errors_of([r for pair in pairs for r in pair])
            rows.append([name, "", "", "", "", "", f"error: {bad}"])
            continue
        hits = sum(bool(w["cache_hit"]) for w in warm)
        rows.append([
            name, str(cold[0]["schedule"]), str(cold[0]["source_lines"]),
            spread([c["compile_s"] for c in cold], 2),
            spread([c["first_result_s"] for c in cold], 2),
            spread([w["first_result_s"] for w in warm], 3),
            f"{hits}/{len(warm)}",
        ])
    header = [label, "scheduled nodes", "generated lines", "cold compile (s)",
              "cold: compile → first result (s)", "warm cache: compile → first result (s)",
              "warm cache hits"]
    return table(header, rows)


def gemm_table(runs: dict[str, list[tuple[dict, dict]]]) -> str:
    rows = []
    for name, pairs in runs.items():
        cold = [c for c, _ in pairs if c.get("gemm_ms")]
        if not cold:
            continue
        rows.append([
            name, str(cold[0]["gemms"]),
            spread([c["gemm_ms"] for c in cold], 3),
            spread([c["graphcomp_ms"] for c in cold], 3),
            spread([c["graphcomp_ms"] / c["gemm_ms"] for c in cold], 2),
        ])
    header = ["workload", "GEMMs per step", "GEMMs alone, np.dot (ms)", "graphcomp step (ms)",
              "step / GEMMs"]
    return table(header, rows)


def threadpool_table(result: dict) -> str:
    rows = [[str(p.get("internal_api")), str(p.get("num_threads")), str(p.get("version")),
             Path(str(p.get("filepath"))).name] for p in result.get("threadpools", [])]
    return table(["library", "threads", "version", "file"], rows)


def git_commit() -> str:
    """The commit measured: $GRAPHCOMP_COMMIT (for a snapshot made with git archive) or HEAD."""
    if os.environ.get("GRAPHCOMP_COMMIT"):
        return os.environ["GRAPHCOMP_COMMIT"]
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                              capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def environment() -> str:
    import llvmlite.binding as llvm
    import numba
    import numpy

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · CPU {llvm.get_host_cpu_name()}, "
            f"{os.cpu_count()} cores, load average at start {load} · Python "
            f"{platform.python_version()} · numpy {numpy.__version__} · numba "
            f"{numba.__version__} · graphcomp commit {git_commit()}")


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=WORKLOADS,
                        choices=WORKLOADS + LOOP_WORKLOADS)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per process (≥30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per process")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds of sleep before each timed block (lets BLAS threads idle)")
    parser.add_argument("--blas-timeout", type=int, default=0,
                        help="OPENBLAS_THREAD_TIMEOUT for the workers (0: OpenBLAS default)")
    parser.add_argument("--scaling", nargs="?", const="size", choices=sorted(SCALING),
                        help="compile time against graph size (or, 'scan', against the "
                             "number of steps of scan loops) instead of step times")
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    args = parser.parse_args(argv)
    if not args.scaling and args.repeats < 30:
        parser.error("--repeats must be at least 30")

    print(f"# graphcomp benchmarks, backend {args.backend!r}\n")
    blas = f"OPENBLAS_THREAD_TIMEOUT={args.blas_timeout}" if args.blas_timeout else "default"
    print(f"{environment()} · {args.threads} threads · OpenBLAS idle spin: {blas}\n")
    print("Command: `python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
          + "`\n")
    runs: dict[str, list[tuple[dict, dict]]] = {}
    if args.scaling:
        for workload, option, value in SCALING[args.scaling]:
            label = f"{workload} {option}={value}"
            runs[label] = [cold_and_warm(workload, args, [f"{option}={value}"], True)
                           for _ in range(args.processes)]
            print(f"measured {label}", file=sys.stderr, flush=True)
        print("## Compile time against graph size\n")
        print(compile_table(runs, "graph"))
    else:
        for workload in args.workloads:
            runs[workload] = [cold_and_warm(workload, args) for _ in range(args.processes)]
            print(f"measured {workload}", file=sys.stderr, flush=True)
        print("## Training step\n")
        print(step_table(runs, args.backend))
        print("\n## Wall and CPU time of the steps (the calling thread's, per process)\n")
        print(cpu_table(runs))
        print("\n## Compile and start\n")
        print(compile_table(runs))
        gemms = gemm_table(runs)
        if gemms.count("\n") > 1:
            print("\n## Matmul reference (the step's own GEMMs run alone in the same process)\n")
            print(gemms)
    failed = [(name, r["error"]) for name, pairs in runs.items() for pair in pairs for r in pair
              if "error" in r]
    if failed:
        print("\n## Failed processes (left out of the tables above)\n")
        print("\n".join(f"- {name}: {error}" for name, error in failed))
    first = next((c for pairs in runs.values() for c, _ in pairs if "error" not in c), None)
    if first is not None:
        print("\n## Thread pools (threadpoolctl, in a worker process after its steps)\n")
        print(threadpool_table(first))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
