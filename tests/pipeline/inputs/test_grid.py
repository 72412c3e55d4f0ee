"""Tests for pipeline.inputs.grid: band files checked to be FITS images on one pixel grid."""

from __future__ import annotations

import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.errors import InputError
from pipeline.inputs.grid import BandSet, validate_bands
from tests.pipeline.inputs.band_images import SHAPE, make_wcs, random_image, write_band


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
    j = write_band(tmp_path / "j.fits", random_image(1), wcs=make_wcs(SHAPE, crval=(53.12 + 1e-4, -27.81)))
    with pytest.raises(InputError) as err:
        validate_bands({"H": h, "J": j})
    msg = str(err.value)
    assert "h.fits" in msg and "j.fits" in msg and "CRVAL" in msg


def test_wcs_difference_within_tolerance_is_accepted(tmp_path):
    # 1e-12 deg is far below the 1e-9 deg tolerance (header round-off level).
    h = write_band(tmp_path / "h.fits", random_image(0))
    j = write_band(tmp_path / "j.fits", random_image(1), wcs=make_wcs(SHAPE, crval=(53.12 + 1e-12, -27.81)))
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


def test_bandset_is_frozen(band_files):
    bandset = validate_bands(band_files[0])
    assert isinstance(bandset, BandSet)
    with pytest.raises(AttributeError):
        bandset.shape = (1, 1)


def test_one_file_for_two_bands_is_refused(band_files, tmp_path):
    import os
    import shutil

    paths, _ = band_files
    os.link(paths["H"], tmp_path / "hard_H.fits")
    shutil.copyfile(paths["H"], tmp_path / "copy_H.fits")
    for other, says in (
        (paths["H"], rf"the same file \({paths['H']}\)"),
        (tmp_path / "hard_H.fits", r"the same file \(.*band_H.fits, also reached as .*hard_H.fits\)"),
        (
            tmp_path / "copy_H.fits",
            r"identical files \(.*band_H.fits and .*copy_H.fits have the "
            r"same bytes\)",
        ),
    ):
        with pytest.raises(InputError, match=rf"bands 'H' and 'J' are {says}; each band needs its own image"):
            validate_bands(dict(paths, J=other))


def test_a_symlink_loop_or_a_folder_is_named_as_such(band_files, tmp_path):
    import os

    paths, _ = band_files
    loop = tmp_path / "loop_J.fits"
    os.symlink(loop, loop)
    folder = tmp_path / "folder_Z.fits"
    folder.mkdir()
    with pytest.raises(
        InputError,
        match=r"unusable band file\(s\): J: .*loop_J.fits \(a symbolic link loop\); "
        r"Z: .*folder_Z.fits \(a folder, not a file\)",
    ):
        validate_bands(dict(paths, J=loop, Z=folder))
