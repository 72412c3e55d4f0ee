"""Where a run lives: a local folder or an fsspec URL such as ``s3://bucket/prefix``.

Workers on different nodes must see the same run directory: a shared file system path
(NFS, Lustre, GPFS, a Kubernetes ReadWriteMany volume) or an object store. A
:class:`Location` names a file or folder in either, and offers the few operations the
pipeline needs: read and write whole small objects (the manifest, ledger records,
per-tile partial statistics), list a folder, remove, open a Zarr store, upload a file.

Atomicity, on which the ledger relies (a tile is finished only once its record
exists, and the record is written after its partial statistics):

- **local paths**: written to a temporary file in the destination folder, flushed,
  ``fsync``-ed, then renamed over the destination (``os.replace``); readers see the
  old or the complete new file;
- **object stores** (S3 and S3-compatible stores, GCS, Azure): an object becomes
  visible only when its upload completes (single or multipart), and these stores
  give read-after-write consistency, so a plain ``put`` is atomic and ordered.

Listings are never cached (``use_listings_cache=False``): the driver polls folders
that workers write.

Credentials are never part of a run's settings (they would be written to its
manifest): they come from the store's usual sources (for S3: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws/credentials``, an instance or pod role), and
storage options holding them are refused (:mod:`pipeline.rundir.credentials`). A
non-AWS endpoint is given with ``AWS_ENDPOINT_URL`` or ``storage_options=
{"endpoint_url": ...}`` (``--storage-option endpoint_url=...`` on the command line).

Examples
--------
>>> run = Location("s3://survey/goods-s", {"endpoint_url": "http://127.0.0.1:9000"})
>>> str(run / "ledger" / "t0000_0001.done")
's3://survey/goods-s/ledger/t0000_0001.done'
>>> (run / "ledger").is_local
False
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = ["ZARR_METADATA", "Location", "as_location", "atomic_path", "file_mode", "is_url", "run_dir_value"]

#: The metadata file of a Zarr v3 group or array.
ZARR_METADATA = "zarr.json"

_URL = re.compile(r"^(?P<protocol>[a-zA-Z][a-zA-Z0-9+.-]*)://")


def file_mode() -> int:
    """Permissions of a new file: ``0o666`` less the process's umask (what ``open``
    gives a new file; temporary files are made 0600 and get this before the rename).
    """
    try:  # read the umask without changing it where Linux allows
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``final`` to write; it replaces ``final`` in one rename.

    The one atomic-write implementation of the project: when the block ends without
    error the file is flushed to disk, given :func:`file_mode` permissions and renamed
    onto ``final`` (readers see the old or the whole new file, never a part); on error
    it is removed and ``final`` is untouched.

    Parameters
    ----------
    final : path-like
        The file to write, in an existing folder.

    Yields
    ------
    Path
        The temporary file's path (hidden, same folder, so the rename is atomic).
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def is_url(value: str | os.PathLike[str]) -> bool:
    """True for ``protocol://...`` strings other than ``file://``."""
    if not isinstance(value, str):
        return False
    match = _URL.match(value)
    return bool(match) and match["protocol"].lower() not in ("file", "local")


def run_dir_value(value: str | os.PathLike[str]) -> Path | str:
    """A run directory as settings hold it: a :class:`~pathlib.Path` or a URL string.

    ``file://`` URLs become paths; other URLs keep their exact spelling (a
    :class:`~pathlib.Path` would fold ``s3://b`` into ``s3:/b``); trailing slashes
    are dropped.
    """
    if isinstance(value, str):
        if is_url(value):
            return value.rstrip("/")
        match = _URL.match(value)
        if match:  # file:// or local://
            value = value[match.end() :]
    return Path(value)


