"""pipeline.quiet: no TensorFlow start-up lines on the terminal unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pipeline.cluster.test_client import cpu_hogs
from tests.pipeline.small_runs import REPO, python_env, write_mosaic

#: Lines TensorFlow, absl, XLA or Dask's nanny print that a quiet run must not show.
CHATTER = ("oneDNN", "absl", "cuda", "I0000", "E0000", "XLA", "cpu_feature_guard", "still alive", "killing")


#: A ``sitecustomize`` for the quiet run: each worker process (a multiprocessing child)
#: takes 6 s more to exit, as a worker that has loaded TensorFlow can on a loaded machine
#: (measured: 7.6 s from the worker's close to its exit, two cores busy beside it).
SLOW_WORKER_EXIT = (
    "import atexit, sys, time\nif '--multiprocessing-fork' in sys.argv:\n    atexit.register(time.sleep, 6)\n"
)


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_native_writes_are_captured_and_shown_again_on_failure():
    quiet = _child(
        "import os\nfrom pipeline.quiet import native_stderr_captured\n"
        "with native_stderr_captured():\n    os.write(2, b'native chatter\\n')\n"
        "os.write(2, b'after\\n')"
    )
    assert quiet.returncode == 0 and quiet.stderr == "after\n"
    failing = _child(
        "import os\nfrom pipeline.quiet import native_stderr_captured\n"
        "with native_stderr_captured():\n    os.write(2, b'why it failed\\n')\n    raise SystemExit(3)"
    )
    assert failing.returncode == 3 and "why it failed" in failing.stderr
    shown = _child(
        "import os\nfrom pipeline.quiet import native_stderr_captured\n"
        "with native_stderr_captured(False):\n    os.write(2, b'verbose\\n')"
    )
    assert shown.stderr == "verbose\n"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_with_the_released_network_is_quiet_unless_verbose(tmp_path):
    toml = write_mosaic(tmp_path / "data")
    env = {k: v for k, v in python_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_WORKER_EXIT)
    outputs = {}
    for verbose in (False, True):
        args = [
            "run",
            "--mosaic",
            "small",
            "--mosaics-file",
            str(toml),
            "--run-dir",
            str(tmp_path / f"r{verbose}"),
            "--tile",
            "64",
            "--stride",
            "8",
            "--workers",
            "1",
            "--no-progress",
        ] + (["--verbose"] if verbose else [])
        # The quiet run as on a loaded machine (two cores busy beside it, a worker that
        # needs seconds to exit): it must still end without the nanny's "still alive
        # ... killing" (Dask's own close waits 4 s).
        slow = {} if verbose else {"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{env['PYTHONPATH']}"}
        with cpu_hogs(0 if verbose else 2):
            proc = subprocess.run(
                [sys.executable, "-m", "pipeline", *args],
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**env, **slow},
                timeout=600,
            )
        assert proc.returncode == 0, proc.stderr
        outputs[verbose] = proc.stdout + proc.stderr
    assert not [w for w in CHATTER if w in outputs[False]], outputs[False]
    # The check can fail: with --verbose TensorFlow's start-up lines are there.
    assert "oneDNN" in outputs[True] or "I0000" in outputs[True], outputs[True]
    assert "tiles: " in outputs[False] and os.path.exists(tmp_path / "rFalse" / "catalog" / "catalog.csv")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_is_as_quiet_as_run_unless_verbose(tmp_path):
    # `train` printed TensorFlow's start-up lines (oneDNN, cuda drivers, "E0000 ... failed
    # call to cuInit"), which `run` already kept off the terminal.
    env = {k: v for k, v in python_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell
    outputs = {}
    for verbose in (False, True):
        args = [
            "train",
            "--data-dir",
            str(tmp_path / "set"),
            "--out",
            str(tmp_path / f"out{verbose}"),
            "--synthetic",
            "12",
            "--synthetic-size",
            "64",
            "--init",
            "scratch",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--eval-max",
            "2",
            "--threads",
            "1",
        ] + (["--verbose"] if verbose else [])
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=500
        )
        assert proc.returncode == 0, proc.stderr
        outputs[verbose] = proc.stdout + proc.stderr
    assert not [w for w in CHATTER if w in outputs[False]], outputs[False]
    assert "done in " in outputs[False] and (tmp_path / "outFalse" / "model.weights.h5").exists()
    # The check can fail: with --verbose TensorFlow's start-up lines are there.
    assert "oneDNN" in outputs[True] or "I0000" in outputs[True], outputs[True]
