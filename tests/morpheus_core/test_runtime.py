"""Threads follow the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from morpheus_core.runtime import configure_threads

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: TensorFlow fixes its thread pools at first use.
_ONE_THREAD = r"""
import json, os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
from morpheus_core.runtime import configure_threads
threads = configure_threads(1)
import numpy as np
import tensorflow as tf
from morpheus_core.classifier import KerasWindowClassifier
from morpheus_core.engine import classify_image
from morpheus_core.model import build_model

clf = KerasWindowClassifier(build_model(crop=True))
image = np.random.default_rng(0).normal(size=(4, 72, 104)).astype(np.float32)
classify_image(image, clf, batch_size=256)  # compile outside the measurement
c0, t0 = time.process_time(), time.perf_counter()
for _ in range(3):
    classify_image(image, clf, batch_size=256)
utilisation = (time.process_time() - c0) / (time.perf_counter() - t0)
try:
    configure_threads(2)
    late = "no error"
except RuntimeError as exc:
    late = str(exc)
print(json.dumps({
    "threads": threads,
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    "utilisation": utilisation,
    "late": late,
}))
"""


@pytest.mark.slow
def test_engine_with_one_thread_uses_one_core():
    proc = subprocess.run([sys.executable, "-c", _ONE_THREAD], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["threads"] == {"intra_op": 1, "inter_op": 1}
    assert (info["intra"], info["inter"]) == (1, 1)
    assert set(info["env"].values()) == {"1"}
    # One busy thread gives CPU time <= wall time (plus a little for the runtime's
    # bookkeeping threads); two threads on a quiet 2-core machine measured ~1.8. A
    # loaded machine only lowers the figure, so the bound cannot fail spuriously.
    assert info["utilisation"] < 1.25, info
    assert "cannot change to 2" in info["late"]


def test_thread_count_must_be_positive():
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        configure_threads(0)
