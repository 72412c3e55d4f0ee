"""pipeline.inputs.photometry_maps: weight/rms maps checked like the bands, ingested on the
bands' chunk grid; zero points from headers with the TOML's winning, none invented."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from astropy.io import fits

from morpheus_core.magnitudes import photflam_zeropoint
from pipeline.errors import InputError
from pipeline.inputs.grid import validate_bands
from pipeline.inputs.ingest import ingest
from pipeline.inputs.mosaic_files import photometry_inputs
from pipeline.inputs.mosaics import known_mosaics
from pipeline.inputs.photometry_maps import with_photometry
from tests.pipeline.inputs.band_images import BANDS, SHAPE, make_wcs, random_image, write_band


def _toml(tmp_path, extra: str) -> object:
    toml = tmp_path / "m.toml"
    bands = ", ".join(f'{b} = "band_{b}.fits"' for b in BANDS)
    toml.write_text(f"[mosaics.m]\nbands = {{ {bands} }}\n{extra}\n")
    return toml


def _headers(tmp_path, headers: dict[str, dict]) -> None:
    for b in BANDS:
        path = tmp_path / f"band_{b}.fits"
        with fits.open(path, mode="update") as hdul:
            hdul[0].header.update(headers.get(b, {}))


def test_zeropoints_toml_over_header_and_none_invented(tmp_path, band_files):
    _headers(
        tmp_path,
        {"H": {"PHOTFLAM": 1.9275e-20, "PHOTPLAM": 15369.176}, "J": {"ZP": 26.2}, "V": {"ABMAG": 26.5, "MAGZP": 20.0}},
    )
    toml = _toml(tmp_path, "zeropoint = { J = 26.25 }")
    bandset = with_photometry(validate_bands(band_files[0]), photometry_inputs("m", mosaics_file=toml))
    zps = bandset.photometry["zeropoints"]
    assert zps["H"] == {"value": pytest.approx(photflam_zeropoint(1.9275e-20, 15369.176)), "source": "header"}
    assert zps["J"] == {"value": 26.25, "source": "mosaics file"}  # the TOML wins over the header's ZP
    assert zps["V"]["value"] == 26.5  # ABMAG before MAGZP
    assert zps["Z"] == {"value": None, "source": "none"}
    assert bandset.photometry["sky_subtracted"] is False


def test_weight_and_rms_maps_are_ingested_and_recorded(tmp_path, band_files):
    wht = random_image(7) ** 2
    rms = random_image(8)
    write_band(tmp_path / "h_wht.fits", wht)
    write_band(tmp_path / "v_rms.fits", rms)
    toml = _toml(tmp_path, 'weights = { H = "h_wht.fits" }\nrms = { V = "v_rms.fits" }\nsky_subtracted = true')
    bandset = with_photometry(validate_bands(band_files[0]), photometry_inputs("m", mosaics_file=toml))
    group = ingest(bandset, tmp_path / "mosaic.zarr", chunk=32)
    np.testing.assert_array_equal(group["weight"][0], wht)
    np.testing.assert_array_equal(group["rms"][0], rms)
    assert group["weight"].chunks == (1, 32, 32)
    assert group.attrs["error_maps"] == {"weight": ["H"], "rms": ["V"]} and group.attrs["sky_subtracted"] is True
    kinds = {(r["band"], r.get("kind")) for r in group.attrs["inputs"]}
    assert {("H", "weight"), ("V", "rms")} <= kinds and ("H", None) in kinds
    # A changed map is a changed input: refused, the store kept.
    fits.writeto(tmp_path / "h_wht.fits", (wht * 2).astype(np.float32), make_wcs(SHAPE).to_header(), overwrite=True)
    changed = with_photometry(validate_bands(band_files[0]), photometry_inputs("m", mosaics_file=toml))
    with pytest.raises(InputError, match="weight map"):
        ingest(changed, tmp_path / "mosaic.zarr", chunk=32)
    assert zarr.open_group(str(tmp_path / "mosaic.zarr"), mode="r")["weight"].shape == (1, *SHAPE)


@pytest.mark.parametrize(
    "extra, match",
    [
        ('weights = { H = "missing_wht.fits" }', "missing_wht.fits"),
        ('weights = { K = "h_wht.fits" }', "not in bands"),
        ('weights = { H = "h_wht.fits" }\nrms = { H = "h_wht.fits" }', "both a weights and an rms"),
        ('zeropoint = { H = "25" }', "finite AB magnitude"),
        ("sky_subtracted = 1", "true or false"),
    ],
)
def test_bad_photometry_keys_are_refused(tmp_path, band_files, extra, match):
    write_band(tmp_path / "h_wht.fits", random_image(7))
    toml = _toml(tmp_path, extra)
    with pytest.raises(InputError, match=match):
        known_mosaics(toml)
        photometry_inputs("m", mosaics_file=toml)


@pytest.mark.parametrize(
    "shape, crval, match",
    [((SHAPE[0], SHAPE[1] - 1), (53.12, -27.81), "has shape"), (SHAPE, (53.2, -27.81), "different WCS")],
)
def test_a_map_off_the_bands_grid_is_refused_naming_it(tmp_path, band_files, shape, crval, match):
    write_band(tmp_path / "h_wht.fits", random_image(7, shape=shape), wcs=make_wcs(shape, crval=crval))
    toml = _toml(tmp_path, 'weights = { H = "h_wht.fits" }')
    with pytest.raises(InputError, match=rf"h_wht.fits \(weights map of band H\).*{match}"):
        with_photometry(validate_bands(band_files[0]), photometry_inputs("m", mosaics_file=toml))
    assert not (tmp_path / "mosaic.zarr").exists()
