"""Stage 4b, pipeline.downstream.photometry: the chunked photometry equals one photutils
``SourceCatalog`` over the whole image (the independent reference), on a scene with
objects on chunk faces and corners, unobserved (NaN) pixels and a footprint edge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.stats import sigma_clipped_stats
from photutils.segmentation import SegmentationImage, SourceCatalog

from morpheus_core import BANDS
from pipeline.downstream import photometry as stage
from pipeline.downstream.measure import internal_catalog
from tests.pipeline.downstream_scene import CHUNK, SHAPE, SOURCES, make_scene
from tests.pipeline.stage_fixtures import stage_context, whole_image_stages


@pytest.fixture(scope="module")
def scene():
    scene = make_scene(SHAPE, SOURCES)
    # A footprint edge: the last 26 columns unobserved (NaN, unclassified), reached by the
    # source at x = 140; and a NaN pixel inside the large source on a chunk corner.
    scene["bands"][:, :, -26:] = np.nan
    scene["n"][:, -26:] = 0
    for name in ("mean", "rank", "variance"):
        scene[name][:, :, -26:] = 0
    scene["background"] = scene["rank"][4]
    scene["bands"][:, 66, 62] = np.nan
    return scene


@pytest.fixture(scope="module")
def weight(scene):
    rng = np.random.default_rng(5)
    w = rng.uniform(2e5, 3e5, SHAPE)
    w[:, -26:] = 0.0
    return w


def _objects(result):
    return pd.DataFrame(
        {
            "parent_id": result.parent_id,
            "sub_id": result.sub_id,
            "segment_flag": np.zeros(len(result.id), dtype=np.int16),
        },
        index=pd.Index(result.id, name="id"),
    )


def _context(tmp_path, scene, result, segments, *, weight=None, rms=None, zeropoints=None, sky_subtracted=True):
    context = stage_context(tmp_path, scene, segments=segments, deblended=result.segmap)
    group = context.mosaic.open_group(mode="r+")
    maps = {"weight": [], "rms": []}
    for kind, array in (("weight", weight), ("rms", rms)):
        if array is not None:
            group.create_array(
                kind, data=np.stack([array] * len(BANDS)).astype(np.float32), chunks=(len(BANDS), CHUNK, CHUNK)
            )
            maps[kind] = list(BANDS)
    group.attrs.update(
        {
            "error_maps": maps,
            "sky_subtracted": sky_subtracted,
            "effective_gain": {},
            "zeropoints": {b: {"value": v, "source": "mosaics file"} for b, v in (zeropoints or {}).items()},
        }
    )
    return context


def _reference(scene, segmap, ids, error):
    """One SourceCatalog per band over the whole image, F160W (H) the detection catalog."""
    data = scene["bands"].astype(np.float64)
    mask = ~np.isfinite(data).all(axis=0) | ~np.isfinite(error)
    segm = SegmentationImage(segmap)
    kw = {"mask": mask, "kron_params": (2.5, 1.4, 0.0), "aperture_mask_method": "correct", "local_bkg_width": 0}
    det = SourceCatalog(data[0], segm, error=error, **kw)
    cats = {
        "H": det,
        **{
            b: SourceCatalog(data[i], segm, error=error, detection_catalog=det, **kw)
            for i, b in enumerate(BANDS)
            if b != "H"
        },
    }
    return {b: c.select_labels(ids) for b, c in cats.items()}


def _value(cat, attr):
    return np.asarray(u.Quantity(getattr(cat, attr)).value, dtype=np.float64)


@pytest.mark.parametrize("margin", [32, 1])  # 1: most boxes need the second read
def test_chunked_photometry_equals_one_source_catalog(tmp_path, scene, weight, margin, monkeypatch):
    monkeypatch.setattr(stage, "_MARGIN", margin)
    _, segments, result = whole_image_stages(scene)
    context = _context(tmp_path, scene, result, segments, weight=weight)
    table = internal_catalog(None, context, _objects(result))
    ids = np.asarray(result.id)
    # Objects on chunk faces and corners, and the one cut by the footprint edge.
    first = np.array([np.flatnonzero(result.segmap.ravel() == i)[0] for i in ids])
    assert len({(f // SHAPE[1] // CHUNK, f % SHAPE[1] // CHUNK) for f in first}) >= 6
    error = np.where(weight > 0, 1 / np.sqrt(np.where(weight > 0, weight, 1)), np.nan)
    ref = _reference(scene, result.segmap, ids, error)
    for ours, attr in (
        ("x_centroid", "x_centroid"),
        ("y_centroid", "y_centroid"),
        ("semimajor_sigma", "semimajor_axis"),
        ("ellipticity", "ellipticity"),
        ("orientation", "orientation"),
        ("gini", "gini"),
        ("kron_radius", "kron_radius"),
        ("equivalent_radius", "equivalent_radius"),
        ("bbox_xmin", "bbox_xmin"),
        ("bbox_ymax", "bbox_ymax"),
    ):
        # Positions are computed in cutout coordinates, then shifted: float rounding only.
        np.testing.assert_allclose(
            np.asarray(table[ours], float), _value(ref["H"], attr), rtol=1e-9, atol=1e-9, err_msg=ours
        )
    np.testing.assert_allclose(
        np.asarray(table["half_light_radius"], float),
        np.asarray(ref["H"].flux_radius(0.5).value, float),
        rtol=1e-7,
        err_msg="half_light_radius",
    )
    for band in BANDS:
        for ours, attr in (
            ("kron_flux", "kron_flux"),
            ("kron_fluxerr", "kron_flux_err"),
            ("segment_flux", "segment_flux"),
            ("segment_fluxerr", "segment_flux_err"),
        ):
            # Kron apertures sit on centroids that differ by float rounding (cutout
            # coordinates): their exact pixel overlaps move by ~1e-9 relative.
            np.testing.assert_allclose(
                np.asarray(table[f"{ours}_{band}"], float),
                _value(ref[band], attr),
                rtol=1e-7,
                atol=1e-12,
                err_msg=f"{ours}_{band}",
            )
    assert table["x_centroid"].unit == u.pix and table["kron_flux_H"].description
    assert "error_source" in table.meta and table.meta["error_source"]["H"].startswith("weight map")
    # Flags: the object at the footprint edge, the one holding the NaN pixel.
    edge = int(result.segmap[128, 140])
    holed = int(result.segmap[66, 62])
    flags = dict(zip(table["id"], table["flags"]))
    assert flags[edge] & 4 and not flags[edge] & 8
    assert flags[holed] & 8
    for bit, value in ((64, 0), (128, 2), (256, 3)):  # the paper's detection flag, recoverable from flags
        assert list((np.asarray(table["flags"]) & bit) > 0) == list(np.asarray(table["detection_flag"]) == value)
    # The paper's columns are unchanged by the photometry.
    plain = internal_catalog(None, context, _objects(result), photometry=False)
    for name in plain.colnames:
        assert list(table[name]) == list(plain[name]), name


def test_weight_rms_and_sky_noise_paths(tmp_path, scene, weight):
    _, segments, result = whole_image_stages(scene)
    rms = np.where(weight > 0, 1 / np.sqrt(np.where(weight > 0, weight, 1)), np.nan)
    by_weight = internal_catalog(
        None, _context(tmp_path / "w", scene, result, segments, weight=weight), _objects(result)
    )
    by_rms = internal_catalog(None, _context(tmp_path / "r", scene, result, segments, rms=rms), _objects(result))
    for band in BANDS:
        # float32 storage of the maps: 1/sqrt(w) and the stored rms agree to ~1e-7.
        np.testing.assert_allclose(
            np.asarray(by_rms[f"kron_fluxerr_{band}"], float),
            np.asarray(by_weight[f"kron_fluxerr_{band}"], float),
            rtol=1e-6,
        )
    assert by_rms.meta["error_source"]["H"] == "rms map"
    # Sky noise: each object's chunk (that of its first pixel), its sky pixels' clipped
    # rms and median, computed here with astropy; one SourceCatalog per chunk's values.
    context = _context(tmp_path / "s", scene, result, segments, sky_subtracted=False)
    table = internal_catalog(None, context, _objects(result))
    assert table.meta["error_source"]["H"].startswith("sky noise") and "subtracted" in table.meta["background"]
    ids = np.asarray(result.id)
    checked = 0
    for i, obj in enumerate(ids):
        f = np.flatnonzero(result.segmap.ravel() == obj)[0]
        cy, cx = f // SHAPE[1] // CHUNK, f % SHAPE[1] // CHUNK
        sl = (slice(cy * CHUNK, (cy + 1) * CHUNK), slice(cx * CHUNK, (cx + 1) * CHUNK))
        h = scene["bands"][0][sl].astype(np.float64)
        sky = (scene["rank"][4][sl] == 1) & (scene["n"][sl] > 0) & (result.segmap[sl] == 0) & np.isfinite(h)
        if sky.sum() < 100:
            continue
        _, median, std = sigma_clipped_stats(h[sky], sigma=3.0, maxiters=10)
        data = scene["bands"][0].astype(np.float64) - median
        cat = SourceCatalog(
            data,
            SegmentationImage(result.segmap),
            error=np.full(SHAPE, std),
            mask=~np.isfinite(scene["bands"]).all(axis=0),
            kron_params=(2.5, 1.4, 0.0),
            aperture_mask_method="correct",
            local_bkg_width=0,
        ).get_label(obj)
        assert table["segment_flux_H"][i] == pytest.approx(float(cat.segment_flux), rel=1e-9)
        assert table["kron_fluxerr_H"][i] == pytest.approx(float(cat.kron_flux_err), rel=1e-9)
        checked += 1
    assert checked >= 6


def test_zeropoints_give_magnitudes_and_none_gives_none(tmp_path, scene, weight):
    _, segments, result = whole_image_stages(scene)
    without = internal_catalog(None, _context(tmp_path / "a", scene, result, segments, weight=weight), _objects(result))
    assert not [c for c in without.colnames if c.startswith(("mag_", "magerr_", "maglim_"))]
    assert "no AB zero point" in without.meta["magnitudes"]
    table = internal_catalog(
        None,
        _context(tmp_path / "b", scene, result, segments, weight=weight, zeropoints={"H": 25.946}),
        _objects(result),
    )
    flux = np.asarray(table["kron_flux_H"], float)
    expected = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1)) + 25.946, np.nan)
    np.testing.assert_allclose(np.asarray(table["mag_kron_H"].filled(np.nan), float), expected, rtol=1e-12)
    assert table["mag_kron_H"].unit == u.mag and "mag_kron_J" not in table.colnames
    assert table.meta["zeropoints"] == {"H": 25.946} and "J" in table.meta["magnitudes"]


def _censored_reference(labels: np.ndarray, zeros: np.ndarray) -> set[int]:
    """Objects with an exact zero within 6 pixels (Chebyshev): the labels met by a
    scipy.ndimage grey dilation of the zeros' distance map on the whole image."""
    from scipy import ndimage

    distance = ndimage.distance_transform_cdt(~zeros, metric="chessboard")
    return set(np.unique(labels[(distance <= 6) & (labels > 0)]).tolist())


