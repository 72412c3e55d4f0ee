"""The layout of a run directory: every file, store and product name of a run, spelt once.

A run directory (a local path or an object-store URL, :class:`~pipeline.rundir.location.Location`)
holds::

    manifest.json              settings, versions, input checksums, plan, run id
    .lock                      the one-writer lock (pipeline.rundir.lock)
    pipeline.log               the log of the commands run on it (local run directories)
    ledger/                    <tile>.done, <tile>.failed, executions/<tile>.<id>,
                               merged.json, classification.checksums.json,
                               segmentation.checksums.json, segmentation_<name>.checksums.json
                               (pipeline.rundir.checksums)
    partials/                  <tile>.npz: a finished tile's partial statistics
    mosaic.zarr/               image (band, y, x), coverage (y, x)
    classification.zarr/       mean, variance, rank (class, y, x), n (y, x)
    fits/                      <class>_{mean,var,rank}.fits, n.fits, coverage.fits,
                               segmap.fits, segmap_deblended.fits (the internal maps);
                               <name>_segmap.fits, <name>_segmap_deblended.fits (a value-added
                               catalog's marker-seeded maps)
    segmentation.zarr/         mask, raw, segments, deblended (y, x), colour (y, x, rgb)
    segmentation_<name>.zarr/  the same for a value-added catalog <name> (no colour image)
    catalog/                   catalog.{parquet,csv,fits,mrt}, objects.reg (the internal catalog);
                               value_added.{parquet,csv,fits,mrt,reg} (a value-added catalog,
                               or another name the user gives: --catalog-name)
    colour.png                 the morphological colour image
    downstream.json            what the downstream graph made, with its settings
    downstream_<name>.json     likewise for a value-added catalog <name>

A value-added catalog (``catalog --markers``) has maps, store and records of its own,
named after it (:meth:`RunLayout.segmentation_store`, :meth:`RunLayout.segmap_file`,
:meth:`RunLayout.downstream_record_of`), so that the internal catalog's ids keep
matching the internal maps and the viewer.
    viewer/                    the map's tile pyramid (pipeline.viewer.pyramid): pyramid.json,
                               tiles/<layer>/<z>/<x>/<y>.png, work/levels.zarr while it is built

Stores built aside and swapped in live next to their final name
(:meth:`RunLayout.staging`, ``classification.zarr.partial``) while they are written.
Writers that get a folder rather than the run directory (the FITS writers) take the
names of the files in it from here too: :meth:`RunLayout.class_image_name` and
:data:`FITS_FILES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from morpheus_core import CLASSES
from pipeline.rundir.location import Location

__all__ = ["CATALOG_FORMATS", "FITS_FILES", "FITS_SUFFIX", "INTERNAL_CATALOG", "VALUE_ADDED_CATALOG", "RunLayout"]

#: Suffix of a store being built aside (``classification.zarr.partial``).
_STAGING = ".partial"

#: FITS file suffix of each classification cube (``disk_var.fits`` holds ``variance``).
FITS_SUFFIX = {"mean": "mean", "variance": "var", "rank": "rank"}

#: FITS files of one image plane, by the array they hold: ``n`` (of the classification),
#: ``coverage`` (of the mosaic), ``segments`` and ``deblended`` (of the segmentation).
FITS_FILES = {
    "n": "n.fits",
    "coverage": "coverage.fits",
    "segments": "segmap.fits",
    "deblended": "segmap_deblended.fits",
}

#: Catalog file suffix -> astropy format.
CATALOG_FORMATS = {"parquet": "parquet", "csv": "csv", "fits": "fits", "mrt": "ascii.mrt"}

#: The internal catalog's name (``catalog/catalog.*``, one row per object of the deblended map).
INTERNAL_CATALOG = "catalog"
#: A value-added catalog's default name (``catalog/value_added.*``, one row per input source).
VALUE_ADDED_CATALOG = "value_added"
#: The internal catalog's DS9 region file (``catalog/objects.reg``).
_INTERNAL_REGIONS = "objects"
#: A catalog name: a plain file stem (letters, digits, ``_``, ``-``, ``.``; no folder).
_CATALOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

#: A value-added catalog's segmentation store, its checksum record and downstream record:
#: ``<prefix><name><suffix>`` (``segmentation_value_added.zarr``).
_VALUE_ADDED_FILES = {
    "store": ("segmentation_", ".zarr"),
    "checksums": ("segmentation_", ".checksums.json"),
    "record": ("downstream_", ".json"),
}

#: The file suffix of each kind of per-tile file: records in ``ledger/``, partials in ``partials/``.
_TILE_FILES = {"done": ".done", "failed": ".failed", "partial": ".npz"}


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
        """The lock file or object (:mod:`pipeline.rundir.lock`)."""
        return self.root / ".lock"

    @property
    def log(self) -> Location:
        """``pipeline.log``: the commands' log file (local run directories)."""
        return self.root / "pipeline.log"

    @property
    def ledger(self) -> Location:
        """The ledger folder (records per tile, :mod:`pipeline.rundir.ledger`)."""
        return self.root / "ledger"

    def done_record(self, tile: str) -> Location:
        """``ledger/<tile>.done``: the tile's partial statistics are in place."""
        return self.ledger / f"{tile}{_TILE_FILES['done']}"

    def failed_record(self, tile: str) -> Location:
        """``ledger/<tile>.failed``: the tile kept failing (its error and traceback)."""
        return self.ledger / f"{tile}{_TILE_FILES['failed']}"

    @property
    def executions(self) -> Location:
        """``ledger/executions``: one file per started execution of a tile."""
        return self.ledger / "executions"

    def execution_record(self, tile: str, execution: str) -> Location:
        """``ledger/executions/<tile>.<execution>``: one started execution of a tile."""
        return self.executions / f"{tile}.{execution}"

    @staticmethod
    def execution_tile(name: str) -> str:
        """The tile of an entry of :attr:`executions` (``t0000_0001.<id>`` -> ``t0000_0001``)."""
        return name.split(".")[0]

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

    def segmentation_checksums_of(self, name: str = INTERNAL_CATALOG) -> Location:
        """The checksum record of :meth:`segmentation_store` ``name``: :attr:`segmentation_checksums`
        for the internal catalog, ``ledger/segmentation_<name>.checksums.json`` for a value-added one.
        """
        return (
            self.segmentation_checksums if name == INTERNAL_CATALOG else self.ledger / _value_added("checksums", name)
        )

    @property
    def partials(self) -> Location:
        """The finished tiles' partial statistics."""
        return self.root / "partials"

    def partial(self, tile: str) -> Location:
        """``partials/<tile>.npz``: a finished tile's partial statistics."""
        return self.partials / f"{tile}{_TILE_FILES['partial']}"

    @staticmethod
    def tiles_listed(names: Iterable[str], kind: str) -> set[str]:
        """The tiles whose ``kind`` file (``"done"``, ``"failed"`` or ``"partial"``) is
        among ``names``, a listing of its folder (hidden temporary files left out).
        """
        suffix = _TILE_FILES[kind]
        return {n[: -len(suffix)] for n in names if n.endswith(suffix) and not n.startswith(".")}

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

    def segmentation_store(self, name: str = INTERNAL_CATALOG) -> Location:
        """The segmentation store of a catalog: :attr:`segmentation` for the internal one,
        ``segmentation_<name>.zarr`` (maps seeded by the markers) for a value-added one.
        """
        return self.segmentation if name == INTERNAL_CATALOG else self.root / _value_added("store", name)

    @staticmethod
    def staging(store: Location) -> Location:
        """Where ``store`` is built before it is swapped in (local paths;
        :func:`pipeline.rundir.staging.staged`).
        """
        return Location(store.path.with_name(store.name + _STAGING))

    # -- products ---------------------------------------------------------------------
    @property
    def fits(self) -> Location:
        """The FITS products' folder."""
        return self.root / "fits"

    @staticmethod
    def class_image_name(kind: str, name: str) -> str:
        """The file name of one class image, e.g. ``("variance", "disk")`` -> ``disk_var.fits``."""
        return f"{name}_{FITS_SUFFIX[kind]}.fits"

    def class_image(self, kind: str, name: str) -> Location:
        """The FITS file of one class image, e.g. ``("variance", "disk")`` -> ``fits/disk_var.fits``."""
        return self.fits / self.class_image_name(kind, name)

    def fits_file(self, array: str) -> Location:
        """The FITS file of one image plane (a key of :data:`FITS_FILES`), e.g.
        ``"coverage"`` -> ``fits/coverage.fits``.
        """
        return self.fits / FITS_FILES[array]

    def segmap_file(self, array: str, name: str = INTERNAL_CATALOG) -> Location:
        """The FITS map of ``array`` (``"segments"`` or ``"deblended"``) of a catalog's
        segmentation: ``fits/segmap.fits``, ``fits/segmap_deblended.fits`` for the internal
        catalog, ``fits/<name>_segmap.fits``, ``fits/<name>_segmap_deblended.fits`` for a
        value-added one.
        """
        return self.fits_file(array) if name == INTERNAL_CATALOG else self.fits / f"{name}_{FITS_FILES[array]}"

    def classification_fits(self, classes: tuple[str, ...] = CLASSES) -> list[Location]:
        """The class images (15 for the released model's classes) and ``n.fits``: the
        classification's FITS products; ``classes`` those of the model card.
        """
        return [self.class_image(kind, name) for kind in FITS_SUFFIX for name in classes] + [self.fits_file("n")]

    @property
    def catalog(self) -> Location:
        """The catalog's folder."""
        return self.root / "catalog"

    def catalog_file(self, suffix: str, name: str = INTERNAL_CATALOG) -> Location:
        """``catalog/<name>.<suffix>``, ``suffix`` a key of :data:`CATALOG_FORMATS`; ``name``
        the internal catalog's (``catalog``) or a value-added one's (:meth:`catalog_name`).
        """
        return self.catalog / f"{name}.{suffix}"

    def regions_file(self, name: str = INTERNAL_CATALOG) -> Location:
        """The DS9 region file of a catalog: ``catalog/objects.reg`` for the internal
        catalog, ``catalog/<name>.reg`` for a value-added one.
        """
        return self.catalog / f"{_INTERNAL_REGIONS if name == INTERNAL_CATALOG else name}.reg"

    def catalog_files(self, name: str = INTERNAL_CATALOG) -> list[Location]:
        """Every file of one catalog: one per :data:`CATALOG_FORMATS`, then its region file."""
        return [*(self.catalog_file(suffix, name) for suffix in CATALOG_FORMATS), self.regions_file(name)]

    @staticmethod
    def catalog_name(value_added: bool, name: str | None = None) -> str:
        """The name of a catalog's files: ``catalog`` for the internal catalog; for a
        value-added one ``name``, by default ``value_added``.

        Raises
        ------
        ValueError
            ``name`` given for the internal catalog, not a plain file stem, or one that
            would replace the internal catalog's files (``catalog``, ``objects``).
        """
        if not value_added:
            if name:
                raise ValueError(f"names a value-added catalog (with markers), got {name!r} without them")
            return INTERNAL_CATALOG
        if name is None:
            return VALUE_ADDED_CATALOG
        if not _CATALOG_NAME.fullmatch(name):
            raise ValueError(f"must be a plain file name (letters, digits, _ - .), got {name!r}")
        if name in (INTERNAL_CATALOG, _INTERNAL_REGIONS):
            raise ValueError(f"{name!r} would replace the internal catalog's files; choose another name")
        return name

    @property
    def colour(self) -> Location:
        """The morphological colour image."""
        return self.root / "colour.png"

    @property
    def downstream_record(self) -> Location:
        """``downstream.json``."""
        return self.root / "downstream.json"

    def downstream_record_of(self, name: str = INTERNAL_CATALOG) -> Location:
        """What the downstream graph made for a catalog: :attr:`downstream_record` for the
        internal one, ``downstream_<name>.json`` for a value-added one.
        """
        return self.downstream_record if name == INTERNAL_CATALOG else self.root / _value_added("record", name)

    def value_added_names(self) -> list[str]:
        """The value-added catalogs whose segmentation store or records are in the run directory."""
        names = set()
        for listing, kinds in ((self.root.listdir(), ("store", "record")), (self.ledger.listdir(), ("checksums",))):
            for kind in kinds:
                prefix, suffix = _VALUE_ADDED_FILES[kind]
                names.update(
                    n[len(prefix) : -len(suffix)]
                    for n in listing
                    if n.startswith(prefix) and n.endswith(suffix) and len(n) > len(prefix) + len(suffix)
                )
        return sorted(n for n in names if _CATALOG_NAME.fullmatch(n))

    def value_added_files(self, name: str) -> list[Location]:
        """Every file of value-added catalog ``name``: its store (and staged copy), FITS maps,
        catalog files, checksum and downstream records.
        """
        store = self.segmentation_store(name)
        staged = [self.staging(store)] if self.root.is_local else []
        return [
            store,
            *staged,
            *(self.segmap_file(a, name) for a in ("segments", "deblended")),
            *self.catalog_files(name),
            self.segmentation_checksums_of(name),
            self.downstream_record_of(name),
        ]

    # -- the interactive map (pipeline.viewer.pyramid) ---------------------------------
    @property
    def viewer(self) -> Location:
        """The interactive map's tile pyramid (:mod:`pipeline.viewer.pyramid`)."""
        return self.root / "viewer"

    @property
    def pyramid_record(self) -> Location:
        """``viewer/pyramid.json``: what the pyramid was built from; ``complete`` once built."""
        return self.viewer / "pyramid.json"

    @property
    def viewer_tiles(self) -> Location:
        """``viewer/tiles``: the PNG tiles, ``<layer>/<z>/<x>/<y>.png``."""
        return self.viewer / "tiles"

    @property
    def viewer_work(self) -> Location:
        """``viewer/work``: what a build keeps while it runs (removed when it ends)."""
        return self.viewer / "work"

    @property
    def pyramid_levels(self) -> Location:
        """``viewer/work/levels.zarr``: the coarser levels while the pyramid is built."""
        return self.viewer_work / "levels.zarr"

    def run_files(self) -> list[Location]:
        """Everything a run writes, manifest last: what ``--restart`` removes."""
        stores = [self.classification, self.segmentation]
        staged = [self.staging(s) for s in stores] if self.root.is_local else []
        value_added = [p for name in self.value_added_names() for p in self.value_added_files(name)]
        return [
            *value_added,
            self.ledger,
            self.partials,
            *stores,
            *staged,
            self.fits,
            self.mosaic,
            self.catalog,
            self.colour,
            self.viewer,
            self.downstream_record,
            self.manifest,
        ]


def _value_added(kind: str, name: str) -> str:
    """The file name of a value-added catalog's ``kind`` (a key of :data:`_VALUE_ADDED_FILES`)."""
    prefix, suffix = _VALUE_ADDED_FILES[kind]
    return f"{prefix}{name}{suffix}"
