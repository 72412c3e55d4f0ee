"""The GPU check stays runnable: the released weights exported to a Keras
file give TensorFlow's probabilities under KERAS_BACKEND=jax, and benchmarks/gpu_check.sh
runs end to end on this CPU (JAX on CPU, tiny sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("jax")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", HOME=str(tmp_path), **extra)
    return env


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The released weights exported once, as benchmarks/gpu_prepare.sh does."""
    folder = tmp_path_factory.mktemp("bundle")
    out = folder / "morpheus-released.weights.h5"
    proc = subprocess.run(
        [sys.executable, "benchmarks/export_weights.py", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(folder),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


_JAX_PROBS = """
import sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from morpheus_core.weights import load_model
windows = np.load(sys.argv[2])
for crop in (False, True):
    model = load_model(sys.argv[1], crop=crop)
    np.save(sys.argv[3 + crop], np.asarray(model(windows, training=False)))
"""


def test_exported_weights_under_jax_give_tensorflow_probabilities(exported, tmp_path):
    from morpheus_core.weights import load_released_model

    rng = np.random.default_rng(15)
    windows = rng.standard_normal((6, 40, 40, 4)).astype(np.float32)
    np.save(tmp_path / "windows.npy", windows)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _JAX_PROBS,
            str(exported),
            str(tmp_path / "windows.npy"),
            str(tmp_path / "full.npy"),
            str(tmp_path / "cropped.npy"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(tmp_path, KERAS_BACKEND="jax"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for crop, name in ((False, "full"), (True, "cropped")):
        reference = np.asarray(load_released_model(crop=crop)(windows, training=False))
        jax_probs = np.load(tmp_path / f"{name}.npy")
        assert jax_probs.shape == reference.shape
        # Float32 on two backends: convolutions summed in another order; the port tests
        # allow 1e-4 against the TF1 reference; measured here 2.1e-6.
        np.testing.assert_allclose(jax_probs, reference, atol=2e-5, rtol=0)


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(exported, tmp_path):
    # The bundle needs only the weights here: GPU_CHECK_PYTHON runs this venv as it is
    # (the wheels are for Python 3.12 on the GPU machine).
    env = _env(
        tmp_path,
        GPU_CHECK_SMALL="1",
        GPU_CHECK_PYTHON=sys.executable,
        GPU_BUNDLE=str(exported.parent),
        GPU_CHECK_DIR=str(tmp_path / "work"),
    )
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "JAX" in out and "cpu" in out.lower()
    for line in (
        "engine_bfloat16_windows_per_s",
        "bf16_vote_agreement",
        "| float32 |",
        "| tf32 |",
        "| bfloat16 |",
        "share outside the network",
        "GPU memory",
        "cli_classification_windows_per_s",
        "cli_whole_run_windows_per_s",
        "CLI classification / engine",
    ):
        assert line in out, line
    agreement = float(out.split("bf16_vote_agreement ")[1].split()[0])
    assert agreement > 0.99  # bfloat16 against float32 votes (docs/performance.md: ~0.999)
    assert (tmp_path / "work" / "run" / "classification.zarr").exists()
