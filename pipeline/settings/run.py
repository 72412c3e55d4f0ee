"""Run settings: one typed object that owns every default, generates the ``run``
command's options (:mod:`pipeline.cli.options`) and is recorded in the manifest.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morpheus_core import BORDER, PRECISIONS, WINDOW
from pipeline.errors import InputError
from pipeline.rundir.credentials import check_storage_options
from pipeline.rundir.location import Location, run_dir_value
from pipeline.settings.fields import VERBOSE_HELP, option_text, setting

__all__ = ["CLUSTERS", "GPU_MODES", "MODELS", "RunSettings", "upgrade_recorded"]

#: Clusters a run can start itself (``scheduler`` joins an existing one instead).
CLUSTERS = ("local", "slurm", "pbs")
#: GPU use: a dask-cuda cluster when GPUs are visible, never, or refuse to run without.
GPU_MODES = ("auto", "never", "require")
#: Networks known by name (any other ``model`` is a Keras weights file) and how
#: manifests and FITS headers describe them.
MODELS = {
    "released": "morpheus-astro 0.5.1 model-440 (released)",
    "standin": "stand-in network (morpheus_core.testing), not a classifier of real data",
    "standin-sky": "sky-like stand-in network (morpheus_core.testing), not a classifier of real data",
}


@dataclass
class RunSettings:
    """Everything a run needs to know; each field's default, help text and choices
    live here, and the command line is generated from them (:mod:`pipeline.cli.options`).

    The fields come in four kinds (``kind`` in their metadata, the command line's
    option groups): ``input`` (which mosaic), ``science`` (the network and how it is
    applied), ``compute`` (how and where the work runs) and ``storage`` (where the
    results go). Those marked ``result`` (the mosaic and the science settings) decide
    the result: a resumed run must use the same values (:meth:`result_settings`).

    Attributes
    ----------
    mosaic : str
        Name of the mosaic (``demo``, ``goods-s`` or one from ``mosaics_file``).
    data_dir : Path, optional
        Where mosaic files live (default: ``$MORPHEUS_DATA_DIR`` or the user cache).
    mosaics_file : Path, optional
        TOML file defining more mosaics.
    accept_pixel_scale : bool
        Classify a mosaic whose pixel scale differs from the model card's by more than
        10% (:func:`pipeline.inputs.preflight.check_pixel_scale`) instead of refusing it.
    model : str
        The network: ``released`` (morpheus-astro 0.5.1's weights), ``standin`` (the
        cheap deterministic stand-in of :mod:`morpheus_core.testing`, for smoke runs),
        ``standin-sky`` (its sky-like sibling: background 1 on sky, 0 on source
        cores, for scale benchmarks of the downstream stages), or a Keras
        ``.weights.h5`` file.
    tile : int
        Core size of a classification tile in pixels (also the Zarr chunk size).
    stride : int
        Window stride (1 in the paper).
    precision : {"float32", "bfloat16"}
        Network compute precision.
    window, border : int
        The network's window and its uncounted border (the model's; not options).
    batch_size : int
        Windows per network call.
    retries : int
        Dask retries of a failing tile before it is recorded as failed.
    workers, threads_per_worker : int
        Local cluster size; each worker's TensorFlow/BLAS threads follow
        ``threads_per_worker``.
    scheduler : str, optional
        Address of an existing Dask scheduler to use instead of a local cluster
        (``tls://host:8786``, or ``tcp://`` for one without TLS).
    scheduler_security : Path, optional
        With ``scheduler``: a Dask configuration file naming the TLS CA, client
        certificate and key (``distributed.comm.tls``; :mod:`pipeline.cluster.security`);
        default: the Dask configuration.
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
    tls : bool
        Start the run's cluster (local, dask-cuda or batch jobs) with TLS on
        credentials made for the run, so that no other process can join it or run
        code on it. ``False`` (``--no-tls``) is warned about: any local user (any
        host on the batch cluster's network) can then run code as you.
    run_dir : Path or str
        Folder holding the manifest, ledger, partial results and products: a local
        (or shared) path, or an fsspec URL such as ``s3://bucket/run`` (kept as a
        string); :attr:`location` gives either as a :class:`~pipeline.rundir.location.Location`.
    storage_options : dict
        fsspec options for a URL ``run_dir`` (e.g. ``{"endpoint_url": ...}``);
        credentials are refused here (they would be recorded in the manifest) and
        come from the environment instead.
    restart : bool
        Discard an existing run directory's results.
    keep_partials : bool
        Keep ``partials/`` after the merge (removed by default once the merged
        classification store is complete and recorded, :meth:`Ledger.mark_merged
        <pipeline.rundir.ledger.Ledger.mark_merged>`).
    progress : bool
        Show a progress bar.
    verbose : bool
        Let TensorFlow print its start-up lines (:mod:`pipeline.quiet`).
    """

    # -- input ------------------------------------------------------------------------
    mosaic: str = setting("demo", kind="input", result=True, help="demo, goods-s, or a name from --mosaics-file")
    data_dir: Path | None = setting(
        None,
        kind="input",
        metavar="DIR",
        help="mosaic files folder (default $MORPHEUS_DATA_DIR or ~/.cache/morpheus-survey/data)",
    )
    mosaics_file: Path | None = setting(None, kind="input", metavar="TOML", help="TOML file defining more mosaics")
    accept_pixel_scale: bool = setting(
        False,
        kind="input",
        help="classify a mosaic whose pixel scale differs from the model card's by "
        "more than 10%% (refused by default: the network learned its "
        "morphologies at the card's scale)",
    )
    # -- science: the result depends on these -----------------------------------------
    model: str = setting(
        "released",
        kind="science",
        result=True,
        aliases=("--weights",),
        metavar="MODEL",
        help="the network: released (morpheus-astro 0.5.1), standin or standin-sky (cheap "
        "deterministic stand-ins for smoke runs and scale benchmarks; standin-sky "
        "classifies sky as background and sources as not), or a Keras .weights.h5 file",
    )
    tile: int = setting(256, kind="science", result=True, help="tile core size in pixels")
    stride: int = setting(1, kind="science", result=True, help="window stride (the paper's is 1)")
    precision: str = setting(
        "float32", kind="science", result=True, choices=PRECISIONS, help="network compute precision"
    )
    window: int = setting(WINDOW, kind="science", result=True)
    border: int = setting(BORDER, kind="science", result=True)
    # -- compute ----------------------------------------------------------------------
    batch_size: int = setting(512, kind="compute", help="windows per network call")
    retries: int = setting(2, kind="compute", help="retries of a failing tile")
    workers: int | None = setting(None, kind="compute", help="local Dask workers (default: one per core)")
    threads_per_worker: int = setting(1, kind="compute", help="threads per worker, TensorFlow included")
    scheduler: str | None = setting(
        None, kind="compute", metavar="ADDRESS", help="address of an existing Dask scheduler (tls://host:8786)"
    )
    scheduler_security: Path | None = setting(
        None,
        kind="compute",
        metavar="YAML",
        help="with --scheduler tls://...: a Dask configuration file naming "
        "the TLS CA, certificate and key (distributed.comm.tls; "
        "default: the Dask configuration; see deploy/README.md)",
    )
    wait_workers: float = setting(
        600.0,
        kind="compute",
        metavar="SECONDS",
        help="with --scheduler: wait this long for a (GPU, with --gpu require) worker",
    )
    cluster: str = setting(
        "local",
        kind="compute",
        choices=CLUSTERS,
        help="start a local cluster, or --workers GPU worker jobs on SLURM/PBS (dask-jobqueue)",
    )
    cluster_config: Path | None = setting(
        None,
        kind="compute",
        metavar="YAML",
        help="dask-jobqueue YAML for --cluster slurm/pbs (e.g. "
        "deploy/hpc/jobqueue.yaml; default ~/.config/dask/jobqueue.yaml)",
    )
    gpu: str = setting(
        "auto",
        kind="compute",
        choices=GPU_MODES,
        help="use a dask-cuda cluster when GPUs are visible (auto), never, or refuse to run without",
    )
    tls: bool = setting(
        True,
        kind="compute",
        help="start the cluster without TLS: any user of this machine (of the batch cluster's "
        "network, for --cluster slurm/pbs) can then connect to it and run code as you",
    )
    # -- storage (run_dir and storage_options are options of every command: __main__) --
    run_dir: Path | str = setting(Path("runs/demo"), kind="storage")
    storage_options: dict[str, Any] = setting(default_factory=dict, kind="storage")
    restart: bool = setting(False, kind="storage", help="discard an existing run directory's results")
    keep_partials: bool = setting(
        False,
        kind="storage",
        help="keep the tiles' partial statistics after the verified merge (they are "
        "removed by default: the classification store holds the result)",
    )
    progress: bool = setting(True, kind="storage", help="no progress bar")
    verbose: bool = setting(False, kind="storage", help=VERBOSE_HELP)

    def __post_init__(self) -> None:
        # Paths are recorded absolute, so that resubmit works from any directory (a batch
        # job's); a manifest with relative ones resumes from the directory it was made in.
        self.run_dir = _absolute(run_dir_value(self.run_dir))
        for name in ("data_dir", "mosaics_file", "cluster_config"):
            setattr(self, name, _absolute(getattr(self, name)))
        if self.model and self.model not in MODELS:
            self.model = str(_absolute(Path(self.model)))
        self.storage_options = check_storage_options(self.storage_options or {})  # refuses credentials
        if isinstance(self.run_dir, Path):  # a local run directory ignores them: never record them
            self.storage_options = {}
        if self.cluster not in CLUSTERS:
            raise InputError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {self.cluster!r}")
        if self.scheduler and self.cluster != "local":
            raise InputError(f"give either --scheduler {self.scheduler} or --cluster {self.cluster}, not both")
        self.tile = _whole("--tile", self.tile, 1)
        self.stride = _whole(
            "--stride", self.stride, 1, self.window, "(a larger stride leaves pixels that no window covers)"
        )
        self.batch_size = _whole("--batch-size", self.batch_size, 1)
        self.retries = _whole("--retries", self.retries, 0)
        if self.workers is not None:
            self.workers = _whole("--workers", self.workers, 1)
        self.threads_per_worker = _whole("--threads-per-worker", self.threads_per_worker, 1)
        if (
            isinstance(self.wait_workers, bool)
            or not isinstance(self.wait_workers, (int, float))
            or not math.isfinite(self.wait_workers)
            or self.wait_workers < 0
        ):
            raise InputError(f"--wait-workers must be a number of seconds >= 0, got {self.wait_workers!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.gpu not in GPU_MODES:
            raise InputError(f"--gpu must be one of {', '.join(GPU_MODES)}, got {self.gpu!r}")
        if not self.model:
            raise InputError(f"--model must be one of {', '.join(MODELS)} or a .weights.h5 file")

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable settings (paths as strings)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSettings:
        """Settings recorded in a manifest (older manifests' names are understood)."""
        data = upgrade_recorded(data)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("data_dir", "mosaics_file", "cluster_config", "scheduler_security"):
            if kwargs.get(key) is not None:
                kwargs[key] = Path(kwargs[key])
        if kwargs.get("run_dir") is not None:
            kwargs["run_dir"] = run_dir_value(kwargs["run_dir"])
        return cls(**kwargs)

    @property
    def location(self) -> Location:
        """The run directory as a :class:`~pipeline.rundir.location.Location`."""
        return Location(self.run_dir, self.storage_options)

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the result (compared on resume)."""
        data = self.to_json()
        return {f.name: data[f.name] for f in dataclasses.fields(self) if f.metadata.get("result")}

    def result_changes(self, recorded: dict[str, Any]) -> list[tuple[str, str]]:
        """How these settings' result settings differ from a manifest's
        ``result_settings``, in the command line's words: ``("--tile 128", "--tile 256")``
        (recorded, then these).

        Older manifests' names are understood (:func:`upgrade_recorded`), and a weights
        file recorded relative is compared as an absolute path.
        """
        recorded = upgrade_recorded(recorded)
        if recorded.get("model") not in (None, *MODELS):  # a weights file, recorded relative before
            recorded["model"] = os.path.abspath(os.path.expanduser(recorded["model"]))
        return [
            (option_text(RunSettings, key, recorded.get(key)), option_text(RunSettings, key, value))
            for key, value in self.result_settings().items()
            if recorded.get(key) != value
        ]

    def refuse_other_results(self, recorded: dict[str, Any], changed_inputs: bool = False) -> None:
        """Refuse to resume a run recorded with other result settings (or inputs).

        Parameters
        ----------
        recorded : dict
            The run's manifest.
        changed_inputs : bool
            The input files differ from those the manifest records.

        Raises
        ------
        InputError
            Naming each difference as the command line gives it, and the ways out (the
            recorded options, ``--restart`` or another ``--run-dir``), e.g.
            ``runs/demo: this run directory was made with --tile 128, not --tile 256;
            give --tile 128 to resume it, --restart to start over, or another --run-dir``.
        """
        changes = self.result_changes(recorded.get("result_settings", {}))
        if not changes and not changed_inputs:
            return
        made = []
        if changes:
            old, new = (" ".join(words) for words in zip(*changes))
            made.append(f"with {old}, not {new}")
        if changed_inputs:
            made.append("from other input files (sizes or checksums differ)")
        way_out = f"give {old} to resume it, --restart to start over" if not changed_inputs else "--restart starts over"
        raise InputError(
            f"{self.run_dir}: this run directory was made {', and '.join(made)}; {way_out}, or give another --run-dir"
        )

    @property
    def weights(self) -> str | None:
        """The Keras weights file the model names (``None`` for a named model)."""
        return None if self.model in MODELS else self.model

    def model_description(self) -> str:
        """Human-readable model identity for manifests and FITS headers."""
        if self.model in MODELS:
            return MODELS[self.model]
        return f"Keras weights {os.path.basename(self.model)}"


def _absolute(path: Path | str | None) -> Path | str | None:
    """A local path made absolute (``~`` expanded, ``..`` folded); URLs and None as they are."""
    if path is None or isinstance(path, str) and "://" in path:
        return path
    return Path(os.path.abspath(Path(path).expanduser()))


def _whole(option: str, value: Any, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` as an int in ``[low, high]``, else an InputError naming the option."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{option} must be a whole number, got {value!r}") from None
    if number < low or high is not None and number > high:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{option} must be {span}{' ' + why if why else ''}, got {number}")
    return number


def upgrade_recorded(data: dict[str, Any]) -> dict[str, Any]:
    """Recorded settings (a manifest's ``config`` or ``result_settings``) in today's
    names: ``classifier`` and ``weights`` became ``model``; the test-only
    ``fail_tiles`` and ``tile_delay`` are no longer settings.
    """
    data = dict(data)
    if "classifier" in data or "weights" in data:
        classifier, weights = data.pop("classifier", "released"), data.pop("weights", None)
        data.setdefault("model", "standin" if classifier == "standin" else weights or "released")
    for name in ("fail_tiles", "tile_delay"):
        data.pop(name, None)
    return data
