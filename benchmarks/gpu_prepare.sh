#!/usr/bin/env bash
# Prepare, on a CPU machine with this project's venv (TensorFlow included), what
# benchmarks/gpu_check.sh needs on a GPU machine that has Python 3.12, JAX with CUDA,
# numpy, pandas and scikit-image but no TensorFlow, Keras, Dask, zarr or astropy, and no
# internet (see benchmarks/GPU.md):
#
#   benchmarks/gpu_bundle/morpheus-released.weights.h5   the released weights (the TF1
#       checkpoint of morpheus-astro 0.5.1 needs TensorFlow to read; a Keras weights
#       file loads on any backend)
#   benchmarks/gpu_bundle/wheels/   cp312 manylinux x86_64 wheels of the missing packages
#       and their dependencies (numpy excluded: the image has it), at the versions of
#       this venv where it has them
#   benchmarks/gpu_bundle/requirements.txt   what gpu_check.sh installs from them
#
# Usage: benchmarks/gpu_prepare.sh [PYTHON]   (default .venv/bin/python); prints the size.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$REPO/.venv/bin/python}"
BUNDLE="${GPU_BUNDLE:-$REPO/benchmarks/gpu_bundle}"
mkdir -p "$BUNDLE/wheels"
export TF_CPP_MIN_LOG_LEVEL=2

# 1. The released weights as a Keras weights file (full-window network; load_model
#    builds the cropped one from it).
"$PY" "$REPO/benchmarks/export_weights.py" "$BUNDLE/morpheus-released.weights.h5" 2> >(grep -v "^[IWE]0000\|^WARNING: All" >&2)

# 2. Top-level requirements: what the pipeline imports that the GPU image lacks,
#    pinned to this venv's versions (tested together here).
"$PY" - "$BUNDLE/requirements.txt" <<'PYEOF'
import importlib.metadata as md
import sys

# keras (+ h5py, optree for .weights.h5 and the JAX backend), Dask, zarr, astropy (FITS,
# WCS, tables), pypng (colour image), tqdm (progress bar). Not pyarrow (54 MB: the
# Parquet catalog needs it), bokeh (dashboard only), TensorFlow, morpheus-astro.
names = ["keras", "h5py", "optree", "dask", "distributed", "zarr", "numcodecs", "astropy", "pypng", "tqdm"]
lines = []
for name in names:
    try:
        lines.append(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        lines.append(name)
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
print("requirements:", " ".join(lines))
PYEOF

# 3. The wheels, for CPython 3.12 on manylinux x86_64.
"$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    -d "$BUNDLE/wheels" -r "$BUNDLE/requirements.txt"
rm -f "$BUNDLE"/wheels/numpy-*.whl  # the GPU image has numpy (JAX needs it)

echo "bundle: $BUNDLE"
ls "$BUNDLE/wheels" | sed 's/^/  /'
du -sh "$BUNDLE" | awk '{print "total size: " $1}'
