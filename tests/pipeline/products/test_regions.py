"""The catalog's DS9 region file, read back with the ``regions`` package's parser and
checked against the table: centres, sizes, angles, colours, labels."""

from __future__ import annotations

import re

import numpy as np
import pytest
import regions
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from morpheus_core.colour import class_colours
from morpheus_core.simulate import make_wcs
from pipeline.products.regions import KRON_SCALE, SIGMA_SCALE, write_regions


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _pixel_scale_arcsec(wcs) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial))) * 3600.0


def test_the_pipeline_catalog_as_ellipses_on_the_sky(catalog_run):
    """Each object's Kron ellipse (a circle of its area where it has no shape) at its
    RA/Dec, in its class colour, read back by the ``regions`` package."""
    from pipeline.downstream.context import StageContext
    from pipeline.rundir.location import Location

    table = Table.read(catalog_run / "catalog" / "catalog.parquet")
    wcs = StageContext.from_run(Location(catalog_run)).wcs
    shapes = regions.Regions.read(str(catalog_run / "catalog" / "objects.reg"), format="ds9")
    assert len(shapes) == len(table) > 3
    colours = {c: _hex(rgb) for c, rgb in class_colours().items()}
    scale = _pixel_scale_arcsec(wcs)
    ellipses = 0
    for row, shape in zip(table, shapes):
        assert str(shape.meta["text"]) == str(row["id"])
        assert shape.visual["edgecolor"] == colours[row["dominant_class"]]
        centre = SkyCoord(row["ra"], row["dec"], unit="deg")
        assert shape.center.separation(centre).to_value(u.arcsec) < 1e-3  # written to 1e-8 deg
        if np.ma.is_masked(row["semimajor_sigma"]):
            assert isinstance(shape, regions.CircleSkyRegion)
            assert shape.radius.to_value(u.arcsec) == pytest.approx(np.sqrt(row["area"] / np.pi) * scale, rel=1e-4)
            continue
        ellipses += 1
        assert isinstance(shape, regions.EllipseSkyRegion)
        factor = SIGMA_SCALE if np.ma.is_masked(row["kron_radius"]) else KRON_SCALE * row["kron_radius"]
        # The major axis on the sky, to the pixel scale's precision (a TAN WCS, near its centre).
        assert shape.width.to_value(u.arcsec) == pytest.approx(2 * factor * row["semimajor_sigma"] * scale, rel=2e-2)
    assert ellipses > 3


def _shape_table(n: int = 12, seed: int = 2) -> Table:
    rng = np.random.default_rng(seed)
    kron = rng.uniform(1.0, 2.0, n)
    return Table(
        {
            "id": np.arange(1, n + 1),
            "x": rng.uniform(5, 90, n),
            "y": rng.uniform(5, 70, n),
            "area": rng.integers(5, 200, n),
            "dominant_class": rng.choice(["spheroid", "disk", "irregular", "point_source"], n),
            "semimajor_sigma": rng.uniform(1.5, 4.0, n),
            "semiminor_sigma": rng.uniform(0.5, 1.4, n),
            "orientation": rng.uniform(-90, 90, n),
            "kron_radius": MaskedColumn(kron, mask=np.arange(n) % 4 == 0),
        }
    )


def test_ellipses_from_the_shape_columns_in_image_coordinates(tmp_path):
    table = _shape_table()
    path = write_regions(table, tmp_path / "objects.reg")
    text = path.read_text()
    assert "\nimage\n" in text
    # DS9 counts pixels from 1: the first ellipse's centre is the table's 0-based x, y plus one
    first = re.search(r"ellipse\(([-\d.e]+),([-\d.e]+),", text)
    assert float(first[1]) == pytest.approx(table["x"][0] + 1, abs=1e-6)
    assert float(first[2]) == pytest.approx(table["y"][0] + 1, abs=1e-6)
    shapes = regions.Regions.read(str(path), format="ds9")
    assert len(shapes) == len(table)
    for row, shape in zip(table, shapes):
        assert isinstance(shape, regions.EllipsePixelRegion)
        assert (shape.center.x, shape.center.y) == pytest.approx((row["x"], row["y"]), abs=1e-6)
        scale = SIGMA_SCALE if np.ma.is_masked(row["kron_radius"]) else KRON_SCALE * row["kron_radius"]
        assert shape.width == pytest.approx(2 * scale * row["semimajor_sigma"], rel=1e-6)
        assert shape.height == pytest.approx(2 * scale * row["semiminor_sigma"], rel=1e-6)
        assert shape.angle.to_value(u.deg) == pytest.approx(row["orientation"], abs=1e-6)
        assert shape.visual["edgecolor"] == _hex(class_colours()[row["dominant_class"]])


def test_sky_ellipses_equal_the_regions_package_conversion_of_each(tmp_path):
    """All rows at once through the WCS equal ``regions``' own ``to_sky`` of each pixel ellipse."""
    table = _shape_table()
    wcs = make_wcs((80, 100))
    sky = regions.Regions.read(str(write_regions(table, tmp_path / "sky.reg", wcs=wcs)), format="ds9")
    pixel = regions.Regions.read(str(write_regions(table, tmp_path / "pix.reg")), format="ds9")
    assert "\nicrs\n" in (tmp_path / "sky.reg").read_text()
    for mine, one in zip(sky, pixel):
        theirs = one.to_sky(wcs)
        assert mine.center.separation(theirs.center).to_value(u.arcsec) < 1e-4
        assert mine.width.to_value(u.arcsec) == pytest.approx(theirs.width.to_value(u.arcsec), rel=1e-4)
        assert mine.height.to_value(u.arcsec) == pytest.approx(theirs.height.to_value(u.arcsec), rel=1e-4)
        turn = mine.angle.to_value(u.deg) - theirs.angle.to_value(u.deg)
        assert (turn + 90) % 180 - 90 == pytest.approx(0, abs=1e-3)  # an ellipse is the same turned by 180 deg


def test_rows_without_a_centre_get_no_region_and_other_classes_take_the_maps_colours(tmp_path):
    table = Table(
        {
            "source_id": ["a", "b", "c"],
            "x": MaskedColumn([10.0, 0.0, 30.0], mask=[False, True, False]),
            "y": MaskedColumn([12.0, 0.0, 8.0], mask=[False, True, False]),
            "area": MaskedColumn([20, 0, 50], mask=[False, True, False]),
            "dominant_class": MaskedColumn(["compact", "", "extended"], mask=[False, True, False]),
        }
    )
    classes = ("compact", "extended", "background")
    shapes = regions.Regions.read(str(write_regions(table, tmp_path / "va.reg", classes=classes)), format="ds9")
    assert [str(s.meta["text"]) for s in shapes] == ["a", "c"]
    colours = class_colours(classes)
    assert [s.visual["edgecolor"] for s in shapes] == [_hex(colours["compact"]), _hex(colours["extended"])]
    assert shapes[1].radius == pytest.approx(np.sqrt(50 / np.pi))
