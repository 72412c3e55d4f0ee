"""Tests for pipeline.products.fits: FITS images with WCS and provenance, written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.errors import RunError
from pipeline.products.fits import write_fits_image, write_fits_image_strips
from pipeline.products.provenance import provenance

SHAPE = (40, 60)
MODEL = "morpheus-astro 0.5.1 model-440"
# Header floats are written with ~16 significant digits, so coordinates near
# RA 53 deg survive to ~1e-14 deg; 1e-9 deg (3.6 micro-arcsec) leaves a wide margin.
WCS_ATOL_DEG = 1e-9
PIXELS = (np.array([0.0, 59.0, 0.0, 59.0, 29.5, 12.25]), np.array([0.0, 0.0, 39.0, 39.0, 19.5, 33.75]))


def make_wcs(shape: tuple[int, int]) -> WCS:
    """TAN WCS near GOODS-S with 0.06 arcsec pixels, slightly rotated (CD matrix)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [53.12, -27.81]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    scale, angle = 0.06 / 3600, np.deg2rad(3.0)
    w.wcs.cd = scale * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return w


@pytest.fixture
def wcs() -> WCS:
    return make_wcs(SHAPE)


@pytest.fixture
def cards() -> dict:
    return provenance(
        "run-0042", model=MODEL, precision="float32", extra={"MOSAIC": ("demo", "mosaic name"), "NBANDS": np.int64(4)}
    )


def assert_same_sky(written: fits.Header, expected: WCS) -> None:
    got = WCS(written)
    assert got.naxis == 2
    ra, dec = got.pixel_to_world_values(*PIXELS)
    ra0, dec0 = expected.pixel_to_world_values(*PIXELS)
    np.testing.assert_allclose(ra, ra0, rtol=0, atol=WCS_ATOL_DEG)
    np.testing.assert_allclose(dec, dec0, rtol=0, atol=WCS_ATOL_DEG)
    # The high-level API agrees too.
    sky = got.pixel_to_world(*PIXELS)
    assert np.all(sky.separation(expected.pixel_to_world(*PIXELS)).deg < WCS_ATOL_DEG)


def test_image_round_trip(tmp_path, wcs, cards, rng):
    data = rng.random(SHAPE, dtype=np.float32)
    out = write_fits_image(
        tmp_path / "spheroid.fits",
        data,
        wcs_header=wcs.to_header_string(),
        provenance=cards,
        bunit="probability",
        extname="SPHEROID",
        comments=["Morpheus spheroid probability"],
    )
    assert out == tmp_path / "spheroid.fits"
    with fits.open(out) as hdul:
        assert len(hdul) == 1
        hdu = hdul[0]
        np.testing.assert_array_equal(hdu.data, data)
        assert hdu.data.dtype == np.dtype(">f4")
        header = hdu.header
        assert header["BUNIT"] == "probability"
        assert header["EXTNAME"] == "SPHEROID"
        assert "Morpheus spheroid probability" in str(header["COMMENT"])
        for key, (value, comment) in cards.items():
            assert header[key] == value
            assert header.comments[key] == comment
        assert header["NBANDS"] == 4
        assert_same_sky(header, wcs)


def test_image_bool_stored_as_uint8_and_no_wcs(tmp_path, cards):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:9, 10:20] = True
    out = write_fits_image(tmp_path / "mask.fits", mask, wcs_header=None, provenance=cards)
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul[0].data, mask.astype(np.uint8))
        assert "CTYPE1" not in hdul[0].header
        assert "BUNIT" not in hdul[0].header


def test_image_rejects_non_2d(tmp_path, wcs, cards):
    with pytest.raises(ValueError, match=r"2-D image, got shape \(2, 40, 60\)"):
        write_fits_image(
            tmp_path / "x.fits", np.zeros((2, *SHAPE)), wcs_header=wcs.to_header_string(), provenance=cards
        )
    assert list(tmp_path.iterdir()) == []


