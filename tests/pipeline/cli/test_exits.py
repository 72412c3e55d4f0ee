"""pipeline.cli.exits: every command maps its errors to the same exit codes and lines,
and leaves no logging handler behind."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from pipeline.cli import main
from pipeline.errors import InputError, RunError
from tests.pipeline.small_runs import REPO, python_env


def _fake_run(tmp_path):
    """A folder with a manifest: enough for segment, catalog and resubmit to reach their work."""
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(
        json.dumps({"run_id": "x", "model": "m", "config": {"mosaic": "demo", "run_dir": str(run_dir)}})
    )
    return run_dir


def _failing(monkeypatch, tmp_path, command, raised):
    """Make ``command``'s work raise ``raised`` (after claiming the run directory where
    the command claims one, so that its log file is open); returns its argv."""
    import pipeline.cli.view
    import pipeline.downstream.redo
    import pipeline.run
    import pipeline.rundir.status
    import pipeline.training.run

    def fail(*args, claim=None, **kwargs):
        if claim is not None:
            from pipeline.rundir.location import Location

            location = args[0].location if hasattr(args[0], "location") else Location(args[0])
            with claim(location):
                raise raised
        raise raised

    run_dir = _fake_run(tmp_path)
    target = {
        "run": (pipeline.run, "run"),
        "resubmit": (pipeline.run, "resubmit"),
        "segment": (pipeline.downstream.redo, "redo_downstream"),
        "catalog": (pipeline.downstream.redo, "redo_downstream"),
        "status": (pipeline.rundir.status, "status"),
        "train": (pipeline.training.run, "run_training"),
        "view": (pipeline.cli.view, "prepare"),
    }[command]
    monkeypatch.setattr(*target, fail)
    if command == "run":
        return ["run", "--run-dir", str(run_dir)]
    if command == "train":
        return ["train", "--data-dir", str(run_dir), "--out", str(tmp_path / "out")]
    return [command, "--run-dir", str(run_dir)]


COMMANDS = ("run", "resubmit", "segment", "catalog", "status", "train", "view")


@pytest.fixture
def handlers():
    """The handlers of the root and Dask loggers and the root level, before and after."""
    root, dask_logger = logging.getLogger(), logging.getLogger("distributed")

    def state():
        return list(root.handlers), list(dask_logger.handlers), root.level

    before = state()
    yield state
    assert state() == before  # what a command added is gone when it returned


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "raised, code, prefix",
    [
        (InputError("/data/x.fits: not a FITS file"), 2, "error"),
        (RunError("3 tile(s) failed after 2 retries"), 1, "failed"),
    ],
)
def test_every_command_maps_input_and_run_errors_alike(
    tmp_path, monkeypatch, capsys, handlers, command, raised, code, prefix
):
    # train once showed a RunError as an unexpected failure with its type name; view
    # and train had mappings of their own.
    argv = _failing(monkeypatch, tmp_path, command, raised)
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    failed = {"train": "training failed", "view": "view failed"}.get(command, "run failed")
    assert lines == [f"{'error' if prefix == 'error' else failed}: {raised}"], lines


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_says_how_to_resume_when_interrupted(tmp_path, monkeypatch, capsys, handlers, command):
    from pipeline.cli.exits import INTERRUPTED

    assert main(_failing(monkeypatch, tmp_path, command, KeyboardInterrupt())) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"interrupted: {INTERRUPTED[command]}"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_reports_an_unexpected_error_in_one_line(tmp_path, monkeypatch, capsys, handlers, command):
    # view once let an unexpected error escape as a bare traceback.
    assert main(_failing(monkeypatch, tmp_path, command, ZeroDivisionError("a bug"))) == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert (
        first.endswith("failed: ZeroDivisionError: a bug") or "failed: ZeroDivisionError: a bug (traceback in" in first
    ), err
    log = {
        "run": tmp_path / "r" / "pipeline.log",
        "resubmit": tmp_path / "r" / "pipeline.log",
        "segment": tmp_path / "r" / "pipeline.log",
        "catalog": tmp_path / "r" / "pipeline.log",
        "train": tmp_path / "out" / "train.log",
    }.get(command)
    if log is not None:  # the traceback in the command's log file, one line on the terminal
        assert f"(traceback in {log})" in first and len(err.strip().splitlines()) == 1, err
        assert "Traceback (most recent call last)" in log.read_text()
    else:  # no log file: the traceback on the terminal, where it is kept
        assert "Traceback (most recent call last)" in err


def test_commands_in_one_process_do_not_write_into_each_others_logs(tmp_path, monkeypatch, capsys, handlers):
    # The log file's handler was never removed: a second command's lines went into the
    # first one's pipeline.log too.
    import pipeline.run

    def quiet(config, *, claim, **kwargs):
        with claim(config.location):
            logging.getLogger("pipeline.stage").info("stage %s: start", config.run_dir.name)

    monkeypatch.setattr(pipeline.run, "run", quiet)
    for name in ("first", "second"):
        assert main(["run", "--run-dir", str(tmp_path / name)]) == 0
    first = (tmp_path / "first" / "pipeline.log").read_text()
    assert "stage first: start" in first and "stage second" not in first


def test_status_of_a_folder_without_a_run_says_so_once(tmp_path):
    # It printed "input error: ..." (logging's last resort) and then "error: ...".
    env = {k: v for k, v in python_env().items()}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "status", "--run-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'none'}: no run here (manifest.json not found)"]
