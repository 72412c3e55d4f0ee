"""morpheus_survey.run: the settings the command line would make, handed to pipeline.run.run."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.run
from morpheus_survey import InputError, run, run_options
from pipeline.cli.main import main
from tests.pipeline.small_runs import write_mosaic


@pytest.fixture
def captured(monkeypatch):
    """pipeline.run.run replaced by a recorder: what each caller asked for."""
    calls = []

    def record(config, *, client=None, echo=print, downstream=None, claim=None):
        calls.append((config, downstream))
        return "summary"

    monkeypatch.setattr(pipeline.run, "run", record)
    return calls


def _toml_with_threshold(folder: Path) -> Path:
    toml = write_mosaic(folder)
    toml.write_text(toml.read_text() + "threshold = 0.25\n")
    return toml


def test_run_builds_the_settings_the_command_line_builds(tmp_path, captured):
    toml = _toml_with_threshold(tmp_path / "data")
    run_dir = tmp_path / "runs" / "small"
    assert (
        main(
            [
                "run",
                "--mosaic",
                "small",
                "--mosaics-file",
                str(toml),
                "--run-dir",
                str(run_dir),
                "--tile",
                "64",
                "--model",
                "standin",
                "--no-progress",
                "--workers",
                "1",
                "--min-distance",
                "6",
            ]
        )
        == 0
    )
    assert (
        run("small", run_dir, mosaics_file=toml, tile=64, model="standin", progress=False, workers=1, min_distance=6)
        == "summary"
    )
    (cli_config, cli_downstream), (api_config, api_downstream) = captured
    assert api_config == cli_config
    assert api_downstream == cli_downstream
    assert api_downstream.threshold == 0.25  # the TOML mosaic's own threshold, as on the command line
    assert api_config.run_dir == run_dir and api_config.batch_size == 512  # the settings' own defaults


def test_a_relative_run_dir_is_made_absolute_as_on_the_command_line(tmp_path, captured, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("demo", "runs/demo", model="standin")
    assert captured[0][0].run_dir == tmp_path / "runs" / "demo"


def test_unknown_and_bad_options_are_refused_before_anything_changes(tmp_path, captured):
    with pytest.raises(TypeError, match="unexpected keyword.*tiles"):
        run("demo", tmp_path / "run", tiles=64)
    with pytest.raises(InputError, match="--tile must be >= 1, got 0"):
        run("demo", tmp_path / "run", tile=0)
    with pytest.raises(InputError, match="min-distance"):
        run("demo", tmp_path / "run", min_distance=-1)
    assert captured == [] and not (tmp_path / "run").exists()
    options = run_options()
    assert {"tile", "model", "workers", "progress", "storage_options"} <= set(options["run"])
    assert {"detection", "threshold", "min_distance", "markers"} <= set(options["downstream"])
    assert "mosaic" not in options["run"] and "run_dir" not in options["run"]


def test_a_refused_run_leaves_no_log_and_no_lock(tmp_path):
    """The real pipeline.run.run: a mosaic that is not there is refused (InputError),
    and the run directory stays as it was."""
    run_dir = tmp_path / "run"
    with pytest.raises(InputError, match="nowhere"):
        run("nowhere", run_dir, model="standin", mosaics_file=write_mosaic(tmp_path / "data"))
    assert not run_dir.exists()
