"""Run directories for the map's tests (issue #16): a classified scene with a catalog.

:func:`scene_run` writes a constructed classification (:mod:`tests.pipeline.downstream_scene`:
rank-vote background 0 in source cores, 1 on sky) and runs the real downstream graph
on it, so the run has segmentation maps and a catalog of dozens of objects in seconds.
:func:`classified_run` makes a run with ``pipeline.run.run`` and the stand-in network.
"""

from __future__ import annotations

from pathlib import Path

from tests.pipeline.downstream_scene import make_scene, random_sources, write_run


def scene_run(folder: Path, shape: tuple[int, int] = (300, 420), *, seed: int = 11, chunk: int = 64) -> Path:
    """A finished run directory of a constructed scene: classification, segmentation, catalog."""
    from pipeline.downstream import run_downstream

    sources = random_sources(shape, per_megapixel=400.0, seed=seed)
    run_dir = write_run(folder, make_scene(shape, sources, seed=seed), chunk=chunk)
    run_downstream(run_dir, echo=lambda *_: None)
    return run_dir


def classified_run(folder: Path) -> Path:
    """A run directory made by ``pipeline.run.run`` on the small synthetic mosaic with the stand-in network."""
    from pipeline.config import RunSettings
    from pipeline.run import run
    from tests.pipeline.small_runs import write_mosaic

    toml = write_mosaic(folder / "mosaic")
    settings = RunSettings(mosaic="small", mosaics_file=toml, run_dir=folder / "run", tile=40, batch_size=256,
                           progress=False, workers=1,
                           model="standin")  # <- the stand-in network: the one line that chooses it
    return Path(run(settings, echo=lambda *_: None).run_dir)
