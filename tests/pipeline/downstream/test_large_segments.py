"""Segments too large to deblend in one task: kept whole, flagged, memory bounded by the chunk."""

from __future__ import annotations

import functools
import json
import time
import tracemalloc

import dask
import numpy as np
import pytest
import zarr
from astropy.table import Table
from scipy import ndimage as ndi

import pipeline.downstream.catalog_sums
import pipeline.downstream.colour
import pipeline.downstream.deblend
import pipeline.downstream.labels
import pipeline.downstream.segment
from morpheus_core.deblend import number_children, split_by_peaks
from morpheus_core.segmentation import label_segments, segment_sources
from morpheus_core.simulate import make_wcs
from morpheus_core.tiling import chunk_boxes
from pipeline.downstream.driver import run_downstream
from pipeline.downstream.large_segments import (
    default_segment_limit,
    pack_members,
    pieces_for_chunk,
    plan_deblending,
    single_owners,
)
from pipeline.settings import DownstreamSettings
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene, random_sources, write_run

# The scene of test_downstream.py plus a small touching pair at (45, 150-160): with a
# 500-pixel limit, the large source (box 43x43) and the touching pair at y 110 (box
# 21x36, split in two when deblended) are over the limit, the small pair (box 11x21)
# is still split, and chunks of 64 hold several segments whose union boxes exceed 500
# pixels, so the packing into several tasks is exercised.
PAIR = [(45, 150, 3.0, 1.0), (45, 160, 3.0, 1.0)]
LIMIT = 500
SETTINGS = DownstreamSettings(min_distance=6, halo=8, max_halo=256, chunk=64, max_segment_pixels=LIMIT)


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, SOURCES + PAIR)


def whole_image_with_limit(scene, settings: DownstreamSettings):
    """Algorithm 2 on the whole image, segments over the limit left unsplit (the reference)."""
    segments, _ = label_segments(segment_sources(scene["background"], scene["n"] > 0, threshold=settings.threshold))
    flux = scene["bands"][0]
    parents, counts, pieces, oversize = [], [], [], []
    for index, box in enumerate(ndi.find_objects(segments)):
        label = index + 1
        mask = segments[box] == label
        if (box[0].stop - box[0].start) * (box[1].stop - box[1].start) > settings.max_segment_pixels:
            children = mask.astype(np.int32)
            oversize.append(label)
        else:
            children = split_by_peaks(flux[box], mask, min_distance=settings.min_distance, nd_max=settings.nd_max)
        parents.append(label)
        counts.append(int(children.max()))
        pieces.append((box, children))
    ids, parent_id, sub_id = number_children(np.array(parents), np.array(counts))
    out = np.zeros(segments.shape, dtype=np.int32)
    for (box, children), first in zip(pieces, np.cumsum(counts) - np.array(counts) + 1):
        out[box][children > 0] = children[children > 0] + first - 1
    return segments, out, parent_id, sub_id, oversize


