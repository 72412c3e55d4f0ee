"""Who may talk to a run's Dask cluster: TLS credentials for the clusters a run starts
and for the scheduler it joins.

A Dask scheduler, its workers and their nannies accept any connection that speaks the
Dask protocol, and a client can run arbitrary code on the workers (``Client.run``,
``Client.submit``). On a shared machine (an HPC login or compute node, a workstation)
a plain-TCP cluster on 127.0.0.1 therefore lets every other user run code as you.

- Clusters a run starts (local, dask-cuda, dask-jobqueue) use mutual TLS with a
  certificate made for the run and kept in memory (:func:`temporary_security`,
  :meth:`distributed.Security.temporary`): the scheduler, workers, nannies and the
  run's client hold it, and a connection without it is refused. ``--no-tls`` turns
  this off, with a warning.
- A scheduler given by address (``--scheduler tls://host:8786``) is reached with the
  credentials of a Dask configuration file (``--scheduler-security FILE``,
  :func:`load_security`), laid out as Dask's own configuration::

      distributed:
        comm:
          require-encryption: true
          tls:
            ca-file: /path/to/tls.crt     # the certificate authority to trust
            client: {cert: /path/to/tls.crt, key: /path/to/tls.key}
            scheduler: {cert: /path/to/tls.crt, key: /path/to/tls.key}  # for `dask scheduler`
            worker: {cert: /path/to/tls.crt, key: /path/to/tls.key}     # for `dask worker`

  Without the option the Dask configuration itself is read (``~/.config/dask/*.yaml``,
  ``/etc/dask``, ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE`` and the like), as
  ``dask scheduler`` and ``dask worker`` read it. ``deploy/tls/make-credentials.sh``
  writes such a file with a new certificate; ``deploy/README.md`` shows its use on
  SLURM/PBS and Kubernetes.

Dask checks the certificate chain, not host names: every holder of the CA's trust and
a certificate it signed is a member of the cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import distributed

from pipeline.errors import InputError

__all__ = ["check_scheduler_security", "load_security", "temporary_security"]

_TLS_KEY = "distributed.comm.tls"
_EXAMPLE = "deploy/tls/make-credentials.sh"


def temporary_security() -> distributed.Security:
    """Mutual-TLS credentials for one cluster: a new self-signed certificate and key,
    kept in memory, that the scheduler, workers, nannies and client all present.

    Raises
    ------
    InputError
        If the ``cryptography`` package (a dependency of this project) is missing.
    """
    try:
        return distributed.Security.temporary()
    except ImportError as exc:
        raise InputError(
            f"TLS for the cluster needs the cryptography package ({exc}): "
            f"pip install cryptography, or run with --no-tls"
        ) from exc


def load_security(path: str | os.PathLike[str]) -> distributed.Security:
    """The client credentials of a Dask configuration file (see the module's notes).

    Parameters
    ----------
    path : str or path-like
        A YAML file with a ``distributed: comm: tls:`` section naming ``ca-file`` and
        ``client: {cert, key}`` (``key`` may be left out when the certificate file
        holds the key too). Relative file names are taken from the file's folder.

    Returns
    -------
    distributed.Security
        With ``require_encryption=True``: the client refuses to speak plain TCP.

    Raises
    ------
    InputError
        The file is missing or not YAML, it has no such section, or a file it names
        does not exist.
    """
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: scheduler security file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({exc})") from exc
    tls: Any = document
    for key in _TLS_KEY.split("."):
        tls = tls.get(key) if isinstance(tls, dict) else None
    client = tls.get("client") if isinstance(tls, dict) else None
    if not isinstance(client, dict) or not tls.get("ca-file") or not client.get("cert"):
        raise InputError(
            f"{path}: no '{_TLS_KEY}' section with 'ca-file' and 'client: {{cert, key}}' "
            f"(a Dask configuration file; {_EXAMPLE} writes one)"
        )
    files = {"ca-file": tls["ca-file"], "client cert": client["cert"]}
    if client.get("key"):
        files["client key"] = client["key"]
    resolved = {}
    for what, name in files.items():
        file = (path.parent / Path(str(name)).expanduser()).resolve()
        if not file.is_file():
            raise InputError(f"{path}: {what} {name!r} not found")
        resolved[what] = str(file)
    options: dict[str, Any] = {}
    if tls.get("ciphers"):
        options["tls_ciphers"] = tls["ciphers"]
    return distributed.Security(
        require_encryption=True,
        tls_ca_file=resolved["ca-file"],
        tls_client_cert=resolved["client cert"],
        tls_client_key=resolved.get("client key"),
        **options,
    )


def check_scheduler_security(address: str, security: distributed.Security | None) -> distributed.Security:
    """The credentials to reach the scheduler at ``address``, checked before connecting.

    Parameters
    ----------
    address : str
        The scheduler's address (``tls://host:8786`` or ``tcp://host:8786``).
    security : distributed.Security, optional
        From :func:`load_security`; ``None``: the Dask configuration's.

    Raises
    ------
    InputError
        A ``tls://`` address without client credentials, or credentials given for an
        address that is not ``tls://`` (they would not be used).
    """
    given = security is not None
    security = security if given else distributed.Security()
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme == "tls":
        tls = security.get_tls_config_for_role("client")
        if not tls.get("ca_file") or not tls.get("cert"):
            raise InputError(
                f"scheduler {address}: no TLS credentials for it: give --scheduler-security FILE "
                f"(a Dask configuration naming the CA, certificate and key; {_EXAMPLE}) or set "
                f"{_TLS_KEY} in the Dask configuration"
            )
    elif given:
        raise InputError(
            f"scheduler {address}: TLS credentials were given (--scheduler-security) but the "
            f"address is not tls://; write it tls://{address.split('://', 1)[-1]}"
        )
    return security
