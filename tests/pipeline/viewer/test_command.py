"""``python -m pipeline view`` (``pipeline.viewer.command``): the command line, its exit
codes and lines; an exported run made by ``pipeline run``; a damaged classification named,
not drawn; a run directory in an object store. The map in a browser:
``test_browser.py``; its page: ``test_page.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest
from astropy.table import Table

from pipeline.cli.view import add_parser, main
from pipeline.program import program
from pipeline.rundir.location import Location
from pipeline.viewer.command import prepare, view_command
from pipeline.viewer.server import MapServer
from tests.pipeline.test_s3 import BUCKET, endpoint  # noqa: F401 - the moto S3 server fixture


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["view", *argv])


@pytest.mark.slow
def test_export_of_a_classified_run(classified_dir, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(classified_dir), "--export", str(site))) == 0
    out = capsys.readouterr().out
    assert str(site) in out
    html = (site / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from the internet
    for url in re.findall(r"(?:src|href)=\"\./([^\"]+)\"", html):
        assert (site / url).is_file(), url
    record = json.loads((classified_dir / "viewer" / "pyramid.json").read_text())
    assert record["complete"] and (site / "tiles" / "bands" / "0" / "0" / "0.png").is_file()
    n = len(Table.read(classified_dir / "catalog" / "catalog.parquet"))
    assert f"({n} catalog objects)" in out


def _chunk_file(run_dir: Path, array: str = "mean") -> tuple[Path, str]:
    """A chunk file of an array of ``classification.zarr`` in the middle of the image, and its chunk index."""
    files = sorted(p for p in (run_dir / "classification.zarr" / array / "c").rglob("*") if p.is_file())
    chunk = files[len(files) // 2]
    index = tuple(int(part) for part in chunk.relative_to(run_dir / "classification.zarr" / array / "c").parts)
    return chunk, str(index)


@pytest.mark.slow
def test_a_deleted_chunk_of_the_classification_is_named_not_drawn(classified_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(classified_dir, run_dir, ignore=shutil.ignore_patterns("viewer"))
    chunk, index = _chunk_file(run_dir)
    chunk.unlink()  # zarr would read the missing chunk as its fill value: class images of 0
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 2
    err = capsys.readouterr().err
    assert f"'mean' chunk {index}" in err and f"{chunk} is missing" in err, err
    assert not site.exists() and not (run_dir / "viewer").exists()


@pytest.mark.slow
def test_a_corrupted_chunk_is_refused_before_the_pyramid_is_replaced(classified_dir, tmp_path, capsys):
    """A chunk of the same size with other bytes (it still decodes, to other values) is named
    when the map would be drawn from it; the map drawn before it was damaged stays."""
    import zarr

    run_dir = tmp_path / "run"
    shutil.copytree(classified_dir, run_dir, ignore=shutil.ignore_patterns("viewer"))
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 0
    capsys.readouterr()
    good = zarr.open_group(str(run_dir / "classification.zarr"), mode="r")["mean"][:]
    chunk, index = _chunk_file(run_dir)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))
    assert (zarr.open_group(str(run_dir / "classification.zarr"), mode="r")["mean"][:] != good).any()
    record = (run_dir / "viewer" / "pyramid.json").read_bytes()
    exported = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert main(_args("--run-dir", str(run_dir), "--export", str(site), "--rebuild")) == 2
    err = capsys.readouterr().err
    assert f"'mean' chunk {index}" in err and f"{chunk} does not match its recorded" in err, err
    assert (run_dir / "viewer" / "pyramid.json").read_bytes() == record  # not removed
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == exported
    # Without --rebuild the map drawn from the verified store is reused: nothing is read again.
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 0


def test_bad_run_directory_exits_2_naming_it(tmp_path, capsys):
    assert main(_args("--run-dir", str(tmp_path / "nothing"))) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and "manifest.json" in err


def test_view_command_and_help():
    assert view_command("runs/demo") == f"{program()} view --run-dir runs/demo"
    assert (
        view_command("s3://b/run", {"endpoint_url": "http://h:9000"})
        == f"{program()} view --run-dir s3://b/run --storage-option endpoint_url=http://h:9000"
    )
    args = _args("--run-dir", "s3://bucket/run", "--port", "0")
    assert args.run_dir == "s3://bucket/run" and args.host == "127.0.0.1" and args.export is None


@pytest.mark.slow
def test_run_directory_in_an_object_store(scene_dir, request, tmp_path, capsys):
    """A run in S3 (a local moto server): the pyramid is built into the bucket, served from it and exported."""
    import urllib.request

    s3_url = request.getfixturevalue("endpoint")  # the moto server of tests/pipeline/test_s3.py
    url = f"s3://{BUCKET}/view-run"
    store = Location(url, {"endpoint_url": s3_url})
    store.fs.put(str(scene_dir) + "/", store._key, recursive=True)
    (store / "viewer").remove(recursive=True)
    site = tmp_path / "site"
    args = _args("--run-dir", url, "--storage-option", f"endpoint_url={s3_url}", "--export", str(site))
    assert main(args) == 0, capsys.readouterr().err
    assert (store / "viewer" / "pyramid.json").read_json()["complete"]
    assert (site / "tiles" / "bands" / "0" / "0" / "0.png").is_file() and (site / "index.html").is_file()
    pyramid, page = prepare(store, echo=lambda *_: None)
    assert pyramid.reused
    server = MapServer(pyramid, page, port=0).start()
    try:
        with urllib.request.urlopen(server.url + "tiles/bands/1/0/0.png") as response:
            assert response.status == 200 and response.read() == (site / "tiles/bands/1/0/0.png").read_bytes()
    finally:
        server.stop()