def test_segments_over_the_limit_are_kept_whole_and_flagged(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    lines: list[str] = []
    summary = run_downstream(run_dir, SETTINGS, client=None, echo=lines.append)
    segments, deblended, parent_id, sub_id, oversize = whole_image_with_limit(scene, SETTINGS)
    assert len(oversize) == 2 and summary.oversize_segments == oversize
    # the rule changes something: without the limit the touching pair at y 110 is split
    big_pair = segments[110, 104]
    assert big_pair in oversize and (sub_id[parent_id == big_pair] == 0).all()
    assert (sub_id > 0).sum() == 2  # the small pair, below the limit, is still deblended
    seg = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")
    np.testing.assert_array_equal(seg["segments"][:], segments)
    np.testing.assert_array_equal(seg["deblended"][:], deblended)
    catalog = Table.read(run_dir / "catalog" / "catalog.fits")
    np.testing.assert_array_equal(catalog["segment_flag"], np.isin(parent_id, oversize).astype(int))
    assert "max_segment_pixels" in catalog["segment_flag"].description
    record = json.loads((run_dir / "downstream.json").read_text())
    assert record["oversize_segments"] == {"max_segment_pixels": LIMIT, "count": 2, "ids": oversize}
    assert record["settings"]["max_segment_pixels"] == LIMIT
    assert any("2 segment(s) larger than 500 pixels" in line and "not deblended" in line for line in lines)
    # the default limit (9 chunks of 64 px) deblends everything, as test_downstream checks
    summary = run_downstream(
        run_dir, DownstreamSettings(min_distance=6, halo=8, max_halo=256, chunk=64), client=None, echo=lambda *_: None
    )
    assert summary.oversize_segments == [] and summary.max_segment_pixels == default_segment_limit(64) == 36864
    assert (Table.read(run_dir / "catalog" / "catalog.fits")["segment_flag"] == 0).all()


def test_value_added_sources_on_an_oversize_segment(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    wcs = make_wcs(SHAPE)
    # (x, y): two sources on the large source's segment, one alone on the big touching
    # pair's segment, one on the small pair (below the limit), one on empty sky.
    xy = np.array([[60, 60], [68, 68], [96, 110], [150, 45], [150, 30]], dtype=float)
    ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    markers = tmp_path / "markers.csv"
    Table({"ID": [1, 2, 3, 4, 5], "RA": ra, "DEC": dec}).write(markers, format="ascii.csv")
    settings = DownstreamSettings(
        min_distance=6, halo=8, max_halo=256, chunk=64, max_segment_pixels=LIMIT, markers=str(markers)
    )
    run_downstream(run_dir, settings, client=None, echo=lambda *_: None)
    table = Table.read(run_dir / "catalog" / "value_added.fits")
    assert list(table["segment_flag"]) == [1, 1, 1, 0, 0]
    assert "aperture" in table["segment_flag"].description
    # several sources on an oversize segment: not split, each measured in the aperture
    assert list(table["object_id"][:2]) == [0, 0] and list(table["aperture"][:2]) == [1, 1]
    # one source on an oversize segment owns it whole, as Algorithm 2 gives
    seg = zarr.open_group(str(run_dir / "segmentation_value_added.zarr"), mode="r")
    segments, deblended = seg["segments"][:], seg["deblended"][:]
    on_pair = segments == segments[110, 96]
    assert table["object_id"][2] == 3 and table["aperture"][2] == 0 and table["area"][2] == on_pair.sum()
    assert (deblended[on_pair] == 3).all()
    assert not (deblended[segments == segments[60, 60]]).any()
    assert table["object_id"][3] == 4 and table["aperture"][4] == 1


def test_packing_bounds_every_task():
    rng = np.random.default_rng(7)
    members = []
    for label in range(1, 200):
        y0, x0 = rng.integers(0, 1000, 2)
        h, w = rng.integers(1, 60, 2)
        members.append((label, int(y0), int(y0 + h), int(x0), int(x0 + w)))
    limit = 3000
    small = [m for m in members if (m[2] - m[1]) * (m[4] - m[3]) <= limit]
    groups = pack_members(small, limit)
    assert [m for g in groups for m in g] == small  # every member once, in order
    assert len(groups) > 1
    for g in groups:
        union = (min(m[1] for m in g), max(m[2] for m in g), min(m[3] for m in g), max(m[4] for m in g))
        assert (union[1] - union[0]) * (union[3] - union[2]) <= limit or len(g) == 1
        assert sum((m[2] - m[1]) * (m[4] - m[3]) for m in g) <= limit or len(g) == 1
    with pytest.raises(ValueError, match="exceeds the limit"):
        pack_members([(1, 0, 100, 0, 100)], 9999)
    # plan: grouped by the chunk of the first pixel, oversize apart
    width = 1100
    planned = [(m[0], m[1], m[2], m[3], m[4], m[1] * width + m[3]) for m in members]
    groups, oversize = plan_deblending(planned, width=width, chunk=128, limit=limit)
    assert oversize == [m[0] for m in members if (m[2] - m[1]) * (m[4] - m[3]) > limit] != []
    for g in groups:
        assert len({(m[1] // 128, m[3] // 128) for m in g}) == 1
    # pieces cut to chunks paste back to the original
    ids = rng.integers(0, 5, (70, 90)).astype(np.int32)
    box = (30, 100, 50, 140)
    out = np.zeros((256, 256), dtype=np.int32)
    for chunk_box in chunk_boxes((256, 256), 64):
        for piece_box, part in pieces_for_chunk([(box, ids)], chunk_box):
            assert chunk_box.intersection(piece_box) == piece_box and part.shape == piece_box.shape
            out[piece_box.slices] = part
    np.testing.assert_array_equal(out[30:100, 50:140], ids)
    # value-added: one source pixel owns an oversize segment, two pixels do not
    sources = np.array([[5, 5, 3], [5, 5, 2], [9, 9, 4], [20, 20, 5], [21, 20, 6]])
    assert single_owners([7, 8, 9], np.array([7, 7, 0, 8, 8]), sources) == {7: 2}


class _Synchronous:
    """A stand-in client: the tasks run one at a time in this thread (so that
    tracemalloc's peak, which is process-wide, is one task's)."""

    def compute(self, tasks):
        return dask.compute(*tasks, scheduler="synchronous")

    def gather(self, results):
        return list(results)


#: The chunk kernels (task functions) of each stage module.
KERNELS = {
    pipeline.downstream.segment: ("_segment_block",),
    pipeline.downstream.labels: ("_label_block", "_face_pairs_block", "_relabel_block"),
    pipeline.downstream.deblend: ("_split_by_peaks_block", "_split_by_markers_block", "_deblended_block"),
    pipeline.downstream.colour: ("_colour_block",),
    pipeline.downstream.catalog_sums: ("_sums_block", "_aperture_block"),
}


def _task_peaks(monkeypatch) -> dict[str, int]:
    """Wrap every task function of the stage modules to record its tracemalloc peak (bytes).

    A task's peak is reset when it starts, so the run's own peak is kept as ``"run"``.
    """
    peaks: dict[str, int] = {"run": 0}

    def measured(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            peaks["run"] = max(peaks["run"], tracemalloc.get_traced_memory()[1])
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            try:
                return fn(*args, **kwargs)
            finally:
                peak = tracemalloc.get_traced_memory()[1] - base
                peaks[fn.__name__] = max(peaks.get(fn.__name__, 0), peak)
                peaks["run"] = max(peaks["run"], tracemalloc.get_traced_memory()[1])

        return run

    for module, names in KERNELS.items():
        for name in names:
            monkeypatch.setattr(module, name, measured(getattr(module, name)))
    return peaks


def whole_image_segment_run(tmp_path, monkeypatch, shape=(1024, 1024), chunk=128):
    """One segment over a whole multi-chunk image: every classified pixel a certain source."""
    scene = make_scene(shape, random_sources(shape, seed=1))
    for name in ("mean", "rank"):
        if name in scene:
            scene[name][-1][scene["n"] > 0] = 0.0  # background 0: Algorithm 1 marks every pixel a source
    run_dir = write_run(tmp_path / "run", scene, chunk=chunk)
    del scene
    peaks = _task_peaks(monkeypatch)
    lines: list[str] = []
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        summary = run_downstream(
            run_dir, DownstreamSettings(halo=8, max_halo=256), client=_Synchronous(), echo=lines.append
        )
        whole_run_peak = max(peaks.pop("run"), tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    return run_dir, summary, lines, peaks, whole_run_peak, time.perf_counter() - t0


def test_a_whole_image_segment_completes_flagged_with_memory_bounded_by_the_chunk(tmp_path, monkeypatch):
    chunk = 128
    run_dir, summary, lines, peaks, whole_run_peak, seconds = whole_image_segment_run(
        tmp_path, monkeypatch, chunk=chunk
    )
    print(
        f"\n1024x1024, chunk {chunk}: {seconds:.1f} s; peak per task (MiB): "
        + ", ".join(f"{k} {v / 2**20:.2f}" for k, v in sorted(peaks.items(), key=lambda kv: -kv[1]))
        + f"; whole run {whole_run_peak / 2**20:.1f} MiB"
    )
    assert summary.segments == 1 and summary.oversize_segments == [1] and summary.split_segments == 0
    catalog = Table.read(run_dir / "catalog" / "catalog.fits")
    assert len(catalog) == 1 and catalog["segment_flag"][0] == 1 and catalog["sub_id"][0] == 0
    assert catalog["area"][0] == 1020 * 1020  # every classified pixel (n = 0 on a 4-pixel border)
    record = json.loads((run_dir / "downstream.json").read_text())
    assert record["oversize_segments"] == {"max_segment_pixels": 9 * chunk**2, "count": 1, "ids": [1]}
    assert any("1 segment(s) larger than" in line for line in lines)
    assert "_split_by_peaks_block" not in peaks  # no task read the segment
    pixels = chunk * chunk
    # Every task: at most 640 bytes per chunk pixel (10 MiB). The heaviest chunk task is
    # the colour image (five float64 class planes, argsort indices, HSV and RGB float64
    # planes: about 490 bytes per pixel measured); the segmentation, label and sums
    # tasks hold under 200. Deblending the whole segment in one task held 51.5 MiB.
    assert max(peaks.values()) < 640 * pixels, peaks
    # The deblending stage (writing the deblended map): at most 64 bytes per chunk
    # pixel (1 MiB), a chunk of int32 labels read and written with Zarr's buffers
    # (about 13 bytes per pixel measured); one int32 image plane is 4 MiB.
    assert peaks["_deblended_block"] < 64 * pixels, peaks
