"""Credentials kept out of run settings: storage options screened before they are recorded.

Storage options (``--storage-option``, :attr:`pipeline.settings.run.RunSettings.storage_options`)
of an object-store run directory are written to its manifest, so that ``status``,
``resubmit`` and the workers can reach it. Credentials must never be among them: they
come from the store's usual sources (for S3: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws/credentials``, an instance or pod role).
:func:`check_storage_options` refuses them, naming where they are and never echoing
them; :class:`~pipeline.settings.run.RunSettings` calls it on every value it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.errors import InputError

__all__ = ["SECRET_OPTION_PATTERN", "check_storage_options"]

#: Storage option names refused in run settings, at any depth: secrets would land in
#: the manifest. Matched against the name with every run of other characters than
#: letters and digits made one ``_`` (``X-Api-Key`` -> ``X_Api_Key``).
SECRET_OPTION_PATTERN = re.compile(
    r"(secret|token|password|passwd|passphrase|credential|^key$|_key$|"
    r"account_?key|access_?key|api_?key|pkey|^sas|sas_|_sas$|"
    r"authori[sz]ation|authenticat|(^|_)auth($|_)|cookie|signature(?!_version)|"
    r"connection_?string|conn_?str|private|session_?key)",
    re.IGNORECASE,
)
#: ``scheme://user:password@host`` (or ``user@host``) in a value: credentials in a URL.
_URL_USERINFO = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s]+@")
#: Values that hold a credential whatever their option's name: connection strings
#: (``AccountKey=``), signed URLs and SAS tokens (``X-Amz-Signature=``, ``sig=``,
#: ``SharedAccessSignature``), ``Authorization`` header values (``Bearer ...``).
_SECRET_VALUE = re.compile(
    r"(accountkey\s*=|sharedaccesskey\s*=|sharedaccesssignature|"
    r"(^|[?&;\s])[\w.-]*(signature|sig|credential|token|password|passwd|secret|key)\s*=|"
    r"(^|[\s:=,])(bearer|basic|digest)\s+[\w.~+/=-]+)",
    re.IGNORECASE,
)
#: ``Name: value``, a header written as one string.
_HEADER_LINE = re.compile(r"^\s*([\w-]+)\s*:\s*\S")


def check_storage_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse credentials in storage options that run settings will record.

    The options are screened recursively, since fsspec passes nested dictionaries and
    lists on (``client_kwargs``, ``config_kwargs``, ``headers`` as a dict or a list of
    ``[name, value]`` pairs): refused are an option name at any depth that looks like
    a secret (:data:`SECRET_OPTION_PATTERN`, also as the first item of a pair or the
    name of a ``"Name: value"`` string), and a value that holds a credential whatever
    its name: a URL with a user name or password, a connection string
    (``AccountKey=``), a signed URL or SAS token (``Signature=``,
    ``X-Amz-Signature=``, ``sig=``, ``SharedAccessSignature``) or an
    ``Authorization`` value (``Bearer ...``). (A whitelist of option names would also
    refuse every harmless option of the many fsspec back ends that nobody listed.)

    Raises
    ------
    InputError
        Naming every offending option by its path (``client_kwargs.aws_secret_access_key``)
        and where credentials go instead; the values are never echoed.
    """
    out = dict(options)
    found = sorted(set(_secret_paths(out, "")))
    if found:
        raise InputError(
            f"storage option(s) {', '.join(found)} look like credentials, which would be "
            "recorded in the run's manifest: give them through the environment "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) or the store's credential "
            "files instead"
        )
    return out


def _secret_name(name: Any) -> bool:
    """Whether an option name looks like a credential's (``-``, ``.``, spaces as ``_``)."""
    return bool(SECRET_OPTION_PATTERN.search(re.sub(r"[^0-9A-Za-z]+", "_", str(name))))


def _secret_paths(value: Any, path: str) -> list[str]:
    """Paths of secret-looking names and credential values inside ``value``."""
    found = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if _secret_name(key):
                found.append(where)
            else:
                found += _secret_paths(item, where)
    elif isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and _secret_name(value[0]):
            found.append(f"{path} ({value[0]})")  # a [name, value] pair, as header lists hold
        else:
            for i, item in enumerate(value):
                found += _secret_paths(item, f"{path}[{i}]")
    elif isinstance(value, str):
        header = _HEADER_LINE.match(value)
        if _URL_USERINFO.search(value):
            found.append(f"{path} (a URL with a user name or password)")
        elif header and _secret_name(header[1]):
            found.append(f"{path} ({header[1]})")
        elif _SECRET_VALUE.search(value):
            found.append(f"{path} (its value holds a credential)")
    return found
