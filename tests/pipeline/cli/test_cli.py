"""The command line's exit codes (only input errors are exit 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import InputError


@pytest.mark.parametrize(
    "raised, code",
    [
        (InputError("/data/x.fits: not a FITS file"), 2),
        (ValueError("operands could not be broadcast (raised inside a Dask task)"), 1),
        (FileNotFoundError("/tmp/worker-scratch/spill.bin"), 1),
    ],
)
def test_only_input_errors_exit_2(tmp_path, monkeypatch, capsys, raised, code):
    import pipeline.run

    def fail(config, *, claim, **kwargs):  # fails while running, the run directory claimed
        with claim(config.location):
            raise raised

    monkeypatch.setattr(pipeline.run, "run", fail)
    assert main(["run", "--mosaic", "demo", "--run-dir", str(tmp_path / "r")]) == code
    err = capsys.readouterr().err
    assert str(raised) in err
    if code == 1:
        assert f"traceback in {tmp_path / 'r' / 'pipeline.log'}" in err
        assert "Traceback (most recent call last)" in (tmp_path / "r" / "pipeline.log").read_text()


def test_bad_settings_are_input_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the log of a URL run directory goes to ./pipeline.log
    assert main(["run", "--mosaic", "demo", "--run-dir", str(tmp_path / "r"), "--tile", "0"]) == 2
    assert "tile" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--mosaic",
                "demo",
                "--run-dir",
                "s3://b/r",
                "--storage-option",
                'client_kwargs={"aws_secret_access_key": "x"}',
            ]
        )
        == 2
    )
    assert "client_kwargs.aws_secret_access_key" in capsys.readouterr().err


def _option_fields(cls):
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def test_command_line_options_are_generated_from_the_settings():
    # One owner for each default, choice and help text: the dataclasses.
    from morpheus_core.training.settings import TrainSettings
    from pipeline.cli.parser import build_parser as _parser
    from pipeline.settings import DownstreamSettings, RunSettings

    parser = _parser()
    run_args = parser.parse_args(["run"])
    train_args = parser.parse_args(["train", "--data-dir", "d"])
    for cls, args in ((RunSettings, run_args), (DownstreamSettings, run_args), (TrainSettings, train_args)):
        fields = _option_fields(cls)
        assert fields
        for f in fields:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert getattr(args, f.name) == default, (cls.__name__, f.name)
    # Every science, compute and storage setting with help text is an option of `run`, and
    # non-default values reach the settings object.
    given = {
        "mosaic": "goods-s",
        "model": "standin",
        "tile": 128,
        "stride": 2,
        "precision": "bfloat16",
        "batch_size": 64,
        "retries": 0,
        "workers": 3,
        "threads_per_worker": 2,
        "scheduler": "tcp://h:1",
        "wait_workers": 5.0,
        "gpu": "never",
        "data_dir": Path("d"),
        "mosaics_file": Path("m.toml"),
        "scheduler_security": Path("tls.yaml"),
    }
    argv = ["run", "--restart", "--no-progress"]
    for name, value in given.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    from pipeline.cli.options import from_args

    config = RunSettings(**from_args(parser.parse_args(argv), RunSettings))
    # paths are recorded absolute (resubmit runs from any directory)
    assert {name: getattr(config, name) for name in given} == {
        **given,
        "data_dir": Path("d").absolute(),
        "mosaics_file": Path("m.toml").absolute(),
    }
    assert config.restart and not config.progress
    # every non-flag option is in `given` (a new one must be added there)
    flags = {f.name for f in _option_fields(RunSettings) if f.type in ("bool", bool)}
    assert {f.name for f in _option_fields(RunSettings)} - flags == set(given) | {"cluster", "cluster_config"}
    argv = ["run"] + ["--" + ("no-" if getattr(RunSettings(), f) else "") + f.replace("_", "-") for f in flags]
    flipped = RunSettings(**from_args(parser.parse_args(argv), RunSettings))
    assert all(getattr(flipped, f) != getattr(RunSettings(), f) for f in flags)
    # --weights is the older name of --model
    assert parser.parse_args(["run", "--weights", "w.weights.h5"]).model == "w.weights.h5"


def test_test_hooks_are_not_settings(capsys):
    # Fault injection lives in tests/faults.py; the stand-in network is a model.
    from pipeline.cli.parser import build_parser as _parser
    from pipeline.settings import RunSettings

    names = {f.name for f in dataclasses.fields(RunSettings)}
    assert not names & {"fail_tiles", "tile_delay", "classifier", "weights"}
    for argv in (
        ["run", "--fail-tile", "t0000_0000"],
        ["run", "--tile-delay", "1"],
        ["resubmit", "--run-dir", "r", "--clear-fault-injection"],
    ):
        with pytest.raises(SystemExit):
            _parser().parse_args(argv)
    capsys.readouterr()
    # Manifests written before: classifier/weights become model, the hooks are dropped.
    old = {
        "mosaic": "small",
        "classifier": "standin",
        "weights": None,
        "fail_tiles": ["t0000_0000"],
        "tile_delay": 0.5,
        "run_dir": "r",
    }
    assert RunSettings.from_json(old).model == "standin"
    assert RunSettings.from_json({**old, "classifier": "released", "weights": "w.weights.h5"}).model == str(
        Path("w.weights.h5").absolute()
    )
    assert RunSettings.from_json({**old, "classifier": "released"}).model == "released"


def test_log_file_keeps_info_lines_while_a_local_cluster_silences_dask(tmp_path):
    """Stage lines and Dask's warnings reach pipeline.log, also while a LocalCluster has
    set its loggers' handlers to WARNING (what once dropped every stage line)."""
    import logging

    from distributed.utils import silence_logging_cmgr

    from pipeline.cli.logs import CommandLog

    root, dask_logger = logging.getLogger(), logging.getLogger("distributed")
    before = (list(root.handlers), list(dask_logger.handlers), root.level)
    with CommandLog(tmp_path / "pipeline.log"):
        with silence_logging_cmgr(logging.WARNING):  # as LocalCluster(silence_logs=...) does
            logging.getLogger("pipeline.stage").info("stage classify: start")
            logging.getLogger("distributed.nanny").warning("Worker process still alive after 4.0 seconds, killing")
    # and nothing is left behind (the handlers once leaked across commands in one process)
    assert (list(root.handlers), list(dask_logger.handlers), root.level) == before
    text = (tmp_path / "pipeline.log").read_text()
    assert "INFO pipeline.stage: stage classify: start" in text
    assert "WARNING distributed.nanny: Worker process still alive" in text


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--wait-workers", "-5", "--wait-workers must be a number of seconds >= 0, got -5.0"),
        ("--wait-workers", "nan", "--wait-workers must be"),
        ("--workers", "0", "--workers must be >= 1, got 0"),
        ("--threads-per-worker", "0", "--threads-per-worker must be >= 1"),
        ("--retries", "-1", "--retries must be >= 0, got -1"),
        ("--batch-size", "0", "--batch-size must be >= 1"),
        ("--tile", "0", "--tile must be >= 1"),
        ("--stride", "0", "--stride must be in [1, 40]"),
        ("--stride", "41", "--stride must be in [1, 40] (a larger stride leaves pixels that no window covers), got 41"),
        ("--aperture-radius", "nan", "--aperture-radius must be a finite number of arcsec > 0, got nan"),
        ("--aperture-radius", "-1", "--aperture-radius must be"),
        ("--min-distance", "0", "--min-distance must be >= 1"),
        ("--nd-max", "0", "--nd-max must be >= 1"),
        ("--max-segment-pixels", "0", "--max-segment-pixels must be >= 1"),
        ("--threshold", "1.5", "background threshold must be in [0, 1)"),
    ],
)
def test_every_numeric_option_has_a_range(tmp_path, capsys, option, value, says):
    # --wait-workers -5, --stride 41 and --aperture-radius nan used to be accepted.
    assert main(["run", "--mosaic", "nope", "--run-dir", str(tmp_path / "r"), option, value]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_refused_command_leaves_the_folder_as_it_was(tmp_path, capsys):
    # A refused command used to leave .lock and pipeline.log behind (and create a new folder).
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for argv in (
        ["run", "--mosaic", "nope", "--run-dir", str(mine)],
        ["run", "--mosaic", "nope", "--run-dir", str(tmp_path / "new")],
        ["resubmit", "--run-dir", str(mine)],
        ["catalog", "--run-dir", str(mine)],
        ["segment", "--run-dir", str(tmp_path / "new")],
    ):
        assert main(argv) == 2, argv
        assert "error: " in capsys.readouterr().err
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"], argv
        assert not (tmp_path / "new").exists(), argv


def test_storage_options_of_a_local_run_directory_are_dropped_with_a_note(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--mosaic",
                "nope",
                "--run-dir",
                str(tmp_path / "r"),
                "--storage-option",
                "endpoint_url=http://127.0.0.1:9000",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "note: --storage-option endpoint_url ignored" in err and "local run directory" in err
    assert (
        main(["run", "--mosaic", "nope", "--run-dir", str(tmp_path / "r"), "--storage-option", "Bearer hunter2"]) == 2
    )  # not KEY=VALUE: refused, never echoed
    err = capsys.readouterr().err
    assert "--storage-option number 1: expected KEY=VALUE" in err and "hunter2" not in err


def test_markers_and_other_paths_are_recorded_absolute(tmp_path, monkeypatch):
    from pipeline.settings import DownstreamSettings, RunSettings

    monkeypatch.chdir(tmp_path)
    assert DownstreamSettings(markers="sources.csv").markers == str(tmp_path / "sources.csv")
    config = RunSettings(
        run_dir="runs/x", mosaics_file="m.toml", data_dir="~/data", cluster_config="../j.yaml", model="w.weights.h5"
    )
    assert (config.run_dir, config.mosaics_file, config.cluster_config) == (
        tmp_path / "runs" / "x",
        tmp_path / "m.toml",
        tmp_path.parent / "j.yaml",
    )
    assert config.data_dir == Path("~/data").expanduser() and config.model == str(tmp_path / "w.weights.h5")
    assert RunSettings(model="standin").model == "standin"
