#!/usr/bin/env bash
# The GPU check (docs/cuda.md), on a machine with an NVIDIA GPU, in under 8 minutes:
# 1. finds a Python with graphcomp's dependencies and numba-cuda (PYTHON, else python3);
#    it installs nothing (device machines may have no network) and says what it skips;
# 2. runs tests/cuda on the device (no simulator), PTX tests included;
# 3. benchmarks/gpu/compare.py: the tiny_mlp, mlp, ewise, rnn and logreg steps on
#    backend='cuda' checked against the numpy backend, timed, with PyTorch CUDA eager
#    versions of mlp and ewise where torch is importable: one table.
# Prepared 2026-12-07 without a GPU: not yet run; no GPU numbers exist until it is.
set -uo pipefail
cd "$(dirname "$0")/../.."
unset NUMBA_ENABLE_CUDASIM
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
status=0
skipped=()

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    || skipped+=("nvidia-smi: not found or failed")
if ! "$PY" -c "import numpy, numba, scipy, networkx" 2>/dev/null; then
    echo "SKIPPED everything: $PY lacks numpy, numba, scipy or networkx (graphcomp's needs);"
    echo "set PYTHON to an interpreter that has them, or pip install -e '.[cuda]' where online"
    exit 1
fi
if ! "$PY" -c "import numba_cuda; from numba import cuda; assert cuda.is_available()"; then
    echo "SKIPPED everything: $PY has no numba-cuda or it finds no GPU"
    echo "(pip install 'numba-cuda[cu12]' or 'numba-cuda[cu13]' to match the driver)"
    exit 1
fi
"$PY" -c "import numba_cuda, numba; print('numba', numba.__version__, 'numba-cuda', \
numba_cuda.__version__)"
"$PY" -c "import cupy" 2>/dev/null \
    || skipped+=("cupy: not importable, so 2-D products ran the tiled kernel, not cuBLAS")

echo "== tests/cuda on the device"
if "$PY" -c "import pytest, hypothesis" 2>/dev/null; then
    timeout 270 "$PY" -m pytest -q -ra -p no:cacheprovider -o addopts="" tests/cuda \
        || { echo "tests/cuda FAILED (or ran past 270 s)"; status=1; }
else
    skipped+=("tests/cuda: pytest or hypothesis not importable")
fi

echo "== workloads on backend='cuda' against the numpy backend and PyTorch eager"
timeout 180 "$PY" benchmarks/gpu/compare.py \
    || { echo "compare.py FAILED (or ran past 180 s)"; status=1; }

for line in "${skipped[@]}"; do echo "skipped: $line"; done
exit $status
