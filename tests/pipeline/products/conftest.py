"""A finished run with a real catalog, shared by the catalog files' tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

#: The bands' BUNIT, as the HST science images spell it (astropy reads it as electron / s).
BUNIT = "ELECTRONS/S"


@pytest.fixture(scope="session")
def catalog_run(tmp_path_factory) -> Path:
    """``pipeline.run.run`` on the small synthetic mosaic with the stand-in network, its bands
    carrying ``BUNIT``: ingest, classification, segmentation and the internal catalog.
    """
    from pipeline.run import run
    from tests.pipeline.small_runs import small_config, write_mosaic

    folder = tmp_path_factory.mktemp("catalog-run")
    toml = write_mosaic(folder / "mosaic")
    for band in ("H", "J", "V", "Z"):
        fits.setval(folder / "mosaic" / f"small_{band}.fits", "BUNIT", value=BUNIT)
    return Path(run(small_config(folder / "run", toml, workers=1), echo=lambda *_: None).run_dir)


@pytest.fixture(scope="session")
def value_added_run(catalog_run, tmp_path_factory) -> Path:
    """A copy of :func:`catalog_run` with a value-added catalog of three of its objects beside the internal one."""
    import shutil

    from astropy.table import Table

    from pipeline.downstream.driver import run_downstream
    from pipeline.settings import DownstreamSettings

    folder = tmp_path_factory.mktemp("value-added-run")
    run_dir = folder / "run"
    shutil.copytree(catalog_run, run_dir)
    objects = Table.read(run_dir / "catalog" / "catalog.parquet")
    Table({"id": [f"src-{i}" for i in range(3)], "ra": objects["ra"][:3], "dec": objects["dec"][:3]}).write(
        folder / "markers.csv"
    )
    run_downstream(run_dir, DownstreamSettings(markers=str(folder / "markers.csv")), echo=lambda *_: None)
    return run_dir
