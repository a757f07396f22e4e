#!/usr/bin/env bash
# The GPU check (docs/cuda.md): on a machine with an NVIDIA GPU, under 8 minutes.
# 1. installs graphcomp with numba-cuda[cu12] into .venv-gpu;
# 2. runs the CUDA tests on the device (no simulator);
# 3. times a training step of benchmark workloads on backend='cuda' and backend='numba'
#    (benchmarks/gpu/compare.py; the PyTorch CUDA eager column is not written yet) and
#    prints one table.
# Prepared on 2026-12-07 without a GPU: it has not been run; no GPU numbers exist yet.
set -euo pipefail
cd "$(dirname "$0")/../.."
unset NUMBA_ENABLE_CUDASIM
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
pip install -q -e '.[test]' 'numba-cuda[cu12]'
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 240 python -m pytest -q -p no:cacheprovider -n0 tests/cuda
timeout 200 python benchmarks/gpu/compare.py
