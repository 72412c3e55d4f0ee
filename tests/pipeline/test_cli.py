"""The command line's exit codes (issue #14: only input errors are exit 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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


def _option_fields(cls):
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def test_command_line_options_are_generated_from_the_settings():
    # One owner for each default, choice and help text (issue #14): the dataclasses.
    from morpheus_core.training.settings import TrainSettings
    from pipeline.__main__ import _parser
    from pipeline.config import RunSettings
    from pipeline.downstream import DownstreamSettings

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
    given = {"mosaic": "goods-s", "model": "standin", "tile": 128, "stride": 2, "precision": "bfloat16",
             "batch_size": 64, "retries": 0, "workers": 3, "threads_per_worker": 2, "scheduler": "tcp://h:1",
             "wait_workers": 5.0, "gpu": "never", "data_dir": Path("d"), "mosaics_file": Path("m.toml"),
             "scheduler_security": Path("tls.yaml")}
    argv = ["run", "--restart", "--no-progress"]
    for name, value in given.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    from pipeline.options import from_args

    config = RunSettings(**from_args(parser.parse_args(argv), RunSettings))
    assert {name: getattr(config, name) for name in given} == given
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
    from pipeline.__main__ import _parser
    from pipeline.config import RunSettings

    names = {f.name for f in dataclasses.fields(RunSettings)}
    assert not names & {"fail_tiles", "tile_delay", "classifier", "weights"}
    for argv in (["run", "--fail-tile", "t0000_0000"], ["run", "--tile-delay", "1"],
                 ["resubmit", "--run-dir", "r", "--clear-fault-injection"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(argv)
    capsys.readouterr()
    # Manifests written before: classifier/weights become model, the hooks are dropped.
    old = {"mosaic": "small", "classifier": "standin", "weights": None, "fail_tiles": ["t0000_0000"],
           "tile_delay": 0.5, "run_dir": "r"}
    assert RunSettings.from_json(old).model == "standin"
    assert RunSettings.from_json({**old, "classifier": "released", "weights": "w.weights.h5"}).model == "w.weights.h5"
    assert RunSettings.from_json({**old, "classifier": "released"}).model == "released"


def test_log_file_keeps_info_lines_while_a_local_cluster_silences_dask(tmp_path):
    """Stage lines and Dask's warnings reach pipeline.log, also while a LocalCluster has
    set its loggers' handlers to WARNING (what once dropped every stage line)."""
    import logging

    from distributed.utils import silence_logging_cmgr

    from pipeline.__main__ import _setup_logging

    root, dask_logger = logging.getLogger(), logging.getLogger("distributed")
    before = (list(root.handlers), list(dask_logger.handlers), root.level)
    try:
        _setup_logging(tmp_path)
        with silence_logging_cmgr(logging.WARNING):  # as LocalCluster(silence_logs=...) does
            logging.getLogger("pipeline.stage").info("stage classify: start")
            logging.getLogger("distributed.nanny").warning("Worker process still alive after 4.0 seconds, killing")
    finally:
        for handler in set(root.handlers) - set(before[0]):
            root.removeHandler(handler)
            handler.close()
        for handler in set(dask_logger.handlers) - set(before[1]):
            dask_logger.removeHandler(handler)
        root.setLevel(before[2])
    text = (tmp_path / "pipeline.log").read_text()
    assert "INFO pipeline.stage: stage classify: start" in text
    assert "WARNING distributed.nanny: Worker process still alive" in text
