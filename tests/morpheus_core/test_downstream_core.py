"""Algorithms 1 and 2, Eq. 16/17, detection flags, apertures and the colour image."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from morpheus_core import CLASSES
from morpheus_core.catalog import agreement, aperture_mask, detection_flag, object_catalog
from morpheus_core.colour import HUES, colour_image
from morpheus_core.deblend import deblend, number_children, object_label, split_by_markers, split_by_peaks
from morpheus_core.object_sums import merge_object_sums, object_sums
from morpheus_core.segmentation import label_segments, segment_sources, watershed_markers


def gaussian(shape, y, x, sigma, amp=1.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))


def background_from(flux, lo, hi):
    """Background probability: exactly 1 below ``lo``, exactly 0 above ``hi``."""
    return np.clip((hi - flux) / (hi - lo), 0.0, 1.0)


# ------------------------------------------------------------------ Eq. 17


def test_agreement_matches_the_papers_numbers():
    assert agreement([0.5, 0.5, 0, 0, 0]) == pytest.approx(0.569, abs=5e-4)
    assert agreement([0.9, 0.1, 0, 0, 0]) == pytest.approx(0.798, abs=5e-4)
    assert agreement([1, 0, 0, 0, 0]) == pytest.approx(1.0)
    assert agreement(np.full(5, 0.2)) == pytest.approx(0.0, abs=1e-12)
    # float64 reference: 1 - H/log(5)
    p = np.array([0.6, 0.25, 0.1, 0.05, 0.0])
    ref = 1 - (-(p[p > 0] * np.log(p[p > 0])).sum()) / np.log(5)
    assert agreement(p) == pytest.approx(ref, rel=1e-12)


# --------------------------------------------------------------- Algorithm 1


def test_segmentation_finds_separate_sources_inside_the_classified_area():
    shape = (80, 100)
    flux = gaussian(shape, 20, 20, 3) + gaussian(shape, 55, 70, 4)
    b = background_from(flux, 0.02, 0.3)
    classified = np.ones(shape, bool)
    classified[:, 95:] = False
    markers = watershed_markers(b, classified)
    assert set(np.unique(markers)) == {0, 1, 2}
    assert (markers[~classified] == 0).all()
    labels, n = label_segments(segment_sources(b, classified))
    assert n == 2
    assert labels[20, 20] == 1 and labels[55, 70] == 2  # numbered in raster order
    assert (labels[~classified] == 0).all()
    # every certain-source pixel is inside a segment, no certain-background pixel is
    assert (labels[(b == 0)] > 0).all() and (labels[(b == 1)] == 0).all()


def test_threshold_and_external_markers_make_faint_sources():
    shape = (60, 60)
    flux = gaussian(shape, 30, 30, 3, amp=0.2)  # never reaches background 0
    b = background_from(flux, 0.02, 0.3)
    classified = np.ones(shape, bool)
    assert b.min() > 0.2
    assert label_segments(segment_sources(b, classified))[1] == 0
    assert label_segments(segment_sources(b, classified, threshold=0.5))[1] == 1
    sources = np.zeros(shape, int)
    sources[30, 30] = 7
    labels, n = label_segments(segment_sources(b, classified, sources=sources))
    assert n == 1 and labels[30, 30] == 1
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        segment_sources(b, classified, threshold=1.0)


# --------------------------------------------------------------- Algorithm 2


def test_two_touching_sources_deblend_into_two_children_and_one_does_not_split():
    rng = np.random.default_rng(1)
    shape = (70, 90)
    clean = gaussian(shape, 35, 30, 5) + gaussian(shape, 35, 46, 5, amp=0.8)
    flux = clean + rng.normal(0, 1e-3, shape)
    b = background_from(clean, 0.02, 0.3)
    segmap, n = label_segments(segment_sources(b, np.ones(shape, bool)))
    assert n == 1  # the two sources touch: one segment
    single = gaussian(shape, 35, 30, 5) + rng.normal(0, 1e-3, shape)
    result = deblend(segmap, flux, min_distance=8)
    assert result.labels == ["1.1", "1.2"]
    assert list(result.parent_id) == [1, 1] and list(result.sub_id) == [1, 2]
    assert result.segmap[35, 30] == 1 and result.segmap[35, 46] == 2  # brightest first
    assert set(np.unique(result.segmap)) == {0, 1, 2}
    assert ((result.segmap > 0) == (segmap > 0)).all()  # deblending keeps the segment's pixels
    alone = deblend((gaussian(shape, 35, 30, 5) > 0.05).astype(int), single, min_distance=8)
    assert alone.labels == ["1"] and list(alone.sub_id) == [0]


def test_split_limits_and_markers():
    shape = (40, 120)
    flux = sum(gaussian(shape, 20, x, 3) for x in (15, 45, 75, 105))
    mask = np.ones(shape, bool)
    assert split_by_peaks(flux, mask, min_distance=10, nd_max=4).max() == 4
    assert split_by_peaks(flux, mask, min_distance=10, nd_max=2).max() == 2
    assert split_by_peaks(flux, mask, min_distance=40, nd_max=20).max() == 2  # peaks 30 px apart: every other one
    markers = np.zeros(shape, int)
    assert (split_by_markers(flux, mask, markers) == 0).all()  # no catalogued source: dropped
    markers[20, 45] = 9
    assert (split_by_markers(flux, mask, markers) == 9).all()
    markers[20, 105] = 4
    owners = split_by_markers(flux, mask, markers)
    assert owners[20, 15] == 9 and owners[20, 105] == 4 and set(np.unique(owners)) == {4, 9}


def test_child_numbering():
    ids, parent, sub = number_children(np.array([3, 5, 8]), np.array([1, 3, 1]))
    assert list(ids) == [1, 2, 3, 4, 5]
    assert list(parent) == [3, 5, 5, 5, 8] and list(sub) == [0, 1, 2, 3, 0]
    assert [object_label(p, s) for p, s in zip(parent, sub)] == ["3", "5.1", "5.2", "5.3", "8"]


# ------------------------------------------------------------ Eq. 16 catalog


def _cube(shape, fractions):
    return np.stack([np.full(shape, f, dtype=np.float64) for f in fractions])


def test_flux_weighted_fractions_by_hand():
    labels = np.array([[1, 1, 0], [0, 2, 2]])
    flux = np.array([[1.0, 3.0, 9.0], [5.0, -2.0, 2.0]])
    mean = np.zeros((5, 2, 3))
    mean[0] = [[1.0, 0.0, 0], [0, 0.5, 0.0]]  # spheroid
    mean[1] = [[0.0, 1.0, 0], [0, 0.5, 1.0]]  # disk
    mean[4] = 1 - mean[0] - mean[1]
    variance = np.zeros_like(mean)
    variance[0] = [[0.04, 0.01, 0], [0, 0.09, 0.16]]
    bands = np.stack([flux, 2 * flux, flux, flux])
    sums = object_sums(labels, flux=flux, mean=mean, variance=variance, bands=bands)
    table = object_catalog(merge_object_sums([sums]), wcs=None, width=3)
    # object 1: weights 1, 3 -> spheroid 1/4, disk 3/4
    assert table["p_spheroid"][0] == pytest.approx(0.25, abs=1e-12)
    assert table["p_disk"][0] == pytest.approx(0.75, abs=1e-12)
    assert table["sigma_spheroid"][0] == pytest.approx((1 * 0.2 + 3 * 0.1) / 4, abs=1e-12)
    assert table["x"][0] == pytest.approx((0 * 1 + 1 * 3) / 4) and table["y"][0] == pytest.approx(0.0)
    # object 2: the negative pixel weighs nothing -> all disk
    assert table["p_disk"][1] == pytest.approx(1.0, abs=1e-12)
    assert table["sigma_spheroid"][1] == pytest.approx(0.4, abs=1e-12)
    assert table["flux_H"][1] == pytest.approx(0.0) and table["flux_J"][1] == pytest.approx(0.0)
    assert table["flux_H"][0] == pytest.approx(4.0) and table["flux_J"][0] == pytest.approx(8.0)
    assert list(table["area"]) == [2, 2]
    assert list(table["dominant_class"]) == ["disk", "disk"]
    assert list(table["x_peak"]) == [1, 2] and list(table["y_peak"]) == [0, 1]
    total = sum(np.asarray(table[f"p_{c}"]) for c in CLASSES)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert table["p_disk"].description and table["x"].unit == "pix"


def test_extra_fraction_images_give_the_same_fractions_as_a_catalog_of_them():
    """``fractions={"mean": m}`` columns equal the ``p_`` columns of a catalog computed on ``m``."""
    rng = np.random.default_rng(8)
    shape = (23, 19)
    labels = rng.integers(0, 5, shape)
    flux = rng.normal(1.0, 1.0, shape)
    rank, mean = (rng.dirichlet(np.ones(5), shape).transpose(2, 0, 1) for _ in range(2))
    variance = rng.uniform(0, 0.05, (5, *shape))
    bands = rng.normal(0, 1, (4, *shape))
    both = object_catalog(
        merge_object_sums(
            [object_sums(labels, flux=flux, mean=rank, variance=variance, bands=bands, fractions={"mean": mean})]
        ),
        wcs=None,
        width=shape[1],
        fractions=("mean",),
    )
    of_mean = object_catalog(
        merge_object_sums([object_sums(labels, flux=flux, mean=mean, variance=variance, bands=bands)]),
        wcs=None,
        width=shape[1],
    )
    of_rank = object_catalog(
        merge_object_sums([object_sums(labels, flux=flux, mean=rank, variance=variance, bands=bands)]),
        wcs=None,
        width=shape[1],
    )
    for c in CLASSES:
        np.testing.assert_allclose(both[f"p_mean_{c}"], of_mean[f"p_{c}"], rtol=1e-12)
        np.testing.assert_allclose(both[f"p_{c}"], of_rank[f"p_{c}"], rtol=1e-12)
        assert both[f"p_mean_{c}"].description
    assert not np.allclose(both["p_mean_disk"], both["p_disk"])
    # an empty piece carries the extra columns too, so pieces still merge
    empty = object_sums(
        np.zeros(shape, int), flux=flux, mean=rank, variance=variance, bands=bands, fractions={"mean": mean}
    )
    assert "wq_mean_disk" in empty.columns and len(empty) == 0


def test_sums_of_pieces_merge_exactly():
    rng = np.random.default_rng(5)
    shape = (37, 41)
    labels = rng.integers(0, 6, shape)
    flux = rng.normal(1.0, 1.0, shape)
    mean = rng.dirichlet(np.ones(5), shape).transpose(2, 0, 1)
    variance = rng.uniform(0, 0.05, (5, *shape))
    bands = rng.normal(0, 1, (4, *shape))
    whole = object_sums(labels, flux=flux, mean=mean, variance=variance, bands=bands)
    parts = []
    for y0, y1 in ((0, 10), (10, 37)):
        for x0, x1 in ((0, 17), (17, 41)):
            parts.append(
                object_sums(
                    labels[y0:y1, x0:x1],
                    flux=flux[y0:y1, x0:x1],
                    mean=mean[:, y0:y1, x0:x1],
                    variance=variance[:, y0:y1, x0:x1],
                    bands=bands[:, y0:y1, x0:x1],
                    origin=(y0, x0),
                    width=shape[1],
                )
            )
    merged = merge_object_sums(parts)
    assert list(merged.index) == list(whole.index) == [1, 2, 3, 4, 5]
    for column in whole.columns:
        np.testing.assert_allclose(
            merged[column].to_numpy(float), whole[column].to_numpy(float), rtol=1e-12, err_msg=column
        )


def test_detection_flags_and_aperture():
    flags = detection_flag([0.0, 0.3, 1.0, 0.0], [True, True, True, False])
    assert list(flags) == [1, 2, 3, 0]
    disc = aperture_mask((21, 21), 10, 10, 6.0)
    assert disc.sum() == 113 and disc[10, 16] and not disc[10, 17]


# ------------------------------------------------------------- colour image


def test_colour_image_follows_section_6():
    shape = (1, 4)
    mean = np.zeros((5, *shape))
    mean[1, 0, 0], mean[4, 0, 0] = 1.0, 0.0  # pure disk, no background
    mean[0, 0, 1], mean[3, 0, 1], mean[4, 0, 1] = 0.3, 0.3, 0.4  # tie spheroid / point source
    mean[4, 0, 2] = 1.0  # sky
    mean[3, 0, 3] = 1.0  # point source, unclassified
    classified = np.array([[True, True, True, False]])
    rgb = colour_image(mean, classified)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    expected = np.round(np.array(colorsys.hsv_to_rgb(HUES["disk"], 1.0, 1.0)) * 255)
    np.testing.assert_array_equal(rgb[0, 0], expected)
    assert rgb[0, 1, 0] == rgb[0, 1, 1] == rgb[0, 1, 2] == round(0.6 * 255)  # zero saturation: grey
    assert (rgb[0, 2] == 0).all() and (rgb[0, 3] == 0).all()


def test_flux_weighted_fractions_equal_the_catalog_on_one_object():
    # validation/ and the catalog use one Eq. 16: compare it with a
    # direct float64 evaluation and with object_sums + object_catalog.
    from morpheus_core.catalog import object_catalog
    from morpheus_core.object_sums import flux_weighted_fractions, object_sums

    rng = np.random.default_rng(4)
    cube = rng.random((5, 20, 24))
    cube /= cube.sum(axis=0)
    flux = rng.normal(0.5, 1.0, size=(20, 24))
    mask = np.zeros((20, 24), bool)
    mask[4:15, 6:19] = True
    w = np.where(mask & (flux > 0), flux, 0.0)
    direct = (cube * w).sum(axis=(1, 2)) / w.sum()
    got = flux_weighted_fractions(cube, flux, mask)
    np.testing.assert_allclose(got, direct / direct.sum(), rtol=1e-12)
    sums = object_sums(mask.astype(int), flux=flux, mean=cube, variance=np.zeros_like(cube), bands=np.stack([flux] * 4))
    table = object_catalog(sums, wcs=None, width=24)
    np.testing.assert_allclose([table[f"p_{c}"][0] for c in CLASSES], got, rtol=1e-12)
    # No positive flux: uniform weights, as the catalog; an empty mask: NaN.
    np.testing.assert_allclose(
        flux_weighted_fractions(cube, -np.abs(flux), mask),
        cube[:, mask].mean(axis=1) / cube[:, mask].mean(axis=1).sum(),
        rtol=1e-12,
    )
    assert np.isnan(flux_weighted_fractions(cube, flux, np.zeros_like(mask))).all()
