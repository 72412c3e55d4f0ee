"""The downstream Dask graph: chunked equals whole-image, value-added mode, products, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import Table

from morpheus_core.catalog import detection_flag, object_catalog
from morpheus_core.colour import colour_image
from morpheus_core.deblend import deblend
from morpheus_core.object_sums import merge_object_sums, object_sums
from morpheus_core.segmentation import label_segments, segment_sources
from morpheus_core.simulate import make_wcs
from pipeline.downstream.driver import run_downstream
from pipeline.errors import InputError
from pipeline.settings import DownstreamSettings
from tests.pipeline.downstream_scene import CHUNK, SHAPE, SOURCES, make_scene, write_run
from tests.pipeline.stage_fixtures import assert_catalog_equal

#: Algorithm 1 on the whole image for each detection rule, written out from the paper
#: and docs/downstream.md (not from pipeline.downstream.driver): (sky markers + Sobel image, source-marker image).
RULE_IMAGES = {
    "paper": ("background", None),
    "mean": ("mean_background", None),
    "mixed": ("background", "mean_background"),
}


def whole_image(scene, settings: DownstreamSettings):
    classified = scene["n"] > 0
    sky, source = RULE_IMAGES[settings.detection]
    mask = segment_sources(
        scene[sky],
        classified,
        threshold=settings.threshold,
        source_background=None if source is None else scene[source],
    )
    segments, _ = label_segments(mask)
    flux = scene["bands"][0]
    result = deblend(segments, flux, min_distance=settings.min_distance, nd_max=settings.nd_max)
    # Eq. 16 on the rank-vote images as the released code; the mean images' fractions as extras
    sums = merge_object_sums(
        [
            object_sums(
                result.segmap,
                flux=flux,
                mean=scene["rank"],
                variance=scene["variance"],
                bands=scene["bands"],
                fractions={"mean": scene["mean"]},
            )
        ]
    )
    return segments, result, object_catalog(sums, wcs=make_wcs(SHAPE), width=SHAPE[1], fractions=("mean",))


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, SOURCES)


SETTINGS = DownstreamSettings(min_distance=6, halo=8, max_halo=256)


def test_detection_rules_have_their_own_threshold_defaults_and_refuse_bad_values():
    assert DownstreamSettings().threshold == 0.0 and DownstreamSettings().detection == "paper"
    assert DownstreamSettings(detection="mean").threshold == 0.3
    assert DownstreamSettings(detection="mixed").threshold == 0.3
    assert DownstreamSettings(detection="mixed", threshold=0.1).threshold == 0.1
    assert (
        DownstreamSettings(detection="mean").segmentation_key()
        != DownstreamSettings(detection="mixed").segmentation_key()
    )
    with pytest.raises(InputError, match=r"--detection must be one of paper, mean, mixed, got 'rank'"):
        DownstreamSettings(detection="rank")
    with pytest.raises(InputError, match=r"--threshold: .*\[0, 1\), got 1.0"):
        DownstreamSettings(detection="mean", threshold=1.0)


def test_scene_rank_and_mean_differ_as_real_classifications(scene):
    """The premise of the rules: exact 0 and 1 in the rank-vote background, no 0 in the mean one."""
    classified = scene["n"] > 0
    assert (scene["background"][classified] == 0).mean() > 0.05
    assert (scene["background"][classified] == 1).mean() > 0.5
    assert scene["mean_background"][classified].min() > 0
    assert (scene["mean_background"][classified] == 1).sum() < (scene["background"][classified] == 1).sum()


@pytest.mark.parametrize("detection", ["paper", "mean", "mixed"])
def test_chunked_graph_equals_whole_image(tmp_path, scene, detection):
    run_dir = write_run(tmp_path / "run", scene)
    settings = DownstreamSettings(min_distance=6, halo=8, max_halo=256, detection=detection)
    summary = run_downstream(run_dir, settings, client=None, echo=lambda *_: None)
    segments, result, reference = whole_image(scene, settings)
    seg = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")
    assert summary.approximate_chunks == []
    record = json.loads((run_dir / "downstream.json").read_text())
    n_chunks = -(-SHAPE[0] // CHUNK) * -(-SHAPE[1] // CHUNK)
    assert len(record["chunk_halos"]) == n_chunks and set(record["chunk_halos"].values()) <= {8, 16, 32, 64, 128, 256}
    assert record["detection"]["rule"] == detection and record["detection"]["threshold"] == settings.threshold
    assert summary.segments == segments.max() >= 8
    assert summary.split_segments >= 1  # the touching pair
    # Same objects with the same pixels and, thanks to raster-order numbering, the same ids.
    np.testing.assert_array_equal(seg["segments"][:], segments)
    np.testing.assert_array_equal(seg["deblended"][:], result.segmap)
    catalog = Table.read(run_dir / "catalog" / "catalog.fits")
    assert list(catalog["label"]) == result.labels
    assert any("." in label for label in result.labels)
    assert_catalog_equal(catalog, reference)
    # detection flag and colour image from the rank-vote images, as the released code
    flux = scene["bands"][0]
    peak = [
        np.unravel_index(np.argmax(np.where(result.segmap == i, flux, -np.inf)), SHAPE)
        for i in range(1, result.segmap.max() + 1)
    ]
    np.testing.assert_array_equal(
        catalog["detection_flag"], detection_flag(np.array([scene["rank"][4][p] for p in peak]), np.ones(len(peak)))
    )
    colour = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")["colour"][:]
    np.testing.assert_array_equal(colour, colour_image(scene["rank"], scene["n"] > 0))
    # the sources straddling chunk faces and corners are single objects
    deblended = seg["deblended"][:]
    for y, x in ((32, 32), (64, 64), (96, 40), (64, 100)):
        obj = deblended[y, x]
        assert obj > 0
        ys, xs = np.nonzero(deblended == obj)
        assert ys.min() < y < ys.max() and xs.min() < x < xs.max()


def test_products_carry_wcs_provenance_and_metadata(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    run_downstream(run_dir, SETTINGS, client=None, echo=lambda *_: None, run_id="r1", model="m")
    header = fits.getheader(run_dir / "fits" / "segmap_deblended.fits")
    assert header["CTYPE1"].startswith("RA---") and header["RUNID"] == "r1" and header["SEGTHR"] == 0.0
    assert header["DETECT"] == "paper" and fits.getheader(run_dir / "fits" / "segmap.fits")["DETECT"] == "paper"
    assert fits.getdata(run_dir / "fits" / "segmap.fits").shape == SHAPE
    parquet = Table.read(run_dir / "catalog" / "catalog.parquet")
    mrt = Table.read(run_dir / "catalog" / "catalog.mrt", format="ascii.mrt")
    csv = Table.read(run_dir / "catalog" / "catalog.csv", format="ascii.csv", comment="#")  # the header block
    assert len(parquet) == len(mrt) == len(csv) > 0
    assert str(parquet["ra"].unit) == "deg" and "rank-vote" in parquet["p_disk"].description
    assert "mean images" in parquet["p_mean_disk"].description and parquet.meta["DETECT"] == "paper"
    np.testing.assert_allclose(mrt["ra"], parquet["ra"], atol=1e-6)
    png = (run_dir / "colour.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((run_dir / "downstream.json").read_text())
    assert record["segments"] > 0 and record["settings"]["min_distance"] == 6
    assert record["settings"]["detection"] == "paper" and record["detection"]["threshold"] == 0.0


def test_the_recorded_model_card_is_read_once_and_its_keywords_reach_every_product(tmp_path, scene, monkeypatch):
    from morpheus_core.cards import RELEASED_CARD, ModelCard

    run_dir = write_run(tmp_path / "run", scene)
    zarr.open_group(str(run_dir / "classification.zarr"), mode="r+").attrs["model_card"] = RELEASED_CARD.to_dict()
    parsed = []
    original = ModelCard.from_dict.__func__
    monkeypatch.setattr(ModelCard, "from_dict", classmethod(lambda cls, data: parsed.append(1) or original(cls, data)))
    run_downstream(run_dir, SETTINGS, client=None, echo=lambda *_: None, run_id="r2", model="m")
    assert len(parsed) == 1  # one parse for the flux band, the FITS headers and the catalog's metadata
    meta = Table.read(run_dir / "catalog" / "catalog.parquet").meta
    for name in ("segmap.fits", "segmap_deblended.fits"):
        header = fits.getheader(run_dir / "fits" / name)
        for key in ("DETECT", "SEGTHR", "MINDIST", "NDMAX", "FLUXBAND", "MODBANDS", "MODSCALE", "MODCLASS"):
            assert header[key] == meta[key], (name, key)
    assert meta["FLUXBAND"] == "H" and meta["MODBANDS"] == "H,J,V,Z" and meta["RUNID"] == header["RUNID"] == "r2"


def test_value_added_mode_reports_every_source(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    wcs = make_wcs(SHAPE)
    # bright sources, a faint position on empty sky, one in the unclassified border, one off the image
    # (x, y): a small source, a large one, the edge source, empty sky, unclassified border, off the image
    xy = np.array([[10, 140], [100, 64], [60, 5], [150, 30], [1, 1], [400, 400]], dtype=float)
    ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    markers = tmp_path / "markers.csv"
    Table({"ID": [11, 12, 13, 14, 15, 16], "RA": ra, "DEC": dec}).write(markers, format="ascii.csv")
    summary = run_downstream(
        run_dir, DownstreamSettings(markers=str(markers), min_distance=6), client=None, echo=lambda *_: None
    )
    table = Table.read(run_dir / "catalog" / "value_added.fits")
    assert list(table["source_id"]) == [11, 12, 13, 14, 15, 16] and summary.catalog_rows == 6
    flags = list(table["detection_flag"])
    assert flags[:2] == [1, 1] and flags[3] == 3 and flags[4:] == [0, 0]
    assert flags[2] == 1  # (x 60, y 5): the edge source's core
    # undetected source on sky: measured in the 0.36" aperture (about 6 px at 0.06"/px)
    radius = 0.36 / (wcs.proj_plane_pixel_scales()[0].to_value("arcsec"))
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    disc = ((xx - 150) ** 2 + (yy - 30) ** 2 <= radius**2).sum()
    assert 105 <= disc <= 113
    assert table["aperture"][3] == 1 and abs(table["area"][3] - disc) <= 4 and table["object_id"][3] == 0
    # a segment smaller than the aperture falls back to it too; a large one is kept
    assert table["object_id"][0] > 0 and table["aperture"][0] == 1 and abs(table["area"][0] - disc) <= 4
    assert table["aperture"][1] == 0 and table["area"][1] > disc
    assert np.ma.is_masked(table["p_disk"][4]) and np.ma.is_masked(table["area"][5])
    assert abs(table["x"][0] - 10) < 0.5 and abs(table["y"][0] - 140) < 0.5
    # Parquet: missing values are nulls, not extra "<name>.mask" columns; units travel
    import pandas as pd
    import pyarrow.parquet as pq

    path = run_dir / "catalog" / "value_added.parquet"
    schema = pq.read_schema(path)
    assert not [name for name in schema.names if name.endswith(".mask")]
    assert schema.names == table.colnames
    assert pq.read_table(path).column("x").null_count == 2
    frame = pd.read_parquet(path)
    assert frame[["x", "ra", "p_disk", "p_mean_disk", "area"]].iloc[4:].isna().all().all()
    assert frame["dominant_class"].iloc[4:].isna().all() and frame["dominant_class"].iloc[:4].notna().all()
    np.testing.assert_allclose(frame["x"].iloc[:4], np.asarray(table["x"][:4]), rtol=1e-12)
    back = Table.read(path)
    assert str(back["ra"].unit) == "deg" and back["p_disk"].description == table["p_disk"].description
    # FITS: masked values, no extra columns
    assert table.masked or np.ma.is_masked(table["ra"][4])
    with fits.open(run_dir / "catalog" / "value_added.fits") as hdul:
        assert not [c for c in hdul[1].columns.names if c.endswith(".mask")]


def test_no_source_gives_an_empty_catalog_and_says_why(tmp_path, scene):
    faint = dict(scene)
    faint["rank"] = scene["rank"].copy()
    faint["rank"][4] = np.where(scene["n"] > 0, np.maximum(scene["rank"][4], 0.4), 0)
    run_dir = write_run(tmp_path / "run", faint)
    lines: list[str] = []
    summary = run_downstream(run_dir, SETTINGS, client=None, echo=lines.append)
    assert summary.segments == summary.catalog_rows == 0
    assert any(
        "no sources found" in line and "smallest rank-vote background 0.4" in line and "--detection mixed" in line
        for line in lines
    )
    assert len(Table.read(run_dir / "catalog" / "catalog.parquet")) == 0
    assert fits.getdata(run_dir / "fits" / "segmap.fits").max() == 0


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.filterwarnings("ignore:.*extra bytes after the last HDU")
def test_bad_inputs_are_refused_and_nothing_is_overwritten(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    run_downstream(run_dir, SETTINGS, client=None, echo=lambda *_: None)
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "catalog").iterdir()}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,flux\na,1\nb,2\n")
    with pytest.raises(InputError, match="no RA/Dec columns"):
        run_downstream(run_dir, DownstreamSettings(markers=str(bad)), client=None)
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    with pytest.raises(InputError, match="cannot read the markers table"):
        run_downstream(run_dir, DownstreamSettings(markers=str(broken)), client=None)
    nan = tmp_path / "nan.csv"
    nan.write_text("ra,dec\n53.1,-27.8\nnan,-27.8\n")
    with pytest.raises(InputError, match=r"non-finite RA/Dec in 1 row\(s\) \(rows 2\)"):
        run_downstream(run_dir, DownstreamSettings(markers=str(nan)), client=None)
    with pytest.raises(InputError, match="not found"):
        run_downstream(run_dir, DownstreamSettings(markers=str(tmp_path / "missing.csv")), client=None)
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "catalog").iterdir()} == before
    unfinished = write_run(tmp_path / "unfinished", scene, complete=False)
    with pytest.raises(InputError, match="not finished"):
        run_downstream(unfinished, SETTINGS, client=None)
    assert not (unfinished / "segmentation.zarr").exists()
    # the command line: exit 2 and one line naming the file
    result = _cli("catalog", "--run-dir", str(run_dir), "--markers", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "bad.csv: no RA/Dec columns" in result.stderr
    result = _cli("segment", "--run-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert result.returncode == 2 and "no run here" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "catalog").iterdir()} == before


@pytest.mark.slow
def test_segment_and_catalog_commands_rerun_only_downstream(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    result = _cli("segment", "--run-dir", str(run_dir), "--min-distance", "6", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    first = Table.read(run_dir / "catalog" / "catalog.parquet")
    seg_mtime = (run_dir / "segmentation.zarr" / "zarr.json").stat().st_mtime_ns
    result = _cli("catalog", "--run-dir", str(run_dir), "--min-distance", "6", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0 and "segmentation reused" in result.stdout
    assert (run_dir / "segmentation.zarr" / "zarr.json").stat().st_mtime_ns == seg_mtime
    result = _cli(
        "segment",
        "--run-dir",
        str(run_dir),
        "--threshold",
        "0.5",
        "--min-distance",
        "6",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    second = Table.read(run_dir / "catalog" / "catalog.parquet")
    assert second["area"].sum() > first["area"].sum()  # a looser threshold grows the segments
    # another detection rule is another segmentation: `catalog` rebuilds it, and records the rule
    result = _cli(
        "catalog",
        "--run-dir",
        str(run_dir),
        "--detection",
        "mixed",
        "--min-distance",
        "6",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "segmentation reused" not in result.stdout
    record = json.loads((run_dir / "downstream.json").read_text())
    assert record["detection"]["rule"] == "mixed" and record["detection"]["threshold"] == 0.3
    assert fits.getheader(run_dir / "fits" / "segmap.fits")["DETECT"] == "mixed"


def test_chunked_graph_equals_whole_image_around_an_unobserved_footprint(tmp_path, scene):
    # A real mosaic's unobserved area (NaN bands, n = 0) crossing chunk faces and a
    # corner (y = 64, x = 32), with a source cut by it, and a censored core (n = 0) on
    # the face x = 96: the chunked graph must still equal Algorithm 1, Algorithm 2 and
    # Eq. 16 run by scikit-image/scipy on the whole image.
    masked = {k: v.copy() for k, v in scene.items()}
    hole = np.zeros(SHAPE, bool)
    hole[50:80, 18:45] = True
    hole[94:99, 94:99] = True
    masked["n"][hole] = 0
    for key in ("mean", "rank", "variance"):
        masked[key][:, hole] = 0
    masked["bands"][:, hole] = np.nan
    masked["background"], masked["mean_background"] = masked["rank"][4], masked["mean"][4]
    run_dir = write_run(tmp_path / "run", masked)
    summary = run_downstream(run_dir, SETTINGS, client=None, echo=lambda *_: None)
    segments, result, reference = whole_image(masked, SETTINGS)
    seg = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")
    assert summary.approximate_chunks == [] and summary.segments == segments.max() >= 8
    assert not (segments[hole] > 0).any()
    np.testing.assert_array_equal(seg["segments"][:], segments)
    np.testing.assert_array_equal(seg["deblended"][:], result.segmap)
    catalog = Table.read(run_dir / "catalog" / "catalog.fits")
    assert list(catalog["label"]) == result.labels
    assert_catalog_equal(catalog, reference)


def test_the_summary_line_counts_objects_segments_and_splits_also_when_the_segmentation_is_reused(tmp_path, scene):
    """The closing line, against the whole-image segmentation and deblending: objects,
    segments, how many segments deblending split and into how many objects; the same
    when ``catalog`` reuses the segmentation."""
    run_dir = write_run(tmp_path / "run", scene)
    segments, result, _ = whole_image(scene, SETTINGS)
    split = result.sub_id > 0
    n_split, n_children = len(set(result.parent_id[split])), int(split.sum())
    n_objects = len(result.labels)
    assert n_split >= 1 and n_objects == segments.max() - n_split + n_children
    expected = (
        f"downstream: {n_objects} objects ({segments.max()} segments, {n_split} of them split by "
        f"deblending into {n_children}); catalog of {n_objects} rows"
    )
    for reused in (False, True):
        lines = []
        summary = run_downstream(run_dir, SETTINGS, client=None, echo=lines.append, reuse_segmentation=reused)
        assert summary.reused_segmentation == reused
        assert [line for line in lines if line.startswith("downstream:")][0].startswith(expected), lines


def test_the_summary_line_of_no_split_and_of_value_added_mode():
    from pipeline.downstream.driver import DownstreamSummary

    assert (
        DownstreamSummary(segments=3, objects=3, catalog_rows=3)
        .lines()[0]
        .startswith("downstream: 3 objects (3 segments, none split by deblending); catalog of 3 rows (")
    )
    assert (
        DownstreamSummary(segments=5, objects=4, catalog_rows=6, split_segments=1, value_added=True)
        .lines()[0]
        .startswith(
            "downstream: 5 segments (1 of them split by deblending); 4 of the 6 input markers fall on an "
            "object; catalog of 6 rows ("
        )
    )
