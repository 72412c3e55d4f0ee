"""What a Dask cluster is and why: :class:`ClusterInfo`, the one GPU-mode decision
(:func:`choose_gpu`), a client made elsewhere described (:func:`describe_client`), and the
lines a run prints about its cluster (:func:`cluster_lines`).

:mod:`pipeline.cluster.client` starts or joins the clusters these describe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import distributed

from pipeline.errors import InputError
from pipeline.settings.run import GPU_MODES

__all__ = ["ClusterInfo", "choose_gpu", "cluster_info", "cluster_lines", "describe_client", "gpu_resources", "one_of"]

log = logging.getLogger(__name__)

_NOT_REQUESTED = 'GPUs not requested (gpu="never")'
_Found = TypeVar("_Found")


@dataclass(frozen=True)
class ClusterInfo:
    """What :func:`make_client` connected to, and why.

    Attributes
    ----------
    kind : str
        ``"local"``, ``"local-cuda"``, ``"external"``, ``"slurm"`` or ``"pbs"``.
    dashboard_link : str or None
        URL of the scheduler's dashboard, ``None`` if it has none.
    n_workers : int
        Workers connected when the client was made.
    gpu : bool
        Whether classification tasks should request ``{"GPU": 1}``
        (see :func:`gpu_resources`).
    reason : str
        Why this kind was chosen, in words fit for a log line.
    address : str
        The scheduler's address (``tls://127.0.0.1:PORT`` for a local cluster).
    warning : str or None
        What the user must know about this cluster (a cluster started without TLS).
    """

    kind: str
    dashboard_link: str | None
    n_workers: int
    gpu: bool
    reason: str
    address: str = ""
    warning: str | None = None


def one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse a setting ``name`` whose ``value`` is not one of ``choices`` (InputError)."""
    if value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {value!r}")


def choose_gpu(
    mode: str, probe: Callable[[], tuple[_Found, str]], *, where: str = "", advice: str = ""
) -> tuple[_Found | None, str]:
    """Whether a cluster's work goes to GPUs under the ``gpu`` setting: the one GPU-mode decision.

    Parameters
    ----------
    mode : {"auto", "never", "require"}
        The setting (:data:`~pipeline.settings.run.GPU_MODES`): use GPUs when ``probe``
        finds them, never, or refuse to go on without them.
    probe : callable
        Finds the GPUs this cluster could use (called unless ``mode`` is ``"never"``):
        returns something true when there are some (a count, the means to start them),
        and why, in words.
    where, advice : str
        Put before and after the refusal's message (``"scheduler ... given: "``,
        ``"; start workers with ..."``).

    Returns
    -------
    found : object or None
        What ``probe`` found, ``None`` when no GPU is used.
    reason : str
        Why, for :attr:`ClusterInfo.reason`.

    Raises
    ------
    InputError
        An unknown ``mode``, or ``"require"`` and ``probe`` found none (naming why).
    """
    one_of("gpu", mode, GPU_MODES)
    if mode == "never":
        return None, _NOT_REQUESTED
    found, reason = probe()
    if not found and mode == "require":
        raise InputError(f"{where}a GPU is required (--gpu require) but {reason}{advice}")
    return (found or None), reason


def cluster_lines(info: ClusterInfo) -> list[str]:
    """What a run prints about its cluster: ``cluster: KIND, N workers (REASON);
    scheduler ADDRESS``, then ``warning: ...`` if :attr:`ClusterInfo.warning` is set.
    """
    line = f"cluster: {info.kind}, {info.n_workers} workers ({info.reason})"
    if info.address and info.address not in info.reason:
        line += f"; scheduler {info.address}"
    return [line] + ([f"warning: {info.warning}"] if info.warning else [])


def gpu_resources(info: ClusterInfo) -> dict[str, int] | None:
    """Resources a classification task must request on this cluster.

    Parameters
    ----------
    info : ClusterInfo
        From :func:`make_client`.

    Returns
    -------
    dict or None
        ``{"GPU": 1}`` on a GPU cluster, else ``None`` (no restriction).

    Notes
    -----
    Graph optimisation can drop resource annotations (dask issues #7036, #10325);
    check where GPU tasks ran rather than trusting the annotation.
    """
    return {"GPU": 1} if info.gpu else None


def _n_connected(client: distributed.Client) -> int:
    return len(client.scheduler_info().get("workers", {}))


def cluster_info(
    client: distributed.Client, *, kind: str, gpu: bool, reason: str, dashboard: bool = True, started: bool = False
) -> ClusterInfo:
    """Describe the client's cluster; a cluster ``started`` here without TLS gets a warning."""
    link = (client.dashboard_link or None) if dashboard else None
    address = client.scheduler.address
    warning = None
    if started and not address.startswith("tls://"):
        reach = "any user of this machine" if kind.startswith("local") else "anyone who can reach the cluster's network"
        warning = f"TLS is off (--no-tls): {reach} can connect to the scheduler at {address} and run code as you"
        log.warning(warning)
    info = ClusterInfo(
        kind=kind,
        dashboard_link=link,
        n_workers=_n_connected(client),
        gpu=gpu,
        reason=reason,
        address=address,
        warning=warning,
    )
    log.info(
        "Dask cluster: %s at %s, %d worker(s), gpu=%s (%s); dashboard %s",
        info.kind,
        info.address,
        info.n_workers,
        info.gpu,
        info.reason,
        info.dashboard_link or "off",
    )
    return info


def describe_client(
    client: distributed.Client, *, gpu: str = "auto", kind: str = "external", what: str | None = None
) -> ClusterInfo:
    """Describe the cluster behind a client that was made elsewhere.

    GPU work is planned when some connected worker advertises a ``"GPU"``
    resource (and ``gpu`` is not ``"never"``).

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    gpu : {"auto", "never", "require"}
        As for :func:`make_client`.
    kind : str
        The :attr:`ClusterInfo.kind` to report.
    what : str, optional
        How the client was obtained, for the reason (default: the scheduler address).

    Raises
    ------
    InputError
        ``gpu="require"`` and no worker advertises a GPU resource.
    """
    what = what or f"scheduler {client.scheduler.address} given"

    def gpu_workers() -> tuple[int, str]:
        workers = client.scheduler_info().get("workers", {})
        n = sum(1 for w in workers.values() if (w.get("resources") or {}).get("GPU", 0) > 0)
        return n, (
            f"{n} of {len(workers)} worker(s) advertise a GPU resource"
            if n
            else f"none of {len(workers)} worker(s) advertises a GPU resource"
        )

    found, reason = choose_gpu(
        gpu,
        gpu_workers,
        where=f"{what}: ",
        advice="; start workers with '--resources GPU=1' or 'dask cuda worker --resources GPU=1'",
    )
    return cluster_info(client, kind=kind, gpu=found is not None, reason=f"{what}; {reason}")