class Location:
    """A file or folder on a local file system or in an fsspec-supported store.

    Parameters
    ----------
    where : str or path-like
        A local path, or a URL such as ``s3://bucket/run`` or ``gs://bucket/run``.
    storage_options : mapping, optional
        Keyword arguments of the fsspec file system (for S3: ``endpoint_url``,
        ``client_kwargs``, ``anon``, ...). Ignored for local paths.

    Notes
    -----
    A location pickles as its URL and options (it travels inside Dask tasks); each
    process opens its own file system object on first use.
    """

    def __init__(self, where: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> None:
        value = run_dir_value(where if isinstance(where, str) else os.fspath(where))
        if isinstance(value, Path):
            self.url = str(value.expanduser().absolute())
            self.protocol = "file"
            self.storage_options: dict[str, Any] = {}
        else:
            self.url = value
            self.protocol = _URL.match(value)["protocol"].lower()
            self.storage_options = dict(storage_options or {})
        self._fs: Any = None

    # -- identity -------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        """True for a path on a local (or mounted shared) file system."""
        return self.protocol == "file"

    @property
    def path(self) -> Path:
        """The local path. Raises :class:`ValueError` for a URL."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not on a local file system")
        return Path(self.url)

    @property
    def name(self) -> str:
        """The last component, e.g. ``"t0000_0001.done"``."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def __truediv__(self, name: str) -> Location:
        if self.is_local:
            return Location(Path(self.url) / name)
        return Location(f"{self.url}/{str(name).strip('/')}", self.storage_options)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and self.url == other.url and self.storage_options == other.storage_options

    def __hash__(self) -> int:
        return hash(self.url)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "protocol": self.protocol, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs = None

    # -- file system ----------------------------------------------------------------
    @property
    def fs(self) -> Any:
        """The fsspec file system of a URL (listings never cached)."""
        if self.is_local:
            raise ValueError(f"{self.url} is a local path; use .path")
        if self._fs is None:
            import fsspec

            self._fs, _ = fsspec.url_to_fs(self.url, **self.fs_options())
        return self._fs

    def fs_options(self) -> dict[str, Any]:
        """Options the fsspec file system is opened with."""
        return {"use_listings_cache": False, **self.storage_options}

    @property
    def _key(self) -> str:
        return self.fs._strip_protocol(self.url)

    # -- queries --------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether a file or a non-empty folder is here."""
        if self.is_local:
            return self.path.exists()
        return bool(self.fs.exists(self._key))

    def listdir(self) -> list[str]:
        """Names of the entries directly inside this folder (empty if it is missing)."""
        if self.is_local:
            try:
                return sorted(os.listdir(self.url))
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            entries = self.fs.ls(self._key, detail=False)
        except FileNotFoundError:
            return []
        key = self._key.rstrip("/")
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != key)

    # -- reading --------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        """The whole content of a file."""
        if self.is_local:
            return self.path.read_bytes()
        return self.fs.cat_file(self._key)

    def read_text(self) -> str:
        """The content of a UTF-8 text file."""
        return self.read_bytes().decode("utf-8")

    def read_json(self) -> Any:
        """A JSON document."""
        return json.loads(self.read_bytes())

    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """The contents of several files in this folder (fetched concurrently from
        object stores); missing files are left out.
        """
        names = list(names)
        if self.is_local:
            out = {}
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    out[name] = (self.path / name).read_bytes()
            return out
        keys = {f"{self._key.rstrip('/')}/{name}": name for name in names}
        if not keys:
            return {}
        fetched = self.fs.cat(list(keys), on_error="omit")
        return {keys[k]: v for k, v in fetched.items() if k in keys}

    # -- writing --------------------------------------------------------------------
    def makedirs(self) -> None:
        """Create this folder (object stores have none: nothing to do)."""
        if self.is_local:
            self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def open_atomic(self) -> Iterator[IO[bytes]]:
        """A binary file to write this file's new content into, made visible only
        when the block ends without error.
        """
        if self.is_local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
                yield fh
            return
        # Spool to a local temporary file, upload only on success: the object appears
        # when its upload completes, and a failed write uploads nothing.
        fd, tmp_name = tempfile.mkstemp(prefix="morpheus-upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
            self.fs.put_file(tmp_name, self._key)
        finally:
            os.unlink(tmp_name)

    def write_bytes(self, data: bytes) -> None:
        """Replace this file's content atomically (see the module notes)."""
        if self.is_local:
            with self.open_atomic() as fh:
                fh.write(data)
        else:
            self.fs.pipe_file(self._key, data)

    def write_json(self, data: Any) -> None:
        """Atomically write a JSON document (indented, sorted keys)."""
        self.write_bytes(json.dumps(data, indent=2, sort_keys=True).encode())

    def upload(self, local_file: str | os.PathLike[str]) -> None:
        """Copy a local file here (atomically)."""
        if self.is_local:
            with open(local_file, "rb") as src, self.open_atomic() as dst:
                shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
        else:
            self.fs.put_file(os.fspath(local_file), self._key)

    def remove(self, *, recursive: bool = False) -> None:
        """Remove this file (or folder, with ``recursive``); missing is fine."""
        if self.is_local:
            path = self.path
            if path.is_dir() and not path.is_symlink():
                if recursive:
                    shutil.rmtree(path)
                else:
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._key, recursive=recursive)

    # -- Zarr -----------------------------------------------------------------------
    def is_zarr_group(self) -> bool:
        """Whether a Zarr v3 group is here (its :data:`ZARR_METADATA` file exists); says
        nothing about whether it is complete.
        """
        return (self / ZARR_METADATA).exists()

    def zarr_store(self, *, read_only: bool = False) -> Any:
        """A Zarr v3 store object for this folder."""
        import zarr

        if self.is_local:
            return zarr.storage.LocalStore(self.url, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(self.url, storage_options=self.fs_options(), read_only=read_only)

    def open_group(self, mode: str = "r", **kwargs: Any) -> Any:
        """Open the Zarr group here (``mode`` as :func:`zarr.open_group` takes it)."""
        import zarr

        return zarr.open_group(self.zarr_store(read_only=mode == "r"), mode=mode, **kwargs)


def as_location(where: Location | str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Location:
    """``where`` as a :class:`Location` (returned as is if it already is one)."""
    if isinstance(where, Location):
        return where
    return Location(where, storage_options)
