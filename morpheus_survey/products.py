"""A finished run's products from Python: :func:`open_run` and :class:`Run`.

A :class:`Run` reads what ``python -m pipeline run`` wrote into a run directory, each
product when it is first asked for:

- :attr:`Run.classification`: the 15 classification images and ``n`` as a lazy
  :class:`xarray.Dataset` with the WCS and ``ra``/``dec`` (:mod:`morpheus_survey.dataset`),
  read from ``classification.zarr`` a chunk at a time;
- :attr:`Run.segmentation`: the segmentation maps (``segments``: Algorithm 1's
  segments, ``deblended``: the objects after Algorithm 2, whose values are the
  catalog's ``id``; ``mask``: the source mask) as a lazy :class:`xarray.Dataset`;
- :attr:`Run.catalog`: the catalog as an :class:`astropy.table.Table` with units and
  column descriptions (``Run.catalog.to_pandas()`` for a DataFrame);
- :attr:`Run.manifest`, :attr:`Run.settings`, :attr:`Run.downstream_settings`: what the
  run recorded; :attr:`Run.wcs`; :meth:`Run.path` of any product file.

Whether the classification is finished is decided by
:func:`pipeline.rundir.verified.finished_classification`, the one check the commands
use too.
"""

from __future__ import annotations

import io
import os
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import xarray as xr
from astropy.table import Table
from astropy.wcs import WCS

from morpheus_survey.dataset import classification_dataset, sky_coordinates
from pipeline.errors import InputError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location
from pipeline.settings import DownstreamSettings, RunSettings

__all__ = ["Run", "open_run"]


def open_run(run_dir: str | os.PathLike[str] | Location, *, storage_options: dict[str, Any] | None = None) -> Run:
    """Open a finished run directory.

    Parameters
    ----------
    run_dir : str, path-like or Location
        The run directory (a path, or a URL such as ``s3://bucket/run``).
    storage_options : dict, optional
        fsspec options of a URL (credentials come from the environment).

    Returns
    -------
    Run
        The run; its products are read when first used.

    Raises
    ------
    InputError
        No run there, or its classification is not finished or does not match its
        checksum record (the message says what to do).

    Examples
    --------
    >>> run = open_run("runs/demo")  # doctest: +SKIP
    >>> spheroids = run.catalog.to_pandas().query("dominant_class == 'spheroid'")  # doctest: +SKIP
    """
    from pipeline.rundir.manifest import read_manifest
    from pipeline.rundir.verified import finished_classification

    location = as_location(run_dir, storage_options)
    group = finished_classification(location)
    return Run(location, read_manifest(location), group)


