"""Photometry of catalogued objects (morpheus_core.photometry): measured per group of
objects on cutouts, against photutils' SourceCatalog over the whole image."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from photutils.segmentation import SegmentationImage, SourceCatalog
from scipy import ndimage as ndi

from morpheus_core.photometry import measure_band, measure_objects
from morpheus_core.photometry_boxes import BOX_COLUMNS, measurement_boxes
from morpheus_core.photometry_columns import SHAPE_COLUMNS, column_info, photometry_table

from .photometry_scene import CHUNK, SHAPE, make_scene

# Measured on a cutout, an object's pixels are the same as in the whole image; only its
# positions differ, by float rounding of the offset added back (|x| < 200: ulp 3e-14),
# which moves the Kron radius, the aperture weights and the half-light radius's root
# by ~1e-15 relative (measured: 3e-15 at most). 1e-12 leaves room and would still catch
# a single pixel read differently (its weight in a sum is > 1e-4 of the flux).
RTOL = 1e-12
ATOL_POSITION = 1e-12


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def reference(scene):
    """photutils over the whole image: H for the shapes, J in H's Kron apertures."""
    segm = SegmentationImage(scene.labels)
    h = SourceCatalog(scene.bands["H"], segm, error=scene.errors["H"], mask=scene.mask | ~np.isfinite(scene.bands["H"]))
    j = SourceCatalog(
        scene.bands["J"],
        segm,
        error=scene.errors["J"],
        mask=scene.mask | ~np.isfinite(scene.bands["J"]),
        detection_catalog=h,
    )
    h, j = h.select_labels(scene.ids), j.select_labels(scene.ids)
    frame = pd.DataFrame(
        {
            "x_centroid": h.x_centroid,
            "y_centroid": h.y_centroid,
            "bbox_xmin": h.bbox_xmin,
            "bbox_xmax": h.bbox_xmax,
            "bbox_ymin": h.bbox_ymin,
            "bbox_ymax": h.bbox_ymax,
            "semimajor_sigma": h.semimajor_axis.value,
            "semiminor_sigma": h.semiminor_axis.value,
            "ellipticity": h.ellipticity.value,
            "orientation": h.orientation.to_value(u.deg),
            "equivalent_radius": h.equivalent_radius.value,
            "gini": h.gini,
            "kron_radius": h.kron_radius.value,
            "half_light_radius": h.flux_radius(0.5).value,
            "segment_flux_H": h.segment_flux,
            "segment_fluxerr_H": h.segment_flux_err,
            "kron_flux_H": h.kron_flux,
            "kron_fluxerr_H": h.kron_flux_err,
            "segment_flux_J": j.segment_flux,
            "segment_fluxerr_J": j.segment_flux_err,
            "kron_flux_J": j.kron_flux,
            "kron_fluxerr_J": j.kron_flux_err,
        },
        index=pd.Index(scene.ids, name="id"),
    )
    return frame.astype({c: np.int64 if c.startswith("bbox_") else np.float64 for c in frame.columns})


