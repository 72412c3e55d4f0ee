#!/usr/bin/env bash
# Measure the GPU path in one command (benchmarks/GPU.md), from the
# repository root of a machine with an NVIDIA GPU, Python 3.12, JAX with CUDA, numpy,
# pandas and scikit-image, after benchmarks/gpu_prepare.sh ran on a CPU machine:
#
#   bash benchmarks/gpu_check.sh
#
# 1. a venv with --system-site-packages (keeps the image's JAX and numpy) gets the
#    bundled wheels, offline (--no-index --find-links benchmarks/gpu_bundle/wheels);
# 2. benchmarks/gpu_engine.py: the engine on the JAX backend at tile 1024, bfloat16
#    batch sweep, float32 / TF32 / bfloat16 at the best batch, vote agreement, share
#    outside the network, GPU memory;
# 3. benchmarks/gpu_cli_run.py: `python -m pipeline run` on a 4096 x 4096 synthetic
#    mosaic with a local Dask cluster using the GPU, windows/s against the engine.
#
# Settings (environment): GPU_CHECK_DIR (work folder, default /tmp/morpheus-gpu-check),
# GPU_BUNDLE (default benchmarks/gpu_bundle), GPU_CHECK_PYTHON (use this Python as it
# is, no venv: the CPU dry run), GPU_CHECK_SMALL=1 (tiny sizes: the CPU dry run),
# ENGINE_TILE, ENGINE_BATCHES, ENGINE_ROUNDS, CLI_SIZE, CLI_TILE, CLI_STRIDE,
# CLI_PRECISION.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BUNDLE="${GPU_BUNDLE:-$REPO/benchmarks/gpu_bundle}"
WORK="${GPU_CHECK_DIR:-/tmp/morpheus-gpu-check}"
WEIGHTS="$BUNDLE/morpheus-released.weights.h5"
if [[ "${GPU_CHECK_SMALL:-0}" == 1 ]]; then
    : "${ENGINE_TILE:=32}" "${ENGINE_BATCHES:=128}" "${ENGINE_ROUNDS:=1}"
    : "${CLI_SIZE:=192}" "${CLI_TILE:=256}" "${CLI_STRIDE:=8}"
fi
ENGINE_TILE="${ENGINE_TILE:-1024}"
ENGINE_BATCHES="${ENGINE_BATCHES:-4096,8192,16384,32768}"
ENGINE_ROUNDS="${ENGINE_ROUNDS:-2}"
CLI_SIZE="${CLI_SIZE:-4096}"
CLI_TILE="${CLI_TILE:-1024}"
CLI_STRIDE="${CLI_STRIDE:-1}"
CLI_PRECISION="${CLI_PRECISION:-bfloat16}"
mkdir -p "$WORK"
[[ -f "$WEIGHTS" ]] || { echo "error: $WEIGHTS missing: run benchmarks/gpu_prepare.sh on a CPU machine first" >&2; exit 2; }

step() { echo; echo "== $* ($(date +%H:%M:%S))"; }

step "environment"
if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
    PY="$GPU_CHECK_PYTHON"
else
    if [[ ! -x "$WORK/venv/bin/python" ]]; then
        python3 -m venv --system-site-packages "$WORK/venv"
    fi
    PY="$WORK/venv/bin/python"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links "$BUNDLE/wheels" -r "$BUNDLE/requirements.txt"
fi
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
"$PY" - <<'PYEOF'
import importlib.metadata as md, platform
import jax
print(f"Python {platform.python_version()}; JAX {jax.__version__} devices {jax.devices()}")
for pkg in ("keras", "numpy", "dask", "distributed", "zarr", "astropy", "h5py", "pandas", "scikit-image", "pyarrow", "dask-cuda"):
    try:
        print(f"  {pkg} {md.version(pkg)}")
    except md.PackageNotFoundError:
        print(f"  {pkg}: not installed" + ("  (the Parquet catalog needs it)" if pkg == "pyarrow" else "")
              + ("  (--gpu auto falls back to a plain LocalCluster)" if pkg == "dask-cuda" else ""))
PYEOF

step "engine on the JAX backend (tile $ENGINE_TILE, batches $ENGINE_BATCHES)"
"$PY" benchmarks/gpu_engine.py --weights "$WEIGHTS" --tile "$ENGINE_TILE" --batches "$ENGINE_BATCHES" \
    --rounds "$ENGINE_ROUNDS" --json "$WORK/engine.json"

step "full CLI run (${CLI_SIZE}x${CLI_SIZE}, tile $CLI_TILE, stride $CLI_STRIDE, $CLI_PRECISION)"
# Grow GPU memory as needed: the driver (weights check) and the worker both use the GPU.
XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" benchmarks/gpu_cli_run.py --weights "$WEIGHTS" --work "$WORK" \
    --size "$CLI_SIZE" --tile "$CLI_TILE" --stride "$CLI_STRIDE" --precision "$CLI_PRECISION" \
    --engine-json "$WORK/engine.json"
step "done"
