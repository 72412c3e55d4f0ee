"""Tests for pipeline.inputs.ingest: FITS bands -> Zarr v3 store."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError, RunError
from pipeline.inputs import ingest as ingest_mod
from pipeline.inputs.grid import validate_bands
from pipeline.inputs.ingest import ingest, read_wcs
from pipeline.rundir.checksums import file_fingerprint
from tests.pipeline.inputs.band_images import BANDS, SHAPE, make_wcs, random_image, write_band


def test_round_trip(band_files, tmp_path):
    paths, arrays = band_files
    bandset = validate_bands(paths)
    assert bandset.bands == BANDS and bandset.shape == SHAPE
    assert bandset.hdu_index == (0, 0, 0, 0)
    group = ingest(bandset, tmp_path / "mosaic.zarr", chunk=32)
    assert group.metadata.zarr_format == 3
    image, coverage = group["image"], group["coverage"]
    assert image.dtype == np.float32 and image.shape == (4, *SHAPE)
    assert image.chunks == (4, 32, 32) and coverage.chunks == (32, 32)
    np.testing.assert_array_equal(image[:], np.stack([arrays[b] for b in BANDS]))
    assert coverage[:].all()
    attrs = group.attrs.asdict()
    assert attrs["bands"] == list(BANDS)
    assert attrs["shape"] == list(SHAPE)
    assert attrs["chunk"] == 32
    assert attrs["format_version"] == 1
    assert [i["band"] for i in attrs["inputs"]] == list(BANDS)
    for record, band in zip(attrs["inputs"], BANDS):
        assert record["path"] == str(paths[band])
        assert {k: record[k] for k in ("size", "sha256")} == file_fingerprint(paths[band])
    # WCS round trip: same parameters and same sky positions at the corners.
    original, restored = make_wcs(SHAPE), read_wcs(group)
    np.testing.assert_allclose(restored.wcs.crval, original.wcs.crval, rtol=0, atol=1e-12)
    np.testing.assert_allclose(restored.wcs.crpix, original.wcs.crpix, rtol=0, atol=1e-12)
    np.testing.assert_allclose(restored.pixel_scale_matrix, original.pixel_scale_matrix, rtol=1e-12)
    corners = ([0, 130, 0, 130], [0, 0, 96, 96])
    np.testing.assert_allclose(
        restored.all_pix2world(*corners, 0), original.all_pix2world(*corners, 0), rtol=0, atol=1e-10
    )


def test_reads_row_strips_not_whole_images(band_files, tmp_path, monkeypatch):
    paths, arrays = band_files
    bandset = validate_bands(paths)

    def no_data(self):
        raise AssertionError("ingest loaded a whole image through hdu.data")

    # Any access to the full data array (validation or ingest) fails the test.
    monkeypatch.setattr(fits.hdu.image._ImageBaseHDU, "data", property(no_data))
    calls = []
    real_read = ingest_mod._read_strip

    def recording_read(hdu, y0, y1):
        strip = real_read(hdu, y0, y1)
        calls.append((y0, y1, strip.shape))
        return strip

    monkeypatch.setattr(ingest_mod, "_read_strip", recording_read)
    validate_bands(paths)
    group = ingest(bandset, tmp_path / "m.zarr", chunk=32)
    expected = [(y0, min(y0 + 32, 97)) for y0 in range(0, 97, 32)]
    assert [(y0, y1) for y0, y1, _ in calls] == [r for r in expected for _ in BANDS]
    assert all(shape == (y1 - y0, 131) for y0, y1, shape in calls)
    assert group["image"].nchunks == 4 * 5 and group["image"].nchunks_initialized == 20
    monkeypatch.undo()
    np.testing.assert_array_equal(group["image"][:], np.stack([arrays[b] for b in BANDS]))


def test_chunk_larger_than_image(band_files, tmp_path):
    paths, arrays = band_files
    group = ingest(validate_bands(paths), tmp_path / "m.zarr", chunk=256)
    assert group["image"].chunks == (4, 256, 256)
    np.testing.assert_array_equal(group["image"][1], arrays["J"])


@settings(max_examples=15, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), chunk=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_round_trip_any_grid(height, width, chunk, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(2, height, width)).astype(np.float32)
    data[rng.random(data.shape) < 0.1] = 0.0
    data[rng.random(data.shape) < 0.1] = np.nan
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {b: write_band(tmp / f"{b}.fits", data[i]) for i, b in enumerate("HJ")}
        for band, path in paths.items():  # tiny bands may hold the same pixels: distinct files all the same
            fits.setval(path, "BAND", value=band)
        group = ingest(validate_bands(paths), tmp / "m.zarr", chunk=chunk)
        np.testing.assert_array_equal(group["image"][:], data)  # NaN == NaN here
        np.testing.assert_array_equal(group["coverage"][:], np.all(np.isfinite(data) & (data != 0), axis=0))


def test_coverage_mask(tmp_path):
    arrays = {b: random_image(i) for i, b in enumerate(BANDS)}
    arrays["J"][5, 7] = np.nan
    arrays["Z"][50, 60] = 0.0  # HLF censoring / no coverage
    arrays["H"][96, 130] = np.inf
    arrays["V"][0, :10] = 0.0
    paths = {b: write_band(tmp_path / f"{b}.fits", a) for b, a in arrays.items()}
    group = ingest(validate_bands(paths), tmp_path / "m.zarr", chunk=32)
    coverage, image = group["coverage"][:], group["image"][:]
    expected = np.ones(SHAPE, dtype=bool)
    expected[5, 7] = expected[50, 60] = expected[96, 130] = False
    expected[0, :10] = False
    np.testing.assert_array_equal(coverage, expected)
    assert np.isnan(image[1, 5, 7]) and image[3, 50, 60] == 0.0
    assert np.isposinf(image[0, 96, 130]) and (image[2, 0, :10] == 0).all()


def test_image_in_extension(tmp_path):
    data = random_image(3)
    path = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=make_wcs(SHAPE).to_header())]).writeto(path)
    bandset = validate_bands({"H": path})
    assert bandset.hdu_index == (1,)
    group = ingest(bandset, tmp_path / "m.zarr", chunk=40)
    np.testing.assert_array_equal(group["image"][0], data)


@pytest.mark.parametrize("dtype", [">i2", ">f8", "<f8", "uint16"])
def test_integer_and_float64_converted_to_native_float32(tmp_path, dtype):
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        data = rng.normal(scale=100.0, size=SHAPE).astype(dtype)
    else:
        info = np.iinfo(np.dtype(dtype))
        data = rng.integers(info.min, info.max, size=SHAPE, endpoint=True).astype(dtype)
    path = write_band(tmp_path / "int.fits", data)
    with fits.open(path) as hdul:  # FITS stores big-endian; uint16 via BZERO=32768
        assert hdul[0].header["BITPIX"] in (16, -64)
    group = ingest(validate_bands({"H": path}), tmp_path / "m.zarr", chunk=32)
    out = group["image"][0]
    assert out.dtype == np.dtype("float32") and out.dtype.isnative
    # int16/uint16 are exact in float32; float64 is rounded once to float32.
    np.testing.assert_array_equal(out, data.astype(np.float32))


def test_rerun_with_same_inputs_reuses_store(band_files, tmp_path, monkeypatch):
    paths, arrays = band_files
    store = tmp_path / "m.zarr"
    ingest(validate_bands(paths), store, chunk=32)

    def must_not_write(*args, **kwargs):
        raise AssertionError("store rewritten although inputs are unchanged")

    monkeypatch.setattr(ingest_mod, "_write_store", must_not_write)
    group = ingest(validate_bands(paths), store, chunk=32)
    np.testing.assert_array_equal(group["image"][2], arrays["V"])


def test_changed_input_is_refused_then_overwritten(band_files, tmp_path):
    paths, _ = band_files
    store = tmp_path / "m.zarr"
    ingest(validate_bands(paths), store, chunk=32)
    new = random_image(99)
    paths["J"].unlink()
    write_band(paths["J"], new)
    with pytest.raises(InputError, match="changed") as err:
        ingest(validate_bands(paths), store, chunk=32)
    assert "band_J.fits" in str(err.value) and "band_H.fits" not in str(err.value)
    group = ingest(validate_bands(paths), store, chunk=32, overwrite=True)
    np.testing.assert_array_equal(group["image"][1], new)
    assert not list(tmp_path.glob("m.zarr.*")), "no .partial or .old left behind"


def test_other_chunk_size_is_refused(band_files, tmp_path):
    paths, _ = band_files
    ingest(validate_bands(paths), tmp_path / "m.zarr", chunk=32)
    with pytest.raises(InputError, match="--tile 32, not --tile 64"):
        ingest(validate_bands(paths), tmp_path / "m.zarr", chunk=64)


def test_existing_non_store_is_refused(band_files, tmp_path):
    paths, _ = band_files
    (tmp_path / "m.zarr").mkdir()
    with pytest.raises(InputError, match="not a mosaic store"):
        ingest(validate_bands(paths), tmp_path / "m.zarr")


def test_leftover_partial_is_not_a_finished_store(band_files, tmp_path):
    paths, arrays = band_files
    store, partial = tmp_path / "m.zarr", tmp_path / "m.zarr.partial"
    zarr.create_group(partial, zarr_format=3, attributes={"junk": True})
    assert not store.exists()
    group = ingest(validate_bands(paths), store, chunk=32)
    assert "junk" not in group.attrs and not partial.exists()
    np.testing.assert_array_equal(group["image"][3], arrays["Z"])


def test_crash_mid_ingest_leaves_no_store(band_files, tmp_path, monkeypatch):
    paths, _ = band_files
    store = tmp_path / "m.zarr"
    real_read = ingest_mod._read_strip

    def failing_read(hdu, y0, y1):
        if y0 >= 64:
            raise OSError("disk went away")
        return real_read(hdu, y0, y1)

    monkeypatch.setattr(ingest_mod, "_read_strip", failing_read)
    with pytest.raises(RunError, match="disk went away"):
        ingest(validate_bands(paths), store, chunk=32)
    assert not store.exists()
    monkeypatch.undo()
    assert ingest(validate_bands(paths), store, chunk=32)["coverage"][:].all()


@pytest.mark.parametrize("suffix", [".fits.gz", ".fits.bz2", ".fits.xz"])
def test_compressed_bands_are_read_like_plain_ones(band_files, tmp_path, suffix, monkeypatch):
    # .fits.gz bands were refused as "truncated" (the compressed size against the data span).
    paths, arrays = band_files
    packed = dict(paths)
    for band in ("J", "Z"):  # written by astropy, which compresses by the file name
        packed[band] = tmp_path / f"packed_{band}{suffix}"
        fits.PrimaryHDU(arrays[band], header=make_wcs(SHAPE).to_header()).writeto(packed[band])
    assert packed["J"].stat().st_size < paths["J"].stat().st_size  # really compressed
    bandset = validate_bands(packed)
    calls = []
    real_read = ingest_mod._read_strip

    def recording_read(hdu, y0, y1):
        calls.append((y0, y1))
        return real_read(hdu, y0, y1)

    monkeypatch.setattr(ingest_mod, "_read_strip", recording_read)  # strips, as for plain files
    group = ingest(bandset, tmp_path / "m.zarr", chunk=32)
    assert len(calls) == 4 * len(BANDS)
    np.testing.assert_array_equal(group["image"][:], np.stack([arrays[b] for b in BANDS]))
    with fits.open(packed["J"]) as hdul:  # astropy's own reading, the reference
        np.testing.assert_array_equal(group["image"][1], hdul[0].data)
    assert [r["path"] for r in group.attrs["inputs"]][1] == str(packed["J"])


def test_strips_of_a_gzip_band_read_in_order_decompress_it_once(tmp_path, monkeypatch):
    # astropy seeks back after each section read, which restarts a gzip stream: each
    # strip used to decompress the file from its start.
    import gzip

    from pipeline.inputs.band_files import open_band

    data = random_image(3, shape=(400, 300))
    path = tmp_path / "band.fits.gz"
    fits.PrimaryHDU(data).writeto(path)
    rewinds = []
    real = gzip._GzipReader._rewind

    def counted(self):
        rewinds.append(1)
        return real(self)

    monkeypatch.setattr(gzip._GzipReader, "_rewind", counted)
    with open_band(path) as hdul:
        strips = [np.asarray(hdul[0].section[y0 : y0 + 16, :]) for y0 in range(0, 400, 16)]
    with fits.open(path, memmap=False) as hdul:  # astropy on its own: a restart per strip
        _ = [np.asarray(hdul[0].section[y0 : y0 + 16, :]) for y0 in range(0, 400, 16)]
    assert len(rewinds) >= 25
    rewinds.clear()
    with open_band(path) as hdul:
        strips = [np.asarray(hdul[0].section[y0 : y0 + 16, :]) for y0 in range(0, 400, 16)]
    np.testing.assert_array_equal(np.concatenate(strips), data)
    assert len(rewinds) == 0, f"{len(rewinds)} restarts of the decompression for {len(strips)} strips"
