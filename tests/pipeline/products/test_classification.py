"""Tests for pipeline.products.classification: every plane of the classification to its FITS file."""

from __future__ import annotations

import numpy as np
import zarr
from astropy.io import fits

from morpheus_core.simulate import make_wcs
from pipeline.products.classification import write_classification_products
from pipeline.products.provenance import provenance
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location


def test_each_class_image_n_and_coverage_are_written_with_wcs_and_provenance(tmp_path):
    shape, classes = (30, 41), ("spheroid", "disk", "background")  # a model card's classes, not the released 5
    rng = np.random.default_rng(2)
    group = zarr.open_group(
        str(tmp_path / "classification.zarr"), mode="w", zarr_format=3, attributes={"classes": list(classes)}
    )
    cubes = {kind: rng.random((3, *shape), dtype=np.float32) for kind in ("mean", "variance", "rank")}
    for kind, cube in cubes.items():
        group.create_array(kind, data=cube, chunks=(3, 16, 16))
    n = rng.integers(0, 900, shape).astype(np.int32)
    group.create_array("n", data=n, chunks=(16, 16))
    coverage = n > 100
    cards = provenance("run-1", model="m", precision="float32")
    out = tmp_path / "run"
    written = write_classification_products(
        out,
        classification=group,
        coverage=coverage,
        wcs_header=make_wcs(shape).to_header_string(),
        cards=cards,
        strip=7,
    )
    layout = RunLayout(Location(out))
    expected = [*layout.classification_fits(classes)[:-1], layout.fits / "n.fits", layout.fits / "coverage.fits"]
    assert written == [p.path for p in expected] and len(written) == 3 * 3 + 2
    for kind, cube in cubes.items():
        for i, name in enumerate(classes):
            with fits.open(layout.class_image(kind, name).path) as hdul:
                np.testing.assert_array_equal(hdul[0].data, cube[i])
                assert hdul[0].header["RUNID"] == "run-1" and hdul[0].header["CTYPE1"].startswith("RA---")
    np.testing.assert_array_equal(fits.getdata(layout.fits.path / "n.fits"), n)
    np.testing.assert_array_equal(fits.getdata(layout.fits.path / "coverage.fits"), coverage.astype(np.uint8))
    assert fits.getheader(layout.class_image("variance", "disk").path)["EXTNAME"] == "DISK_VAR"


def test_each_image_says_what_it_holds_and_its_unit(tmp_path):
    """Read back with astropy: the class, the kind, BUNIT where there is a unit (n counts
    windows), a comment saying the class images are dimensionless, and no MJDREF = 0.0
    (a WCS without a time reference: astropy's to_header writes one unless removed)."""
    from astropy import units as u

    shape, classes = (12, 9), ("spheroid", "background")
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="w", zarr_format=3, attributes={"classes": list(classes)})
    for kind in ("mean", "variance", "rank"):
        group.create_array(kind, data=np.zeros((2, *shape), np.float32))
    group.create_array("n", data=np.full(shape, 900, np.int32))
    wcs_header = make_wcs(shape).to_header_string()
    assert "MJDREF" in wcs_header  # what the ingested mosaic records
    write_classification_products(
        tmp_path / "run",
        classification=group,
        coverage=np.ones(shape, bool),
        wcs_header=wcs_header,
        cards=provenance("r", model="m", precision="float32"),
        strip=5,
    )
    fits_dir = tmp_path / "run" / "fits"
    for kind, suffix, words in (
        ("mean", "mean", "mean probability"),
        ("variance", "var", "variance"),
        ("rank", "rank", "rank-vote fraction"),
    ):
        header = fits.getheader(fits_dir / f"spheroid_{suffix}.fits")
        assert (header["CLASSNAM"], header["IMGKIND"]) == ("spheroid", kind) and "BUNIT" not in header
        comments = " ".join(header["COMMENT"])
        assert words in comments and "spheroid" in comments and "dimensionless" in comments
        assert "MJDREF" not in header and header["CTYPE2"].startswith("DEC--")
    n_header = fits.getheader(fits_dir / "n.fits")
    assert u.Unit(n_header["BUNIT"], format="fits") == u.count and n_header["IMGKIND"] == "n"
    assert "BUNIT" not in fits.getheader(fits_dir / "coverage.fits")
