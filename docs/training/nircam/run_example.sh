#!/usr/bin/env bash
# The JWST NIRCam-like example of docs/training.md: a simulated six-band training set
# (0.03"/px), three trainings with the same data, steps and learning rate that differ
# only in their initial weights, then `run` on the six-band demo mosaic.
# Usage: bash docs/training/nircam/run_example.sh [WORK_DIR]   (CPU: ~15-30 min)
set -euo pipefail
WORK=${1:-runs/nircam-example}
BANDS=F090W,F115W,F150W,F200W,F277W,F444W
COMMON=(--data-dir "$WORK/training-set" --bands "$BANDS" --epochs 12 --batch-size 20
        --learning-rate released --eval-max 200 --seed 0 --threads 1)
PY=${PYTHON:-python}
export TF_CPP_MIN_LOG_LEVEL=2
# 1. fine-tuned from the released weights, first layer from the nearest bands in wavelength
#    (also simulates the 400-object training set on first use)
$PY -m pipeline train --synthetic 400 "${COMMON[@]}" --init released --first-layer wavelength \
    --out "$WORK/finetune-wavelength"
# 2. fine-tuned, first layer (and its input batch normalisation) initialised at random
$PY -m pipeline train "${COMMON[@]}" --init released --first-layer random --out "$WORK/finetune-random"
# 3. from scratch
$PY -m pipeline train "${COMMON[@]}" --init scratch --out "$WORK/scratch"
# 4. classify the six-band demo mosaic (generated on first use) with the fine-tuned model
$PY -m pipeline run --mosaic demo-nircam --model "$WORK/finetune-wavelength/best.weights.h5" \
    --flux-band F150W --run-dir "$WORK/run" --workers 1 --no-progress
$PY docs/training/nircam/table.py "$WORK"
