"""What users read: refusals in the command line's words, before anything starts."""

from __future__ import annotations

import ast
import dataclasses
import re

import pytest

from pipeline.cli import main
from tests.pipeline.small_runs import REPO, cli_args, small_config, write_mosaic


def _messages():
    """(file, line, text) of every InputError and RunError raised in pipeline/ (the
    literal parts of its message)."""
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and getattr(node.exc.func, "id", "") in ("InputError", "RunError")
            ):
                text = "".join(
                    n.value for n in ast.walk(node.exc) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                )
                yield path.relative_to(REPO), node.lineno, text


def test_messages_name_options_not_python_keywords():
    # "rerun with --restart (overwrite=True)", "a GPU is required (gpu='require')",
    # "threads_per_worker must be >= 1" were shown on the terminal.
    from pipeline.settings import DownstreamSettings, RunSettings, TrainRunSettings, TrainSettings, ViewSettings

    identifiers = {
        f.name
        for cls in (DownstreamSettings, RunSettings, TrainRunSettings, TrainSettings, ViewSettings)
        for f in dataclasses.fields(cls)
        if "help" in f.metadata and "_" in f.name
    } | {"n_workers"}
    python = re.compile(r"\b(" + "|".join(sorted(identifiers)) + r")\b|\b\w+=(True|False|None|'[^']*')")
    found = [f"{path}:{line}: {text}" for path, line, text in _messages() if python.search(text)]
    assert len(list(_messages())) > 100  # the scan sees the messages
    assert found == []


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run directory made with --tile 40 (in-process cluster)."""
    from distributed import Client, LocalCluster

    from pipeline.run import run

    folder = tmp_path_factory.mktemp("refusals")
    toml = write_mosaic(folder / "data")
    config = small_config(folder / "run", toml)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        run(config, client=client, echo=lambda line: None)
    return config.run_dir, toml


def test_other_result_settings_are_refused_before_anything_starts(finished, monkeypatch, capsys):
    # `run --tile 64` on a run made with tile 40 started a cluster, then refused with
    # "mosaic.zarr was written with chunk 40, not 64; rerun with --restart (overwrite=True)".
    import pipeline.cluster.client
    import pipeline.run

    def started(*args, **kwargs):
        raise AssertionError("started before refusing")

    monkeypatch.setattr(pipeline.cluster.client, "make_client", started)
    monkeypatch.setattr(pipeline.run, "ingest", started)
    run_dir, toml = finished
    log = run_dir / "pipeline.log"
    before = log.stat().st_mtime_ns if log.exists() else None
    argv = cli_args(run_dir, toml)
    tile = argv.index("--tile")
    argv[tile + 1] = "64"
    assert main([*argv, "--stride", "2"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {run_dir}: this run directory was made with --tile 40 --stride 1, not --tile 64 --stride 2; give "
        "--tile 40 --stride 1 to resume it, --restart to start over, or give another --run-dir"
    ]
    assert (log.stat().st_mtime_ns if log.exists() else None) == before  # refused: nothing written there


def test_the_python_api_refuses_in_the_same_words(finished):
    from pipeline.errors import InputError
    from pipeline.run import run

    run_dir, toml = finished
    with pytest.raises(InputError, match=r"made with --model standin, not --model standin-sky; give --model standin"):
        run(dataclasses.replace(small_config(run_dir, toml), model="standin-sky"), echo=lambda line: None)


def test_a_mosaic_store_of_another_tile_is_refused_in_option_words(finished, tmp_path):
    # Without a manifest (a first run interrupted after the ingest), the store itself refuses.
    import shutil

    from pipeline.errors import InputError
    from pipeline.inputs.grid import validate_bands
    from pipeline.inputs.ingest import ingest
    from pipeline.inputs.mosaic_files import resolve_mosaic

    run_dir, toml = finished
    shutil.copytree(run_dir / "mosaic.zarr", tmp_path / "mosaic.zarr")
    bands = validate_bands(resolve_mosaic("small", mosaics_file=toml))
    with pytest.raises(InputError) as err:
        ingest(bands, tmp_path / "mosaic.zarr", chunk=64)
    assert str(err.value).endswith(
        "was written with --tile 40, not --tile 64; give --tile 40 to resume, or --restart to rewrite it"
    )
