"""pipeline.cli.parser: which options each command takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.parser import RESUBMIT_OPTIONS, build_parser, option_kind
from pipeline.settings import RunSettings
from pipeline.settings.fields import option_flag


def _argv(names):
    """Command-line words giving each RunSettings option in ``names`` a non-default value."""
    values = {
        "batch_size": "64",
        "retries": "0",
        "workers": "3",
        "threads_per_worker": "2",
        "scheduler": "tls://h:8786",
        "scheduler_security": "tls.yaml",
        "wait_workers": "5",
        "cluster": "local",
        "cluster_config": "jobqueue.yaml",
        "gpu": "never",
    }
    words = []
    for name in names:
        words.append(option_flag(RunSettings, name))
        if name in values:
            words.append(values[name])
    return words


def test_resubmit_takes_every_option_that_does_not_change_the_result(monkeypatch, tmp_path):
    # resubmit rejected --no-progress, --no-tls, --scheduler-security, --keep-partials ...
    import pipeline.run

    assert set(RESUBMIT_OPTIONS) == set(option_kind("compute")) | {"keep_partials", "progress", "verbose"}
    assert not set(RESUBMIT_OPTIONS) & set(RunSettings().result_settings())  # the result cannot change
    seen = {}

    def resubmit(run_dir, *, downstream, claim, **overrides):
        seen.update(overrides)

    monkeypatch.setattr(pipeline.run, "resubmit", resubmit)
    assert main(["resubmit", "--run-dir", str(tmp_path / "r"), *_argv(RESUBMIT_OPTIONS)]) == 0
    assert seen == {
        "batch_size": 64,
        "retries": 0,
        "workers": 3,
        "threads_per_worker": 2,
        "scheduler": "tls://h:8786",
        "scheduler_security": Path("tls.yaml"),
        "wait_workers": 5.0,
        "cluster": "local",
        "cluster_config": Path("jobqueue.yaml"),
        "gpu": "never",
        "tls": False,
        "keep_partials": True,
        "progress": False,
        "verbose": True,
    }
    # Not given: the recorded values (only progress follows the terminal).
    seen.clear()
    assert main(["resubmit", "--run-dir", str(tmp_path / "r")]) == 0
    assert set(seen) == {"progress"}


@pytest.mark.parametrize("command", ["resubmit", "segment", "catalog"])
@pytest.mark.parametrize(
    "option", [["--tile", "64"], ["--model", "standin"], ["--stride", "2"], ["--restart"], ["--mosaic", "goods-s"]]
)
def test_result_settings_cannot_be_changed_by_commands_that_resume(command, option, capsys):
    build_parser().parse_args([command, "--run-dir", "r"])
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--run-dir", "r", *option])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_segment_and_catalog_leave_options_not_given_out():
    # So that the last run's settings can fill them (pipeline.cli.downstream).
    args = build_parser().parse_args(["catalog", "--run-dir", "r", "--nd-max", "5"])
    assert {k: v for k, v in vars(args).items() if k not in ("command", "run_dir", "storage_option")} == {"nd_max": 5}


def test_every_option_of_run_parses_as_its_settings_field():
    parser = build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["run"]._actions}
    for name in option_kind("compute") + option_kind("science") + option_kind("input") + option_kind("storage"):
        assert option_flag(RunSettings, name) in actions[name].option_strings, name
