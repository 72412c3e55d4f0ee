"""Tests for pipeline.inputs.ingest: FITS bands -> Zarr v3 store."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError, RunError
from pipeline.inputs import ingest as ingest_mod
from pipeline.inputs.grid import BandSet, validate_bands
from pipeline.inputs.ingest import file_fingerprint, ingest, read_wcs

BANDS = ("H", "J", "V", "Z")
SHAPE = (97, 131)  # odd sizes: a 4 x 5 grid of 32-pixel chunks with ragged edges


def make_wcs(shape: tuple[int, int], crval=(53.12, -27.81)) -> WCS:
    """TAN WCS near GOODS-S with 0.06 arcsec pixels."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cd = [[-0.06 / 3600, 0.0], [0.0, 0.06 / 3600]]
    return w


def write_band(path: Path, data: np.ndarray, wcs: WCS | None = None) -> Path:
    header = (wcs or make_wcs(data.shape)).to_header()
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


def random_image(seed: int, shape=SHAPE, dtype=np.float32) -> np.ndarray:
    # Offset keeps every pixel away from 0.0, so coverage is all True unless a test
    # puts zeros or NaN in on purpose.
    return (np.random.default_rng(seed).normal(size=shape) + 10.0).astype(dtype)


@pytest.fixture
def band_files(tmp_path):
    arrays = {b: random_image(i) for i, b in enumerate(BANDS)}
    paths = {b: write_band(tmp_path / f"band_{b}.fits", a) for b, a in arrays.items()}
    return paths, arrays


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
    np.testing.assert_allclose(restored.pixel_scale_matrix, original.pixel_scale_matrix,
                               rtol=1e-12)
    corners = ([0, 130, 0, 130], [0, 0, 96, 96])
    np.testing.assert_allclose(restored.all_pix2world(*corners, 0),
                               original.all_pix2world(*corners, 0), rtol=0, atol=1e-10)


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
@given(height=st.integers(1, 70), width=st.integers(1, 70), chunk=st.integers(1, 40),
       seed=st.integers(0, 2**16))
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
        np.testing.assert_array_equal(group["coverage"][:],
                                      np.all(np.isfinite(data) & (data != 0), axis=0))


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


def test_missing_files_listed_together(band_files, tmp_path):
    paths, _ = band_files
    paths = dict(paths, J=tmp_path / "nope_J.fits", Z=tmp_path / "nope_Z.fits")
    with pytest.raises(InputError) as err:
        validate_bands(paths)
    assert "nope_J.fits" in str(err.value) and "nope_Z.fits" in str(err.value)
    assert "band_H.fits" not in str(err.value)


def test_empty_band_mapping():
    with pytest.raises(InputError, match="no band"):
        validate_bands({})


def test_different_shapes(tmp_path):
    h = write_band(tmp_path / "h.fits", random_image(0))
    j = write_band(tmp_path / "j.fits", random_image(1, shape=(97, 130)))
    with pytest.raises(InputError) as err:
        validate_bands({"H": h, "J": j})
    msg = str(err.value)
    assert "h.fits" in msg and "j.fits" in msg
    assert "(97, 130)" in msg and "(97, 131)" in msg


def test_different_wcs(tmp_path):
    h = write_band(tmp_path / "h.fits", random_image(0))
    j = write_band(tmp_path / "j.fits", random_image(1),
                   wcs=make_wcs(SHAPE, crval=(53.12 + 1e-4, -27.81)))
    with pytest.raises(InputError) as err:
        validate_bands({"H": h, "J": j})
    msg = str(err.value)
    assert "h.fits" in msg and "j.fits" in msg and "CRVAL" in msg


def test_wcs_difference_within_tolerance_is_accepted(tmp_path):
    # 1e-12 deg is far below the 1e-9 deg tolerance (header round-off level).
    h = write_band(tmp_path / "h.fits", random_image(0))
    j = write_band(tmp_path / "j.fits", random_image(1),
                   wcs=make_wcs(SHAPE, crval=(53.12 + 1e-12, -27.81)))
    assert validate_bands({"H": h, "J": j}).bands == ("H", "J")


def test_different_pixel_scale(tmp_path):
    h = write_band(tmp_path / "h.fits", random_image(0))
    w = make_wcs(SHAPE)
    w.wcs.cd = [[-0.03 / 3600, 0.0], [0.0, 0.03 / 3600]]
    j = write_band(tmp_path / "j.fits", random_image(1), wcs=w)
    with pytest.raises(InputError, match="CD matrix") as err:
        validate_bands({"H": h, "J": j})
    assert "j.fits" in str(err.value)