def _groups(labels: np.ndarray, ids: np.ndarray) -> dict[tuple[int, int], list[int]]:
    """Objects grouped by the chunk of their first pixel (raster order), as the pipeline does."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        groups.setdefault((ys[0] // CHUNK, xs[0] // CHUNK), []).append(int(i))
    return groups


def _measure_by_group(scene, margin: int):
    """Per group: boxes from the segments' bounding boxes grown by ``margin``, then one
    cutout holding them all."""
    slices = ndi.find_objects(scene.labels)
    parts, cutouts = [], []
    for ids in _groups(scene.labels, scene.ids).values():
        sl = [slices[i - 1] for i in ids]
        y0, y1 = max(0, min(s[0].start for s in sl) - margin), min(SHAPE[0], max(s[0].stop for s in sl) + margin)
        x0, x1 = max(0, min(s[1].start for s in sl) - margin), min(SHAPE[1], max(s[1].stop for s in sl) + margin)
        seg = (slice(y0, y1), slice(x0, x1))
        boxes = measurement_boxes(
            scene.labels[seg], scene.bands["H"][seg], ids, offset=(y0, x0), image_shape=SHAPE, mask=scene.mask[seg]
        )
        y0, y1, x0, x1 = boxes.y_start.min(), boxes.y_stop.max(), boxes.x_start.min(), boxes.x_stop.max()
        cut = (slice(y0, y1), slice(x0, x1))
        cutouts.append((ids, boxes, (y0, y1, x0, x1)))
        parts.append(
            measure_objects(
                scene.labels[cut],
                {b: v[cut] for b, v in scene.bands.items()},
                ids,
                errors={b: v[cut] for b, v in scene.errors.items()},
                mask=scene.mask[cut],
                offset=(y0, x0),
                image_shape=SHAPE,
            )
        )
    return pd.concat(parts).sort_index(), cutouts


def test_the_scene_has_the_hard_cases(scene):
    slices = ndi.find_objects(scene.labels)
    spans = [
        (s[0].start // CHUNK != (s[0].stop - 1) // CHUNK, s[1].start // CHUNK != (s[1].stop - 1) // CHUNK)
        for s in slices
    ]
    assert sum(a or b for a, b in spans) >= 5  # segments across chunk faces
    assert sum(a and b for a, b in spans) >= 1  # ... and across a chunk corner
    assert (scene.sub_id > 0).sum() >= 4  # deblended children
    near_nan = ndi.binary_dilation(scene.mask, np.ones((3, 3), bool)) & ~scene.mask
    assert len(np.unique(scene.labels[near_nan & (scene.labels > 0)])) >= 1  # on the footprint edge
    assert ((scene.bands["H"] == 0) & (scene.labels > 0)).sum() == 9  # the censored core inside an object
    edge = np.zeros(SHAPE, bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    assert (scene.labels[edge] > 0).any()  # on the image edge


@pytest.mark.parametrize("margin", [1, 24])
def test_measuring_per_group_on_cutouts_equals_photutils_on_the_whole_image(scene, reference, margin):
    chunked, cutouts = _measure_by_group(scene, margin)
    boxes = pd.concat([b for _, b, _ in cutouts])
    # margin 1: the segments' boxes alone, most Kron radii unknown (bounded); 24: most measured.
    measured = boxes.kron_measured.mean()
    assert measured < 0.5 if margin == 1 else measured > 0.8
    # Boxes clipped by the image edge, and (with measured Kron radii) cutouts smaller than the image.
    assert (boxes.x_start == 0).any() or (boxes.x_stop == SHAPE[1]).any()
    if margin == 24:
        assert sum((y1 - y0) * (x1 - x0) < SHAPE[0] * SHAPE[1] / 2 for _, _, (y0, y1, x0, x1) in cutouts) >= 3
    pd.testing.assert_index_equal(chunked.index, reference.index)
    assert list(chunked.columns) == list(reference.columns)
    for column in reference.columns:
        a, b = reference[column].to_numpy(), chunked[column].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), column
        if column in ("x_centroid", "y_centroid"):
            np.testing.assert_allclose(b, a, rtol=0, atol=ATOL_POSITION, err_msg=column)
        else:
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=0, err_msg=column)
    # The whole image through measure_objects is photutils exactly.
    whole = measure_objects(scene.labels, scene.bands, scene.ids, errors=scene.errors, mask=scene.mask)
    pd.testing.assert_frame_equal(whole, reference, check_exact=True)


def test_the_segment_box_alone_is_not_enough(scene, reference):
    """The rule matters: on its segment's bounding box, photutils gives other Kron fluxes."""
    slices = ndi.find_objects(scene.labels)
    differs = []
    for i in scene.ids:
        s = slices[i - 1]
        y0, y1 = max(0, s[0].start - 1), min(SHAPE[0], s[0].stop + 1)
        x0, x1 = max(0, s[1].start - 1), min(SHAPE[1], s[1].stop + 1)
        cut = (slice(y0, y1), slice(x0, x1))
        labels = scene.labels[cut]
        cat = SourceCatalog(
            np.nan_to_num(scene.bands["H"][cut]),
            SegmentationImage(labels),
            mask=scene.mask[cut] | ~np.isfinite(scene.bands["H"][cut]),
        ).select_labels([i])
        differs.append(abs(float(np.ravel(cat.kron_flux)[0]) / reference.loc[i, "kron_flux_H"] - 1) > 1e-6)
        if i == scene.ids[0]:
            with pytest.raises(ValueError, match="misses part of the measurement box"):
                measure_objects(labels, {"H": scene.bands["H"][cut]}, [i], offset=(y0, x0), image_shape=SHAPE)
    assert sum(differs) >= len(scene.ids) // 2


