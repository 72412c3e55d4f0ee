"""Dask workers as batch jobs on SLURM or PBS, through dask-jobqueue.

The driver (``python -m pipeline run --cluster slurm --workers N``) runs the Dask
scheduler in its own process and submits ``N`` worker jobs with ``sbatch`` (``qsub``
for PBS); workers connect back to it as their jobs start, and their jobs are cancelled
when the run ends. Job settings come from a dask-jobqueue YAML file: the
``jobqueue.slurm`` or ``jobqueue.pbs`` section of ``--cluster-config FILE``, or,
without that option, the Dask configuration (``~/.config/dask/jobqueue.yaml``).
``deploy/hpc/jobqueue.yaml`` is a worked example with one GPU per worker job.

A worker is a GPU worker when its arguments advertise a ``GPU`` resource
(``worker-extra-args: ["--resources", "GPU=1"]``); classification tasks then
request it (:func:`pipeline.cluster.client.gpu_resources`).

The scheduler listens on the cluster's network, where any user of the batch system can
reach it; :func:`pipeline.cluster.client.make_client` therefore gives it TLS credentials made
for the run (``security=``, :func:`pipeline.cluster.security.temporary_security`). The worker
jobs read them from files that dask-jobqueue writes (readable by you alone) into the
configuration's ``shared-temp-directory``, a folder the compute nodes must see
(default :data:`SHARED_TEMP_DEFAULT`), and deletes once the cluster object is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

__all__ = ["JOBQUEUE_CLASSES", "SHARED_TEMP_DEFAULT", "advertises_gpu", "jobqueue_cluster", "jobqueue_settings"]

log = logging.getLogger(__name__)

#: ``--cluster`` value -> dask-jobqueue cluster class.
JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}
#: Where the worker jobs' TLS files go when the configuration names no
#: ``shared-temp-directory``: the home directory, which compute nodes usually share
#: (dask-jobqueue's own default, the driver's working directory, is often not).
SHARED_TEMP_DEFAULT = "~"

_HPC_INSTALL_HINT = "pip install 'morpheus-survey[hpc]'"
_EXAMPLE = "deploy/hpc/jobqueue.yaml"
# Configuration keys whose keyword differs from the key with '-' -> '_'.
_RENAMED = {"name": "job_name"}


def jobqueue_settings(kind: str, config_file: str | Path | None = None) -> dict[str, Any]:
    """The dask-jobqueue section for ``kind`` from a YAML file, as keyword arguments.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        Which section (``jobqueue.slurm`` or ``jobqueue.pbs``).
    config_file : str or Path, optional
        A YAML file laid out like Dask's configuration (``jobqueue: slurm: ...``).
        ``None``: an empty dict (dask-jobqueue then reads the Dask configuration).

    Returns
    -------
    dict
        Keyword arguments of the cluster class (``job-script-prologue`` becomes
        ``job_script_prologue``, ``name`` becomes ``job_name``); unset (null) keys
        are left out.

    Raises
    ------
    InputError
        If the file is missing, is not YAML, or has no section for ``kind``.
    """
    _check_kind(kind)
    if config_file is None:
        return {}
    import yaml

    path = Path(config_file)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: cluster configuration file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    section = ((document or {}).get("jobqueue") or {}).get(kind)
    if not isinstance(section, Mapping):
        raise InputError(f"{path}: no 'jobqueue: {kind}:' section (see {_EXAMPLE})")
    return {_RENAMED.get(key, key.replace("-", "_")): value for key, value in section.items() if value is not None}


def advertises_gpu(worker_args: Sequence[str] | None) -> bool:
    """Whether dask-worker arguments give the worker a ``GPU`` resource.

    Both ``["--resources", "GPU=1"]`` and ``["--resources=GPU=1 MEM=4e9"]`` count.
    """
    args = [str(a) for a in (worker_args or [])]
    for i, arg in enumerate(args):
        if arg == "--resources" and i + 1 < len(args):
            spec = args[i + 1]
        elif arg.startswith("--resources="):
            spec = arg.split("=", 1)[1]
        else:
            continue
        for item in spec.replace(",", " ").split():
            name, _, amount = item.partition("=")
            if name == "GPU" and _positive(amount):
                return True
    return False


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _check_kind(kind: str) -> None:
    if kind not in JOBQUEUE_CLASSES:
        raise ValueError(f"kind must be one of {tuple(JOBQUEUE_CLASSES)}, got {kind!r}")


def jobqueue_cluster(
    kind: str,
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    security: Any = None,
    **overrides: Any,
) -> Any:
    """Create a dask-jobqueue cluster (no jobs submitted yet) from our configuration.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        The batch system.
    config_file : str or Path, optional
        dask-jobqueue YAML file (see :func:`jobqueue_settings`); default: the Dask
        configuration.
    env : mapping, optional
        Variables exported at the top of each job script, after the file's
        ``job-script-prologue`` (thread limits, ``TF_FORCE_GPU_ALLOW_GROWTH``);
        a variable the prologue already exports is not repeated.
    security : distributed.Security, optional
        TLS credentials of the scheduler and workers; in-memory ones are written for
        the jobs into ``shared-temp-directory`` (:data:`SHARED_TEMP_DEFAULT` unless
        the configuration names one). ``None``: plain TCP.
    **overrides
        Keyword arguments of the cluster class that take precedence over the file.

    Returns
    -------
    dask_jobqueue.JobQueueCluster
        Call ``.scale(n)`` to submit jobs, ``.job_script()`` to see one,
        ``.close()`` to cancel them.

    Raises
    ------
    InputError
        dask-jobqueue not installed, a bad configuration file, or a configuration
        without ``cores`` and ``memory``.
    """
    _check_kind(kind)
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise InputError(f"--cluster {kind} needs dask-jobqueue ({exc}): {_HPC_INSTALL_HINT}") from exc
    import dask

    kwargs = {**jobqueue_settings(kind, config_file), **overrides}
    if security is not None:
        kwargs["security"] = security
        if not (kwargs.get("shared_temp_directory") or dask.config.get(f"jobqueue.{kind}.shared-temp-directory", None)):
            kwargs["shared_temp_directory"] = SHARED_TEMP_DEFAULT
    if env:
        prologue = list(
            kwargs.get("job_script_prologue") or dask.config.get(f"jobqueue.{kind}.job-script-prologue", None) or []
        )
        exported = " ".join(prologue)
        prologue += [f"export {name}={value}" for name, value in env.items() if f"{name}=" not in exported]
        kwargs["job_script_prologue"] = prologue
    cls = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])
    try:
        return cls(**kwargs)
    except ValueError as exc:
        if "cores and memory" in str(exc):
            where = config_file or "the Dask configuration (~/.config/dask/jobqueue.yaml)"
            raise InputError(
                f"{where}: no 'cores' and 'memory' for jobqueue.{kind}: start from {_EXAMPLE} (--cluster-config FILE)"
            ) from exc
        raise InputError(f"--cluster {kind}: {exc}") from exc
    except TypeError as exc:  # an unknown key in the file
        raise InputError(f"{config_file or 'Dask configuration'}: {exc}") from exc