class Run:
    """A finished run directory (made by :func:`open_run`).

    Parameters
    ----------
    location : Location
        The run directory.
    manifest : dict
        Its ``manifest.json``.
    classification_group : zarr.Group
        Its finished ``classification.zarr``, open for reading.

    Attributes
    ----------
    run_dir : Path or str
        The run directory (a URL as a string).
    manifest : dict
        ``manifest.json``: settings, versions, input files and checksums, tile plan, run id.
    """

    def __init__(self, location: Location, manifest: dict[str, Any], classification_group: Any) -> None:
        self._location = location
        self._layout = RunLayout(location)
        self._group = classification_group
        self.manifest = manifest
        self.run_dir: Path | str = location.path if location.is_local else str(location)

    def __repr__(self) -> str:
        h, w = self._group["n"].shape
        return f"Run({str(self.run_dir)!r}: mosaic {self.settings.mosaic!r}, {h}x{w} pixels, {self.settings.model})"

    @property
    def run_id(self) -> str:
        """The run's id (its products' ``RUNID``)."""
        return self.manifest["run_id"]

    @cached_property
    def settings(self) -> RunSettings:
        """The run's recorded settings."""
        return RunSettings.from_json({**self.manifest["config"], "run_dir": str(self.run_dir)})

    @cached_property
    def wcs(self) -> WCS:
        """The mosaic's celestial WCS (that of every image and map of the run)."""
        from pipeline.inputs.ingest import read_wcs

        return read_wcs(self._layout.mosaic.open_group(mode="r")).celestial

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes, in channel order (the model card's)."""
        from morpheus_core import CLASSES

        return tuple(self._group.attrs.get("classes", CLASSES))

    @cached_property
    def classification(self) -> xr.Dataset:
        """``mean``, ``variance``, ``rank`` ``(class, y, x)`` and ``n`` ``(y, x)``, lazy,
        with ``ra``/``dec`` and the WCS (layout: :mod:`morpheus_survey.dataset`).
        """
        import dask.array as da

        arrays = {name: da.from_zarr(self._group[name]) for name in ("mean", "variance", "rank", "n")}
        attrs = {
            key: self._group.attrs[key] for key in ("bands", "model", "precision", "run_id") if key in self._group.attrs
        }
        return classification_dataset(
            arrays["mean"],
            arrays["variance"],
            arrays["rank"],
            arrays["n"],
            classes=self.classes,
            wcs=self.wcs,
            wcs_header=self._group.attrs["wcs_header"],
            attrs={**attrs, "stride": self.settings.stride},
        )

    def _downstream_product(self, what: str, where: Location) -> NoReturn:
        """Refuse a missing segmentation or catalog, saying how to make it."""
        raise InputError(
            f"{where}: the run has no {what} (its segmentation and catalog did not finish); make them "
            f"with 'python -m pipeline segment --run-dir {self.run_dir}'"
        )

    @cached_property
    def segmentation(self) -> xr.Dataset:
        """The segmentation maps ``(y, x)``, lazy: ``segments`` (Algorithm 1),
        ``deblended`` (the catalog's objects: the value of a pixel is its row's ``id``,
        0 outside any object) and ``mask`` (the source mask), with ``ra``/``dec`` and
        ``attrs["wcs"]``.

        Raises
        ------
        InputError
            The run's segmentation is missing or did not finish.
        """
        import dask.array as da

        store = self._layout.segmentation
        group = store.open_group(mode="r") if store.is_zarr_group() else None
        if group is None or not group.attrs.get("complete"):
            self._downstream_product("segmentation", store)
        n = da.from_zarr(group["segments"])
        ra, dec = sky_coordinates(self.wcs, tuple(n.shape), n.chunks)
        data = {name: (("y", "x"), da.from_zarr(group[name])) for name in ("segments", "deblended", "mask")}
        coords = {"y": range(n.shape[0]), "x": range(n.shape[1]), "ra": (("y", "x"), ra), "dec": (("y", "x"), dec)}
        return xr.Dataset(data, coords=coords, attrs={"wcs": self.wcs, "settings": group.attrs.get("settings")})

    @cached_property
    def catalog(self) -> Table:
        """The catalog: one row per object, with units and column descriptions
        (``docs/downstream.md``); ``.to_pandas()`` gives a DataFrame.

        Raises
        ------
        InputError
            The run has no catalog.
        """
        path = self._layout.catalog_file("parquet")
        if not path.exists():
            self._downstream_product("catalog", path)
        source = path.path if path.is_local else io.BytesIO(path.read_bytes())
        return Table.read(source, format="parquet")

    @cached_property
    def downstream_settings(self) -> DownstreamSettings | None:
        """The settings of the last segmentation and catalog (``None`` if none was made)."""
        from pipeline.cli.downstream import last_downstream

        recorded = last_downstream(self._location)
        return None if recorded is None else DownstreamSettings(**recorded)

    def path(self, product: str) -> Path | str:
        """Where a product file lives, by its name in the run directory (a URL for an
        object store).

        Parameters
        ----------
        product : str
            ``"colour.png"``, ``"fits/spheroid_mean.fits"``, ``"catalog/catalog.csv"``, ...

        Raises
        ------
        InputError
            No such file in the run directory.
        """
        where = self._location
        for part in Path(product).parts:
            where = where / part
        if not where.exists():
            raise InputError(f"{where}: no such product in the run directory")
        return where.path if where.is_local else str(where)