def test_bad_cutouts_and_ids_are_refused(scene):
    empty = measure_objects(scene.labels, scene.bands, [], zeropoints={"H": 25.0})
    assert len(empty) == 0 and "maglim_kron_H" in empty and empty["bbox_xmin"].dtype == np.int64
    assert len(measurement_boxes(scene.labels, scene.bands["H"], [])) == 0
    with pytest.raises(ValueError, match="have no pixel"):
        measure_objects(scene.labels, scene.bands, [9999])
    with pytest.raises(ValueError, match="needs image_shape"):
        measure_objects(scene.labels[10:], {"H": scene.bands["H"][10:]}, [scene.ids[-1]], offset=(10, 0))
    with pytest.raises(ValueError, match="shape band 'Z'"):
        measure_objects(scene.labels, scene.bands, scene.ids, shape_band="Z")
    with pytest.raises(ValueError, match="same shape"):
        measure_objects(scene.labels, {"H": scene.bands["H"][:-1]}, scene.ids)
    big = int(np.argmax(np.bincount(scene.labels.ravel())[1:])) + 1
    ys, xs = np.nonzero(scene.labels == big)
    cut = (slice(ys.min() + 2, ys.max() + 2), slice(0, SHAPE[1]))
    with pytest.raises(ValueError, match="reach the edge of the cutout"):
        measurement_boxes(scene.labels[cut], scene.bands["H"][cut], [big], offset=(ys.min() + 2, 0), image_shape=SHAPE)


def test_magnitude_columns_follow_the_zero_points(scene):
    ids = scene.ids[:6]
    frame = measure_objects(
        scene.labels, scene.bands, ids, errors=scene.errors, mask=scene.mask, zeropoints={"H": 25.946, "J": None}
    )
    assert "mag_kron_H" in frame and "maglim_segment_H" in frame
    assert not any(c.startswith("mag") and c.endswith("_J") for c in frame.columns)
    flux = frame["kron_flux_H"].to_numpy()
    np.testing.assert_allclose(frame["mag_kron_H"], -2.5 * np.log10(flux) + 25.946, rtol=0, atol=1e-12)
    single = measure_band(
        scene.labels, scene.bands["H"], ids, error=scene.errors["H"], mask=scene.mask, zeropoint=25.946
    )
    pd.testing.assert_frame_equal(single, frame[single.columns])
    table = photometry_table(frame, shape_band="H", bands=["H", "J"], flux_unit="electron/s")
    assert table["kron_flux_H"].unit == u.electron / u.s and table["mag_kron_H"].unit == u.mag
    assert table["x_centroid"].unit == u.pix and "H" in table["x_centroid"].description
    assert table["maglim_kron_H"].mask.sum() == np.isnan(frame["maglim_kron_H"]).sum()
    assert table["bbox_xmin"].dtype == np.int64 and not table["bbox_xmin"].mask.any()
    info = column_info(frame.columns, shape_band="H", bands=["H", "J"])
    assert set(info) == set(frame.columns) and set(SHAPE_COLUMNS) <= set(info)
    assert "3-sigma" in info["maglim_kron_H"][1]


def test_negative_flux_gets_a_null_magnitude_and_a_limit():
    labels = np.zeros((40, 40), np.int32)
    labels[15:25, 15:25] = 1
    data = np.full((40, 40), -0.01)
    error = np.full((40, 40), 0.02)
    frame = measure_band(labels, data, [1], error=error, zeropoint=25.0)
    assert frame.loc[1, "segment_flux_H"] == pytest.approx(-1.0)
    assert np.isnan(frame.loc[1, "mag_segment_H"]) and np.isnan(frame.loc[1, "magerr_segment_H"])
    # 100 pixels of error 0.02: sigma 0.2, 3 sigma 0.6.
    assert frame.loc[1, "maglim_segment_H"] == pytest.approx(25.0 - 2.5 * math.log10(0.6), abs=1e-12)


def test_background_and_offset():
    labels = np.zeros((60, 60), np.int32)
    labels[25:31, 27:35] = 7
    data = np.full((60, 60), 0.5)
    data[labels == 7] += 2.0
    frame = measure_band(labels, data, [7], background=0.5, offset=(100, 200), image_shape=(400, 400))
    assert frame.loc[7, "segment_flux_H"] == pytest.approx(96.0)
    assert frame.loc[7, ["bbox_ymin", "bbox_ymax", "bbox_xmin", "bbox_xmax"]].tolist() == [125, 130, 227, 234]
    assert frame.loc[7, "x_centroid"] == pytest.approx(230.5) and frame.loc[7, "y_centroid"] == pytest.approx(127.5)
    boxes = measurement_boxes(labels, data, [7], background=0.5, offset=(100, 200), image_shape=(400, 400))
    assert list(boxes.columns) == [*BOX_COLUMNS, "kron_measured"] and boxes.loc[7, "kron_measured"]
    assert boxes.loc[7, "y_start"] <= 124 and boxes.loc[7, "x_stop"] >= 236
    # Without the background the flat 0.5 pedestal is part of the object and of its Kron aperture.
    assert measure_band(labels, data, [7], offset=(100, 200), image_shape=(400, 400)).loc[
        7, "segment_flux_H"
    ] == pytest.approx(120.0)