def test_a_censored_star_core_outside_its_segment_is_flagged(tmp_path, scene):
    # A bright star's core censored to exact zeros in every band (3 x 3, as the HLF and
    # the survey benchmark's scene): not classified, with the pixels of every window
    # that touches it (n = 0 within 5 pixels), so the segment is a ring around a hole
    # (broken into pieces) and the zeros are outside every object. Its objects carry
    # censored_core; the reference is scipy.ndimage's distance transform on the whole image.
    star = {k: v.copy() for k, v in scene.items()}
    y, x = 64, 100  # the source of sigma 4 and amplitude 2 on the chunk face x = 96
    star["bands"][:, y - 1 : y + 2, x - 1 : x + 2] = 0.0
    star["n"][y - 6 : y + 7, x - 6 : x + 7] = 0
    for name in ("mean", "rank", "variance"):
        star[name][:, y - 6 : y + 7, x - 6 : x + 7] = 0
    star["background"] = star["rank"][4]
    _, segments, result = whole_image_stages(star)
    zeros = (star["bands"] == 0).any(axis=0)
    assert not (result.segmap[zeros] > 0).any()  # the core is outside every object
    table = internal_catalog(None, _context(tmp_path, star, result, segments), _objects(result))
    flagged = set(np.asarray(table["id"])[(np.asarray(table["flags"]) & 16) > 0].tolist())
    expected = _censored_reference(result.segmap, zeros)
    pieces = {
        int(result.segmap[y, x + 7]),
        int(result.segmap[y, x - 7]),
        int(result.segmap[y - 7, x]),
        int(result.segmap[y + 7, x]),
    }
    assert flagged == expected and 0 not in pieces and pieces <= flagged
