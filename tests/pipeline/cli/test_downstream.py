"""``segment`` and ``catalog`` reuse the last downstream settings unless given, say what
they reuse and where they wrote, and take the same cluster options as ``run``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene, write_run


@pytest.fixture(scope="module")
def threaded_client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def clusters(monkeypatch, threaded_client):
    """Every cluster segment/catalog asks for: the keywords it asked with (an in-process
    cluster stands in for the local one)."""
    import pipeline.cluster.client as client_module

    asked = []

    def make_client(**kwargs):
        asked.append(kwargs)
        return threaded_client, client_module.ClusterInfo(
            kind="test", dashboard_link=None, n_workers=1, gpu=False, reason="in-process"
        )

    monkeypatch.setattr(client_module, "make_client", make_client)
    monkeypatch.setattr(client_module, "close_client", lambda client: None)
    return asked


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "run", make_scene(SHAPE, SOURCES))


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "downstream.json").read_text())


def test_catalog_reuses_the_last_segment_settings_and_says_so(run_dir, clusters, capsys):
    # A plain `catalog` after `segment --detection mixed` went back to the default rule.
    assert main(["segment", "--run-dir", str(run_dir), "--detection", "mixed", "--min-distance", "6"]) == 0
    out = capsys.readouterr().out
    assert "reusing" not in out  # nothing recorded before: nothing reused
    mixed = _record(run_dir)
    assert mixed["detection"]["rule"] == "mixed" and mixed["detection"]["threshold"] == 0.3
    # where it wrote: the catalog, the segmentation maps and the colour image, by path
    written = next(line for line in out.splitlines() if line.startswith("wrote: "))
    for relative in mixed["outputs"]:
        path = run_dir / relative
        assert path.exists() and (str(path) in written or f"{path.parent}/ (" in written and path.name in written)

    assert main(["catalog", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert (
        "reusing the last settings: --detection mixed --threshold 0.3 --min-distance 6 (give an option to "
        "change it)" in out
    )
    again = _record(run_dir)
    assert again["detection"] == mixed["detection"] and again["settings"] == mixed["settings"]
    assert again["objects"] == mixed["objects"] and "segmentation reused" in out
    assert "wrote: " in out

    # An option given wins; a threshold is reused only with the rule it was recorded with.
    assert main(["catalog", "--run-dir", str(run_dir), "--detection", "paper"]) == 0
    out = capsys.readouterr().out
    paper = _record(run_dir)
    assert paper["detection"]["rule"] == "paper" and paper["detection"]["threshold"] == 0.0
    assert paper["settings"]["min_distance"] == 6 and "reusing the last settings: --min-distance 6 (" in out
    # Back to every default: nothing left to announce.
    assert main(["segment", "--run-dir", str(run_dir), "--min-distance", "10"]) == 0
    assert "reusing" not in capsys.readouterr().out


def test_segment_and_catalog_take_the_cluster_options_of_run(run_dir, clusters, capsys, tmp_path):
    security = tmp_path / "tls.yaml"
    for command in ("segment", "catalog"):
        assert (
            main(
                [
                    command,
                    "--run-dir",
                    str(run_dir),
                    "--no-tls",
                    "--scheduler-security",
                    str(security),
                    "--workers",
                    "2",
                    "--min-distance",
                    "6",
                ]
            )
            == 0
        ), capsys.readouterr().err
    assert [{k: a[k] for k in ("tls", "scheduler_security", "n_workers")} for a in clusters] == [
        {"tls": False, "scheduler_security": security, "n_workers": 2}
    ] * 2
    assert main(["catalog", "--run-dir", str(run_dir)]) == 0
    assert clusters[-1]["tls"] is True and clusters[-1]["scheduler_security"] is None  # as run: TLS by default
    capsys.readouterr()


def _settings(tmp_path, record, *options, mosaic="tuned"):
    """downstream_settings of `segment OPTIONS` over a hand-written record."""
    from pipeline.cli.downstream import downstream_settings
    from pipeline.cli.parser import build_parser
    from pipeline.rundir.location import Location

    toml = tmp_path / "m.toml"
    toml.write_text(
        '[mosaics.tuned]\nbands = { H = "h.fits" }\nthreshold = 0.2\n[mosaics.plain]\nbands = { H = "h.fits" }\n'
    )
    folder = tmp_path / "r"
    folder.mkdir(exist_ok=True)
    if record is not None:
        (folder / "downstream.json").write_text(json.dumps({"settings": record}))
    args = build_parser().parse_args(["segment", "--run-dir", str(folder), *options])
    lines = []
    settings = downstream_settings(args, mosaic, toml, location=Location(folder), echo=lines.append)
    return settings, lines


def test_a_toml_mosaics_threshold_still_applies(tmp_path):
    # No record: the mosaic's own threshold, else the rule's.
    assert _settings(tmp_path, None)[0].threshold == 0.2
    assert _settings(tmp_path, None, mosaic="plain")[0].threshold == 0.0
    # A record made with the mosaic's threshold: reused, and nothing to announce.
    settings, lines = _settings(tmp_path, {"detection": "paper", "threshold": 0.2, "min_distance": 10})
    assert settings.threshold == 0.2 and lines == []
    # Another rule given: the recorded threshold went with the old rule; the mosaic's applies.
    settings, lines = _settings(tmp_path, {"detection": "mean", "threshold": 0.05}, "--detection", "paper")
    assert (settings.detection, settings.threshold) == ("paper", 0.2) and lines == []
    # A threshold given wins over both.
    assert _settings(tmp_path, {"detection": "mean", "threshold": 0.05}, "--threshold", "0.1")[0].threshold == 0.1
    settings, lines = _settings(tmp_path, {"detection": "mean", "threshold": 0.05, "markers": None})
    assert (settings.detection, settings.threshold) == ("mean", 0.05)
    assert lines == ["reusing the last settings: --detection mean --threshold 0.05 (give an option to change it)"]


def test_an_unreadable_record_means_the_defaults(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "downstream.json").write_text("{not json")
    settings, lines = _settings(tmp_path, None, "--min-distance", "7")
    assert (settings.detection, settings.min_distance, lines) == ("paper", 7, [])


def test_segment_on_a_run_that_records_its_model_card(run_dir, clusters, capsys):
    # A classification store records the network's card (as ModelCard.to_dict wrote it);
    # the default flux band is the card's reddest band, here the released network's H.
    import zarr

    from morpheus_core.cards import RELEASED_CARD

    zarr.open_group(str(run_dir / "classification.zarr"), mode="r+").attrs["model_card"] = RELEASED_CARD.to_dict()
    assert main(["segment", "--run-dir", str(run_dir), "--min-distance", "6"]) == 0, capsys.readouterr().err
    assert _record(run_dir)["settings"]["flux_band"] == "H"
    # ... and again when a plain `catalog` compares the recorded settings with the defaults.
    assert main(["catalog", "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    assert "reusing the last settings: --min-distance 6 (" in capsys.readouterr().out