@pytest.mark.parametrize("keep", [-3000, 1000], ids=["data cut", "header cut"])
def test_truncated_fits(band_files, tmp_path, keep):
    paths, _ = band_files
    raw = paths["V"].read_bytes()
    cut = tmp_path / "cut_V.fits"
    cut.write_bytes(raw[:keep])
    with pytest.raises(InputError) as err:
        validate_bands(dict(paths, V=cut))
    assert "cut_V.fits" in str(err.value)


def test_truncated_data_message_says_truncated(tmp_path):
    path = write_band(tmp_path / "a.fits", random_image(0))
    path.write_bytes(path.read_bytes()[:-100])  # only padding + a few pixels lost
    with pytest.raises(InputError, match="truncated"):
        validate_bands({"H": path})


def test_not_fits(band_files, tmp_path):
    paths, _ = band_files
    text = tmp_path / "notes_J.fits"
    text.write_text("this is not a FITS file\n" * 200)
    with pytest.raises(InputError) as err:
        validate_bands(dict(paths, J=text))
    assert "notes_J.fits" in str(err.value)


def test_table_only_fits(tmp_path):
    table = fits.BinTableHDU(Table({"ra": [53.1, 53.2], "dec": [-27.8, -27.9]}))
    path = tmp_path / "catalog.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(InputError, match="no 2-D image") as err:
        validate_bands({"H": path})
    assert "catalog.fits" in str(err.value)


def test_image_without_celestial_wcs(tmp_path):
    path = tmp_path / "pixels_only.fits"
    fits.PrimaryHDU(random_image(0)).writeto(path)
    with pytest.raises(InputError, match="celestial WCS") as err:
        validate_bands({"H": path})
    assert "pixels_only.fits" in str(err.value)


def test_image_in_extension(tmp_path):
    data = random_image(3)
    path = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(),
                  fits.ImageHDU(data, header=make_wcs(SHAPE).to_header())]).writeto(path)
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
    with pytest.raises(InputError, match="chunk 32"):
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


def test_bandset_is_frozen(band_files):
    bandset = validate_bands(band_files[0])
    assert isinstance(bandset, BandSet)
    with pytest.raises(AttributeError):
        bandset.shape = (1, 1)


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
        strips = [np.asarray(hdul[0].section[y0:y0 + 16, :]) for y0 in range(0, 400, 16)]
    with fits.open(path, memmap=False) as hdul:  # astropy on its own: a restart per strip
        _ = [np.asarray(hdul[0].section[y0:y0 + 16, :]) for y0 in range(0, 400, 16)]
    assert len(rewinds) >= 25
    rewinds.clear()
    with open_band(path) as hdul:
        strips = [np.asarray(hdul[0].section[y0:y0 + 16, :]) for y0 in range(0, 400, 16)]
    np.testing.assert_array_equal(np.concatenate(strips), data)
    assert len(rewinds) == 0, f"{len(rewinds)} restarts of the decompression for {len(strips)} strips"


def test_one_file_for_two_bands_is_refused(band_files, tmp_path):
    import os
    import shutil

    paths, _ = band_files
    os.link(paths["H"], tmp_path / "hard_H.fits")
    shutil.copyfile(paths["H"], tmp_path / "copy_H.fits")
    for other, says in ((paths["H"], rf"the same file \({paths['H']}\)"),
                        (tmp_path / "hard_H.fits", r"the same file \(.*band_H.fits, also reached as .*hard_H.fits\)"),
                        (tmp_path / "copy_H.fits", r"identical files \(.*band_H.fits and .*copy_H.fits have the "
                                                   r"same bytes\)")):
        with pytest.raises(InputError, match=rf"bands 'H' and 'J' are {says}; each band needs its own image"):
            validate_bands(dict(paths, J=other))


def test_a_symlink_loop_or_a_folder_is_named_as_such(band_files, tmp_path):
    import os

    paths, _ = band_files
    loop = tmp_path / "loop_J.fits"
    os.symlink(loop, loop)
    folder = tmp_path / "folder_Z.fits"
    folder.mkdir()
    with pytest.raises(InputError, match=r"unusable band file\(s\): J: .*loop_J.fits \(a symbolic link loop\); "
                                         r"Z: .*folder_Z.fits \(a folder, not a file\)"):
        validate_bands(dict(paths, J=loop, Z=folder))
