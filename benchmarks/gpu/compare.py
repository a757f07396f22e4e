"""The GPU table: each benchmark workload's training step on backend='cuda' against the
numpy backend's values, and PyTorch CUDA eager versions of mlp and ewise, on one device.

Run by benchmarks/gpu/check.sh (docs/cuda.md). Per workload: one step from the same initial
parameters on 'cuda' and on 'numpy' (the oracle): the loss and every updated parameter must
agree (largest difference relative to the value's largest magnitude: 1e-4 float32, 1e-9
float64); then step times, median of ``REPEATS`` steps after warm-up, with the range:
``cuda host``: the Function called with numpy arrays (inputs uploaded, loss copied back);
``cuda dev``: ``device_call`` with the inputs already on the device; ``torch``: the same
step in PyTorch eager on the same device, where torch is importable (mlp and ewise). Each
step is synchronised before its time is taken. ewise also prints its memory-traffic bound
(bytes read and written by the step / the device's copy bandwidth measured here).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import workloads  # noqa: E402

import graphcomp as gc  # noqa: E402
from graphcomp.backends.cuda import device_call  # noqa: E402

WORKLOADS = ("tiny_mlp", "mlp", "ewise", "rnn", "logreg")
REPEATS = 30  # --repeats
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
# --small: sizes the simulator runs in seconds (a dry run of this script without a GPU).
SMALL: dict[str, dict[str, int]] = {"ewise": {"size": 256},
                                    "rnn": {"steps": 2, "hidden": 4, "features": 3, "batch": 2}}
OPTIONS: dict[str, dict[str, int]] = {}


def _times(step: Callable[[], object], sync: Callable[[], None]) -> tuple[float, float, float]:
    for _ in range(min(3, REPEATS)):
        step()
    sync()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - start) * 1e6)
    return float(np.median(times)), min(times), max(times)


def _difference(got: np.ndarray, want: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(want))), 1e-30)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want))) / scale


def _graphcomp(problem: workloads.Problem, backend: str):
    inputs, loss, params, grads = workloads.graphcomp_graph(problem)
    updates = workloads.graphcomp_updates(problem, params, grads)
    return gc.compile(inputs, loss, updates=updates, backend=backend), params


def _check_and_time(name: str) -> dict[str, object]:
    problem = workloads.make(name, **OPTIONS.get(name, {}))
    step, params = _graphcomp(problem, "cuda")
    oracle, oracle_params = _graphcomp(problem, "numpy")
    dtype = next(iter(problem.params.values())).dtype.name
    worst = _difference(step(*problem.inputs), oracle(*problem.inputs))
    for p, q in zip(params, oracle_params, strict=True):
        worst = max(worst, _difference(p.value, q.value))
    row: dict[str, object] = {"workload": name, "dtype": dtype, "difference": worst,
                              "ok": worst <= TOLERANCE[dtype], "gemm": step._executable.gemm}
    row["cuda host"] = _times(lambda: step(*problem.inputs), lambda: None)
    from numba import cuda

    on_device = [cuda.to_device(a) for a in problem.inputs]
    run = device_call(step)
    row["cuda dev"] = _times(lambda: run(*on_device), lambda: None)
    return row


def _torch_step(name: str):
    """(step, synchronise) of PyTorch eager for mlp and ewise, or None."""
    import torch

    problem = workloads.make(name, **OPTIONS.get(name, {}))
    dev = torch.device("cuda")
    p = {k: torch.tensor(v, device=dev, requires_grad=True) for k, v in problem.params.items()}
    inputs = [torch.tensor(a, device=dev) for a in problem.inputs]
    lr = problem.lr

    if name == "mlp":
        def loss_fn() -> torch.Tensor:
            x, labels = inputs
            h = torch.relu(x @ p["W0"] + p["b0"])
            h = torch.relu(h @ p["W1"] + p["b1"])
            logits = h @ p["W2"] + p["b2"]
            return torch.nn.functional.cross_entropy(logits, labels)
    elif name == "ewise":
        def loss_fn() -> torch.Tensor:
            (x,) = inputs
            xw = x * p["w"]
            return torch.sum(torch.tanh(xw + p["b"]) * torch.sigmoid(xw)
                             + torch.log1p(torch.exp(-torch.abs(x * p["b"]))))
    else:
        return None

    def step() -> torch.Tensor:
        loss = loss_fn()
        grads = torch.autograd.grad(loss, list(p.values()))
        with torch.no_grad():
            for value, g in zip(p.values(), grads, strict=True):
                value.sub_(lr * g)
        return loss

    return step, torch.cuda.synchronize, problem


def _copy_bandwidth() -> float | None:
    """Bytes per second of a device-to-device copy (read + write), through torch."""
    try:
        import torch
    except ImportError:
        return None
    a = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    seconds, _, _ = _times(lambda: b.copy_(a), torch.cuda.synchronize)
    return 2 * a.numel() / (seconds * 1e-6)


def main() -> None:
    global REPEATS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--small", action="store_true", help="tiny sizes (simulator)")
    args = parser.parse_args()
    REPEATS = args.repeats
    if args.small:
        OPTIONS.update(SMALL)
    try:
        import torch

        has_torch = torch.cuda.is_available()
        skipped = [] if has_torch else ["torch: no CUDA device for torch"]
    except ImportError:
        has_torch, skipped = False, ["torch: not importable (no PyTorch column)"]
    rows = [_check_and_time(name) for name in args.workloads.split(",")]
    for row in rows:
        made = _torch_step(str(row["workload"])) if has_torch else None
        if made is not None:
            step, sync, problem = made
            row["torch"] = _times(step, sync)
            oracle, _ = _graphcomp(problem, "numpy")
            torch_loss = float(_torch_step(str(row["workload"]))[0]())  # first step's loss
            row["torch difference"] = _difference(np.float64(torch_loss),
                                                  np.asarray(oracle(*problem.inputs)))
    _print(rows)
    bandwidth = _copy_bandwidth() if has_torch else None
    if bandwidth:
        size = len(workloads.make("ewise", **OPTIONS.get("ewise", {})).params["w"])
        bound = 5 * 4 * size / bandwidth * 1e6  # reads x, w, b; writes w, b (float32)
        print(f"ewise memory-traffic bound: {bound:.1f} us (20 B x {size} elements at "
              f"{bandwidth / 1e12:.2f} TB/s, a device-to-device copy measured here)")
    for line in skipped:
        print("skipped:", line)
    if not all(row["ok"] for row in rows):
        sys.exit("some backend='cuda' results differ from the numpy backend's")


def _print(rows: list[dict[str, object]]) -> None:
    def cell(value: object) -> str:
        if not isinstance(value, tuple):
            return "-"
        median, low, high = value
        return f"{median:.0f} [{low:.0f}-{high:.0f}]"

    print(f"{'workload':<9} {'dtype':<8} {'vs numpy':>9} {'ok':<3} {'cuda host us':>22} "
          f"{'cuda dev us':>22} {'torch eager us':>22} {'dev/torch':>9}  gemm")
    for row in rows:
        torch_cell = row.get("torch")
        ratio = (f"{row['cuda dev'][0] / torch_cell[0]:.2f}"  # type: ignore[index]
                 if isinstance(torch_cell, tuple) else "-")
        print(f"{row['workload']!s:<9} {row['dtype']!s:<8} {row['difference']:9.1e} "
              f"{'yes' if row['ok'] else 'NO':<3} {cell(row['cuda host']):>22} "
              f"{cell(row['cuda dev']):>22} {cell(torch_cell):>22} {ratio:>9}  {row['gemm']}")
        if "torch difference" in row:
            print(f"{'':<9} torch loss vs numpy backend: {row['torch difference']:.1e}")


if __name__ == "__main__":
    main()
