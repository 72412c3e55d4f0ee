"""The command line's exit codes (issue #14: only input errors are exit 2)."""

from __future__ import annotations

import pytest

from pipeline.__main__ import main
from pipeline.errors import InputError


@pytest.mark.parametrize("raised, code", [
    (InputError("/data/x.fits: not a FITS file"), 2),
    (ValueError("operands could not be broadcast (raised inside a Dask task)"), 1),
    (FileNotFoundError("/tmp/worker-scratch/spill.bin"), 1),
])
def test_only_input_errors_exit_2(tmp_path, monkeypatch, capsys, raised, code):
    import pipeline.run

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(pipeline.run, "run", fail)
    assert main(["run", "--mosaic", "demo", "--run-dir", str(tmp_path / "r")]) == code
    err = capsys.readouterr().err
    assert str(raised) in err
    if code == 1:
        assert "traceback in" in err


def test_bad_settings_are_input_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the log of a URL run directory goes to ./pipeline.log
    assert main(["run", "--mosaic", "demo", "--run-dir", str(tmp_path / "r"), "--tile", "0"]) == 2
    assert "tile" in capsys.readouterr().err
    assert main(["run", "--mosaic", "demo", "--run-dir", "s3://b/r",
                 "--storage-option", 'client_kwargs={"aws_secret_access_key": "x"}']) == 2
    assert "client_kwargs.aws_secret_access_key" in capsys.readouterr().err


def test_command_line_defaults_are_the_settings_defaults():
    # One owner for each default (issue #14): the CLI's defaults come from the dataclasses.
    from pipeline.__main__ import _parser
    from pipeline.config import RunConfig
    from pipeline.downstream import DownstreamSettings

    args = _parser().parse_args(["run"])
    config, settings = RunConfig(), DownstreamSettings()
    for option, field in [("mosaic", "mosaic"), ("tile", "tile"), ("batch_size", "batch_size"), ("stride", "stride"),
                          ("retries", "retries"), ("threads_per_worker", "threads_per_worker"),
                          ("wait_workers", "wait_workers"), ("cluster", "cluster"), ("gpu", "gpu"),
                          ("precision", "precision"), ("classifier", "classifier"), ("tile_delay", "tile_delay")]:
        assert getattr(args, option) == getattr(config, field), option
    for option, field in [("detection", "detection"), ("min_distance", "min_distance"), ("nd_max", "nd_max"),
                          ("flux_band", "flux_band"), ("aperture_radius", "aperture_arcsec")]:
        assert getattr(args, option) == getattr(settings, field), option