def test_provenance_cannot_overwrite_wcs_or_structure(tmp_path, wcs):
    for key in ("CTYPE1", "NAXIS1", "BUNIT"):
        with pytest.raises(ValueError, match=key):
            write_fits_image(
                tmp_path / "x.fits", np.zeros(SHAPE), wcs_header=wcs.to_header_string(), provenance={key: ("oops", "")}
            )


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path, wcs, cards):
    path = tmp_path / "map.fits"
    old_umask = os.umask(0o022)
    try:
        write_fits_image(path, np.zeros(SHAPE, np.float32), wcs_header=wcs.to_header_string(), provenance=cards)
        write_fits_image(path, np.ones(SHAPE, np.float32), wcs_header=wcs.to_header_string(), provenance=cards)
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.fits"]
    # Readable by others as a plainly created file would be, not mkstemp's 0600.
    assert path.stat().st_mode & 0o777 == 0o644
    with fits.open(path) as hdul:
        assert np.all(hdul[0].data == 1)


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, wcs, cards, monkeypatch):
    path = tmp_path / "map.fits"
    write_fits_image(path, np.zeros(SHAPE, np.float32), wcs_header=wcs.to_header_string(), provenance=cards)
    before = path.read_bytes()

    def disk_full(self, data):
        self._ffo.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fits.StreamingHDU, "write", disk_full)
    with pytest.raises(RunError, match="map.fits: cannot write FITS file"):
        write_fits_image(path, np.ones(SHAPE, np.float32), wcs_header=wcs.to_header_string(), provenance=cards)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["map.fits"]


def test_missing_folder_is_a_run_error(tmp_path, cards):
    with pytest.raises(RunError, match="cannot write FITS file"):
        write_fits_image(tmp_path / "absent" / "x.fits", np.zeros(SHAPE), wcs_header=None, provenance=cards)


def test_strip_writer_equals_the_whole_image_writer(tmp_path, wcs, cards, rng):
    data = rng.normal(size=(70, 45)).astype(np.float32)

    class Strips:  # an array that only hands out row strips, and counts them
        shape = data.shape
        reads = 0

        def __getitem__(self, rows):
            Strips.reads += 1
            return data[rows]

    whole = write_fits_image(
        tmp_path / "whole.fits", data, wcs_header=wcs.to_header_string(), provenance=cards, extname="IMG"
    )
    strips = write_fits_image_strips(
        tmp_path / "strips.fits", Strips(), strip=16, wcs_header=wcs.to_header_string(), provenance=cards, extname="IMG"
    )
    assert Strips.reads == 1 + 5  # one row for the dtype, then ceil(70 / 16) strips
    with fits.open(whole) as a, fits.open(strips) as b:
        np.testing.assert_array_equal(b[0].data, data)  # the strips reassemble the image
        np.testing.assert_array_equal(a[0].data, b[0].data)
        for key in ("CTYPE1", "CRVAL1", "CRPIX2", "EXTNAME", "RUNID", "NAXIS1", "NAXIS2", "BITPIX"):
            assert a[0].header[key] == b[0].header[key], key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strips.fits", "whole.fits"]


def test_a_time_reference_only_when_the_mosaic_has_one(tmp_path, wcs, cards):
    """astropy's ``WCS.to_header`` writes ``MJDREF = 0.0`` for a WCS with no time reference
    (the ingested mosaic's header holds it so): not written; a real one is kept."""
    assert "MJDREF" in wcs.to_header_string()
    out = write_fits_image(
        tmp_path / "a.fits", np.zeros(SHAPE, np.float32), wcs_header=wcs.to_header_string(), provenance=cards
    )
    assert "MJDREF" not in fits.getheader(out) and "MJDREFI" not in fits.getheader(out)
    dated = wcs.deepcopy()
    dated.wcs.mjdref = [55197.0, 0.0]
    out = write_fits_image(
        tmp_path / "b.fits", np.zeros(SHAPE, np.float32), wcs_header=dated.to_header_string(), provenance=cards
    )
    header = fits.getheader(out)
    assert header.get("MJDREF", header.get("MJDREFI")) == 55197.0
