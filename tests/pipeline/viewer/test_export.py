"""``view --export`` touches only what it made (``pipeline.viewer.export``): a folder of the
user's is refused before the pyramid is built and left as it was; a previous export's
folder loses only the files its marker lists, so files the user added stay; links
are never followed out of the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.cli.view import add_parser, main
from tests.pipeline.view_runs import card_run

MARKER = ".morpheus-export.json"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two small finished runs: ``big`` has two zoom levels, ``small`` one and other classes."""
    folder = tmp_path_factory.mktemp("view-export")
    return {
        "big": card_run(folder / "big", shape=(300, 280)),
        "small": card_run(folder / "small", classes=("round", "long", "background")),
    }


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["view", *argv])


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder`` (links not followed): file contents, link targets, folders."""
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            out[key] = f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
    return out


def _fresh(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a run without its tile pyramid."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    return copy


def _user_folder(site: Path) -> None:
    """A folder of the user's with the names an export writes (a web site of theirs)."""
    (site / "static").mkdir(parents=True)
    (site / "tiles").mkdir()
    (site / "index.html").write_text("<p>my home page</p>")
    (site / "static" / "me.css").write_text("body {}")
    (site / "tiles" / "photo.png").write_bytes(b"png")
    (site / "notes.txt").write_text("mine")


def test_a_folder_of_the_users_is_refused_before_the_map_is_built(runs, tmp_path, capsys):
    run_dir = _fresh(runs["small"], tmp_path)
    site = tmp_path / "public_html"
    _user_folder(site)
    before = _tree(site)
    for folder in (site, site / "static"):
        assert main(_args("--run-dir", str(run_dir), "--export", str(folder))) == 2
        err = capsys.readouterr().err
        assert f"{folder}:" in err and "new or empty folder" in err and "\n" not in err.strip()
    (site / MARKER).write_text("{not json")  # a marker that is not ours
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 2
    assert MARKER in capsys.readouterr().err
    (site / MARKER).unlink()
    assert main(_args("--run-dir", str(run_dir), "--export", str(site / "notes.txt"))) == 2
    assert "not a folder" in capsys.readouterr().err
    assert _tree(site) == before
    assert not (run_dir / "viewer").exists()  # refused before the pyramid was built
    inside = run_dir / "viewer" / "site"
    assert main(_args("--run-dir", str(run_dir), "--export", str(inside))) == 2
    assert "tile pyramid" in capsys.readouterr().err and not (run_dir / "viewer").exists()


def test_export_records_what_it_wrote_and_replaces_only_that(runs, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(runs["big"]), "--export", str(site))) == 0
    record = json.loads((site / MARKER).read_text())
    written = {k for k, v in _tree(site).items() if v != "dir"} - {MARKER}
    assert record["complete"] and set(record["files"]) == written
    pyramid_tiles = {k for k, v in _tree(runs["big"] / "viewer" / "tiles").items() if v != "dir"}
    assert {f"tiles/{k}" for k in pyramid_tiles} == {f for f in written if f.startswith("tiles/")}
    assert all(
        (site / "tiles" / k).read_bytes() == (runs["big"] / "viewer/tiles" / k).read_bytes() for k in pyramid_tiles
    )
    assert any(f.startswith("tiles/compact/1/") for f in written)  # two levels, the classes of "big"

    # The user adds files beside and inside ours, then exports another run into the same folder.
    (site / "notes.txt").write_text("mine")
    (site / "tiles" / "README").write_text("mine too")
    (site / "tiles" / "compact" / "1" / "keep.txt").write_text("and this")
    (site / "static" / "mine.css").write_text("body {}")
    (site / "tiles" / "extended").rename(tmp_path / "moved")  # a folder of ours replaced by a link
    (site / "tiles" / "extended").symlink_to(tmp_path / "moved")
    outside = _tree(tmp_path / "moved")
    assert main(_args("--run-dir", str(runs["small"]), "--export", str(site))) == 2  # a link in the way
    assert "tiles/extended (a link" in capsys.readouterr().err and _tree(tmp_path / "moved") == outside
    (site / "tiles" / "extended").unlink()
    assert main(_args("--run-dir", str(runs["small"]), "--export", str(site))) == 0
    capsys.readouterr()
    tree = _tree(site)
    assert tree["notes.txt"] == b"mine" and tree["tiles/README"] == b"mine too"
    assert tree["tiles/compact/1/keep.txt"] == b"and this" and tree["static/mine.css"] == b"body {}"
    assert _tree(tmp_path / "moved") == outside
    record = json.loads((site / MARKER).read_text())
    ours = {k for k, v in tree.items() if v != "dir"} - {
        MARKER,
        "notes.txt",
        "tiles/README",
        "tiles/compact/1/keep.txt",
        "static/mine.css",
    }
    assert set(record["files"]) == ours
    assert {f.split("/")[1] for f in ours if f.startswith("tiles/")} == {
        "bands",
        "colour",
        "round",
        "long",
        "background",
        "segmentation",
        "coverage",
    }
    assert not any(f.startswith("tiles/compact/") for f in ours)
    # The previous run's folders are gone where nothing of the user's is left in them.
    assert sorted(os.listdir(site / "tiles" / "compact")) == ["1"] and os.listdir(site / "tiles/compact/1") == [
        "keep.txt"
    ]
    assert not (site / "tiles" / "bands" / "1").exists()


def test_a_tampered_marker_cannot_remove_files_elsewhere(runs, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(runs["small"]), "--export", str(site))) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "0.png").write_text("also precious")
    record = json.loads((site / MARKER).read_text())
    for files in (["../victim.txt"], [str(victim)], ["notes.txt"]):
        (site / MARKER).write_text(json.dumps({**record, "files": record["files"] + files}))
        assert main(_args("--run-dir", str(runs["small"]), "--export", str(site))) == 2
        assert MARKER in capsys.readouterr().err and victim.read_text() == "precious"
    # A folder of the export replaced by a link out of it: its listed files are not removed through it.
    (site / MARKER).write_text(json.dumps({**record, "files": record["files"] + ["tiles/gone/0/0.png"]}))
    (site / "tiles" / "gone").mkdir()
    (site / "tiles" / "gone" / "0").symlink_to(tmp_path / "outside")
    assert main(_args("--run-dir", str(runs["small"]), "--export", str(site))) == 2
    assert "tiles/gone/0 (a link" in capsys.readouterr().err
    assert (tmp_path / "outside" / "0.png").read_text() == "also precious"
