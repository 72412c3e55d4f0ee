"""Run settings: one typed object that the CLI fills and the manifest records."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morpheus_core import BORDER, PRECISIONS, WINDOW
from pipeline.errors import InputError
from pipeline.storage import Location, check_storage_options, run_dir_value

#: Clusters a run can start itself (``scheduler`` joins an existing one instead).
CLUSTERS = ("local", "slurm", "pbs")
#: GPU use: a dask-cuda cluster when GPUs are visible, never, or refuse to run without.
GPU_MODES = ("auto", "never", "require")
#: Networks: the released weights (or ``weights``), or the cheap stand-in of tests.
CLASSIFIERS = ("released", "standin")

#: Settings that change the result: a resumed run must use the same values.
RESULT_SETTINGS = ("mosaic", "tile", "stride", "precision", "weights", "classifier", "window", "border")


@dataclass
class RunConfig:
    """Everything a run needs to know.

    Attributes
    ----------
    mosaic : str
        Name of the mosaic (``demo``, ``goods-s`` or one from ``mosaics_file``).
    run_dir : Path or str
        Folder holding the manifest, ledger, partial results and products: a local
        (or shared) path, or an fsspec URL such as ``s3://bucket/run`` (kept as a
        string); :attr:`location` gives either as a :class:`~pipeline.storage.Location`.
    storage_options : dict
        fsspec options for a URL ``run_dir`` (e.g. ``{"endpoint_url": ...}``);
        credentials are refused here (they would be recorded in the manifest) and
        come from the environment instead.
    data_dir : Path, optional
        Where mosaic files live (default: ``$MORPHEUS_DATA_DIR`` or the user cache).
    tile : int
        Core size of a classification tile in pixels (also the Zarr chunk size).
    batch_size : int
        Windows per network call.
    stride : int
        Window stride (1 in the paper).
    retries : int
        Dask retries of a failing tile before it is recorded as failed.
    workers, threads_per_worker : int
        Local cluster size; each worker's TensorFlow/BLAS threads follow
        ``threads_per_worker``.
    scheduler : str, optional
        Address of an existing Dask scheduler to use instead of a local cluster.
    wait_workers : float
        With ``scheduler``: seconds to wait for a worker (a GPU worker when ``gpu``
        is ``"require"``) before starting, for clusters whose workers are still
        starting.
    cluster : {"local", "slurm", "pbs"}
        Which cluster to start when no ``scheduler`` is given: a local one, or GPU
        workers submitted as batch jobs through dask-jobqueue (``workers`` of them).
    cluster_config : Path, optional
        A dask-jobqueue YAML file (see ``deploy/hpc/jobqueue.yaml``); default: the
        Dask configuration (``~/.config/dask/jobqueue.yaml``).
    gpu : {"auto", "never", "require"}
        Whether to use a dask-cuda cluster when GPUs are visible.
    precision : {"float32", "bfloat16"}
        Network compute precision.
    weights : str, optional
        Keras weights file to classify with instead of the released weights.
    classifier : {"released", "standin"}
        ``standin`` is a cheap deterministic stand-in network for tests and smoke runs.
    fail_tiles : tuple of str
        Test-only fault injection: tiles (``t0001_0002``) that always raise.
    tile_delay : float
        Test-only: seconds each tile task sleeps (to interrupt runs mid-way).
    """

    mosaic: str = "demo"
    run_dir: Path | str = Path("runs/demo")
    data_dir: Path | None = None
    mosaics_file: Path | None = None
    tile: int = 256
    batch_size: int = 512
    stride: int = 1
    retries: int = 2
    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    wait_workers: float = 600.0
    cluster: str = "local"
    cluster_config: Path | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    gpu: str = "auto"
    precision: str = "float32"
    weights: str | None = None
    classifier: str = "released"
    window: int = WINDOW
    border: int = BORDER
    restart: bool = False
    progress: bool = True
    fail_tiles: tuple[str, ...] = field(default_factory=tuple)
    tile_delay: float = 0.0

    def __post_init__(self) -> None:
        self.run_dir = run_dir_value(self.run_dir)
        self.storage_options = check_storage_options(self.storage_options or {})
        if self.cluster not in CLUSTERS:
            raise InputError(f"cluster must be one of {CLUSTERS}, got {self.cluster!r}")
        if self.scheduler and self.cluster != "local":
            raise InputError(f"give either a scheduler address or cluster={self.cluster!r}, not both")
        if self.tile < 1 or self.batch_size < 1 or self.stride < 1 or self.retries < 0:
            raise InputError("tile, batch_size and stride must be >= 1 and retries >= 0")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.classifier not in CLASSIFIERS:
            raise InputError(f"classifier must be 'released' or 'standin', got {self.classifier!r}")
        if self.gpu not in GPU_MODES:
            raise InputError(f"gpu must be auto, never or require, got {self.gpu!r}")

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable settings (paths as strings)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunConfig":
        """Settings recorded in a manifest."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("data_dir", "mosaics_file", "cluster_config"):
            if kwargs.get(key) is not None:
                kwargs[key] = Path(kwargs[key])
        if kwargs.get("run_dir") is not None:
            kwargs["run_dir"] = run_dir_value(kwargs["run_dir"])
        kwargs["fail_tiles"] = tuple(kwargs.get("fail_tiles", ()))
        return cls(**kwargs)

    @property
    def location(self) -> Location:
        """The run directory as a :class:`~pipeline.storage.Location`."""
        return Location(self.run_dir, self.storage_options)

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the result (compared on resume)."""
        data = self.to_json()
        return {key: data[key] for key in RESULT_SETTINGS}

    def model_description(self) -> str:
        """Human-readable model identity for manifests and FITS headers."""
        if self.classifier == "standin":
            return "stand-in test network (morpheus_core.testing)"
        if self.weights:
            return f"Keras weights {os.path.basename(self.weights)}"
        return "morpheus-astro 0.5.1 model-440 (released)"


def run_default(name: str) -> Any:
    """The default of a :class:`RunConfig` setting (the command line's defaults come
    from here, so each default has one owner).
    """
    return field_default(RunConfig, name)


def field_default(cls: type, name: str) -> Any:
    """The default value of a dataclass field (its default or default factory)."""
    field_ = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field_.default is not dataclasses.MISSING:
        return field_.default
    return field_.default_factory()  # type: ignore[misc]
