"""Opening band files for strip reads, compressed or not, and saying why a path is not one.

Band files are read strip by strip through ``hdu.section`` without a memory map
(:func:`open_band`). Files compressed as a whole (``.fits.gz``, ``.fits.bz2``,
``.fits.xz``, recognised by their first bytes, whatever their name) are decompressed
as astropy does, on the fly, with one difference: astropy seeks back to where it was
after each section read, and a backward seek in a compressed stream restarts the
decompression from the file's start, so reading a band in strips cost one whole
decompression per strip (18-30 s instead of 0.9-1.9 s for a 6000 x 6000 float32
band in 256-row strips, ``benchmarks/compressed_bands.py`` on the shared 2-core
development machine). The file object given to astropy here
postpones seeks to the next read (:class:`_Forward`), so strips read in order
decompress the file once. Memory stays one strip per band, as for an uncompressed
file; each pass over a band (the pixel check, the ingest) decompresses it once.
A ``.zip`` holding one FITS file is extracted by astropy into a temporary file.

A compressed file cannot be checked for truncation from its size: a truncated one is
found when its data are read (:func:`read_error`), which the pixel check does before
anything is written.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import stat
import zlib
from pathlib import Path
from typing import Any

from astropy.io import fits

__all__ = ["COMPRESSION_MAGIC", "compression", "not_a_file", "open_band", "read_error"]


class _Forward:
    """A decompressing reader whose seeks take effect at the next read.

    astropy restores the file position after every section read; done at once, that
    backward seek would restart the decompression. Reads in increasing order then cost
    one pass over the file; a read before the current position still works (the
    stream restarts, as a plain seek would).
    """

    _at = 0  # where the stream is
    _want: int | None = None  # where the next read starts, if elsewhere

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._want = offset
        elif whence == io.SEEK_CUR:
            self._want = self.tell() + offset
        else:
            self._want = None
            self._at = super().seek(offset, whence)  # type: ignore[misc]
            return self._at
        return self._want

    def tell(self) -> int:
        return self._at if self._want is None else self._want

    def _arrive(self) -> None:
        if self._want is not None:
            if self._want != self._at:
                self._at = super().seek(self._want)  # type: ignore[misc]
            self._want = None

    def read(self, size: int = -1) -> bytes:
        self._arrive()
        data = super().read(size)  # type: ignore[misc]
        self._at += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        self._arrive()
        data = super().read1(size)  # type: ignore[misc]
        self._at += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        self._arrive()
        data = super().readline(size)  # type: ignore[misc]
        self._at += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            data = self.read(len(out))
            out[: len(data)] = data
        return len(data)

    def peek(self, size: int = 0) -> bytes:
        self._arrive()
        return super().peek(size)  # type: ignore[misc]


class _Gzip(_Forward, gzip.GzipFile):
    pass


class _Bzip2(_Forward, bz2.BZ2File):
    pass


class _Xz(_Forward, lzma.LZMAFile):
    pass


#: First bytes of files compressed as a whole -> the compression's name.
COMPRESSION_MAGIC: dict[bytes, str] = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}
#: Streams read through :class:`_Forward` (astropy knows their base classes, so it
#: treats the files as compressed); astropy extracts a zip file itself.
_READERS: dict[str, type] = {"gzip": _Gzip, "bzip2": _Bzip2, "xz": _Xz}


def compression(path: Path | str) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"`` or ``"zip"`` for a file compressed as a whole
    (from its first bytes), ``None`` otherwise.
    """
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((name for magic, name in COMPRESSION_MAGIC.items() if head.startswith(magic)), None)


def open_band(path: Path | str) -> fits.HDUList:
    """A band file opened for reading strips through ``hdu.section``.

    Without a memory map: sections then read just their rows from the file, whereas
    through a map every page read stays mapped, and so resident, until the file is
    closed (1.6 GB for four 10^4 x 10^4 float32 bands, ``benchmarks/survey_scale.py``).
    BZERO/BSCALE images are scaled as usual. gzip, bzip2 and xz files are
    decompressed on the fly, strips in order costing one pass (see the module notes).
    """
    reader = _READERS.get(compression(path) or "")
    if reader is None:
        return fits.open(path, mode="readonly", lazy_load_hdus=True, memmap=False)
    stream = reader(os.fspath(path), "rb")
    try:
        return fits.open(stream, mode="readonly", lazy_load_hdus=True, memmap=False)
    except BaseException:
        stream.close()
        raise


def read_error(path: Path | str, exc: BaseException) -> str:
    """Why reading a band's data failed, in words (for messages naming the file)."""
    kind = compression(path) if Path(path).is_file() else None
    if kind and isinstance(exc, (EOFError, zlib.error, lzma.LZMAError, OSError, ValueError, TypeError)):
        return f"the {kind} file is truncated or corrupt ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


def not_a_file(path: Path | str) -> str | None:
    """Why ``path`` is not a readable regular file (``None`` if it is one).

    Tells a symbolic-link loop, a broken link, a folder and a missing path apart, so
    that a message does not call a link loop "missing".
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if path.is_symlink():
            return f"a broken symbolic link (to {os.readlink(path)})"
        if exc.errno == errno.EACCES:
            return "not readable (permission denied)"
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None
