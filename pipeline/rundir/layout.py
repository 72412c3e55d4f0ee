"""The layout of a run directory: every store, array and product path, named once.

A run directory (a local path or an object-store URL, :class:`~pipeline.rundir.location.Location`)
holds::

    manifest.json              settings, versions, input checksums, plan, run id
    .lock                      the one-writer lock (pipeline.rundir.lock)
    ledger/                    <tile>.done, <tile>.failed, executions/<tile>.<id>,
                               merged.json, classification.checksums.json,
                               segmentation.checksums.json (pipeline.rundir.checksums)
    partials/                  <tile>.npz: a finished tile's partial statistics
    mosaic.zarr/               image (band, y, x), coverage (y, x)
    classification.zarr/       mean, variance, rank (class, y, x), n (y, x)
    fits/                      <class>_{mean,var,rank}.fits, n.fits, coverage.fits,
                               segmap.fits, segmap_deblended.fits
    segmentation.zarr/         mask, raw, segments, deblended (y, x), colour (y, x, rgb)
    catalog/                   catalog.{parquet,csv,fits,mrt}
    colour.png                 the morphological colour image
    downstream.json            what the downstream graph made, with its settings
    viewer/                    the map's tile pyramid (pipeline.viewer.pyramid): pyramid.json,
                               tiles/<layer>/<z>/<x>/<y>.png

Stores built aside and swapped in live next to their final name with the suffix
:data:`STAGING` while they are written.
"""

from __future__ import annotations

from dataclasses import dataclass

from morpheus_core import CLASSES
from pipeline.rundir.location import Location

__all__ = ["CATALOG_FORMATS", "CLASSIFICATION_ARRAYS", "FITS_SUFFIX", "STAGING", "RunLayout"]

#: Suffix of a store being built aside (``classification.zarr.partial``).
STAGING = ".partial"

#: Arrays of ``classification.zarr``: per-class cubes and the count plane.
CLASSIFICATION_ARRAYS = ("mean", "variance", "rank", "n")

#: FITS file suffix of each classification cube (``disk_var.fits`` holds ``variance``).
FITS_SUFFIX = {"mean": "mean", "variance": "var", "rank": "rank"}

#: Catalog file suffix -> astropy format.
CATALOG_FORMATS = {"parquet": "parquet", "csv": "csv", "fits": "fits", "mrt": "ascii.mrt"}


@dataclass(frozen=True)
class RunLayout:
    """Where everything of one run lives.

    Parameters
    ----------
    root : Location
        The run directory.
    """

    root: Location

    # -- state ----------------------------------------------------------------------
    @property
    def manifest(self) -> Location:
        """``manifest.json``."""
        return self.root / "manifest.json"

    @property
    def lock(self) -> Location:
        """The lock file or object."""
        return self.root / ".lock"

    @property
    def ledger(self) -> Location:
        """The ledger folder (one record per tile)."""
        return self.root / "ledger"

    @property
    def merged_record(self) -> Location:
        """``ledger/merged.json``: the partials are merged (:meth:`pipeline.rundir.ledger.Ledger.mark_merged`)."""
        return self.ledger / "merged.json"

    @property
    def classification_checksums(self) -> Location:
        """``ledger/classification.checksums.json``: the size and checksum of every file of
        ``classification.zarr`` (:mod:`pipeline.rundir.checksums`), named by :attr:`merged_record`.
        """
        return self.ledger / "classification.checksums.json"

    @property
    def segmentation_checksums(self) -> Location:
        """``ledger/segmentation.checksums.json``: likewise for ``segmentation.zarr``,
        written when the downstream graph finishes it.
        """
        return self.ledger / "segmentation.checksums.json"

    @property
    def partials(self) -> Location:
        """The finished tiles' partial statistics."""
        return self.root / "partials"

    # -- stores ---------------------------------------------------------------------
    @property
    def mosaic(self) -> Location:
        """The ingested bands."""
        return self.root / "mosaic.zarr"

    @property
    def classification(self) -> Location:
        """The merged classification images."""
        return self.root / "classification.zarr"

    @property
    def segmentation(self) -> Location:
        """Source mask, labels, segment and object maps, colour image."""
        return self.root / "segmentation.zarr"

    @staticmethod
    def staging(store: Location) -> Location:
        """Where ``store`` is built before it is swapped in (local paths)."""
        return Location(store.path.with_name(store.name + STAGING))

    # -- products ---------------------------------------------------------------------
    @property
    def fits(self) -> Location:
        """The FITS products' folder."""
        return self.root / "fits"

    def class_image(self, kind: str, name: str) -> Location:
        """The FITS file of one class image, e.g. ``("variance", "disk")`` -> ``fits/disk_var.fits``."""
        return self.fits / f"{name}_{FITS_SUFFIX[kind]}.fits"

    def classification_fits(self, classes: tuple[str, ...] = CLASSES) -> list[Location]:
        """The class images (15 for the released model's classes) and ``n.fits``: the
        classification's FITS products; ``classes`` those of the model card.
        """
        return [self.class_image(kind, name) for kind in FITS_SUFFIX for name in classes] + [self.fits / "n.fits"]

    @property
    def catalog(self) -> Location:
        """The catalog's folder."""
        return self.root / "catalog"

    @property
    def colour(self) -> Location:
        """The morphological colour image."""
        return self.root / "colour.png"

    @property
    def viewer(self) -> Location:
        """The interactive map's tile pyramid (:mod:`pipeline.viewer.pyramid`)."""
        return self.root / "viewer"

    @property
    def downstream_record(self) -> Location:
        """``downstream.json``."""
        return self.root / "downstream.json"

    def run_files(self) -> list[Location]:
        """Everything a run writes, manifest last: what ``--restart`` removes."""
        stores = [self.classification, self.segmentation]
        staged = [self.staging(s) for s in stores] if self.root.is_local else []
        return [self.ledger, self.partials, *stores, *staged, self.fits, self.mosaic, self.catalog, self.colour,
                self.viewer, self.downstream_record, self.manifest]
