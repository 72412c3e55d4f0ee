"""``python -m pipeline view --export SITE``: the map as a static folder that touches only
what it wrote.

The folder gets::

    index.html                          the page (relative URLs only)
    static/js/..., static/morpheus/...  BokehJS and our script and style sheet
    tiles/<layer>/<z>/<x>/<y>.png       every tile of the pyramid's grid
    .morpheus-export.json               the marker: the files this export wrote

The rule is "touch only what we made". An export writes into a folder that is new,
empty, or holds a previous export (its marker, :data:`MARKER`); any other folder is
refused (:class:`~pipeline.errors.InputError`, exit 2) before the tile pyramid is built
and before anything is written. In a previous export's folder only the files its
marker lists are replaced or removed (then the folders that left empty), so a file the
user added there stays; a path the export would write that holds something the marker
does not list, or a link or file where the export needs a folder, is refused before
anything is removed. Links are never followed out of the folder: the marker's files
are removed by name (a link, not its target), and new files are created, never opened
for writing if something is already there.

The marker is written before the first file (listing what the previous export and
this one write) and again at the end (this export's files, ``complete``), so an
interrupted export is still recognised and cleaned up by the next one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import InputError, RunError
from pipeline.rundir.location import Location
from pipeline.viewer.page import Page
from pipeline.viewer.pyramid import Pyramid

__all__ = ["MARKER", "MARKER_FORMAT", "check_export_site", "export_files", "export_site"]

#: The marker file of an exported folder (its name inside the folder).
MARKER = ".morpheus-export.json"
#: Version of the marker's content.
MARKER_FORMAT = 1
#: The entries an export writes directly in its folder (besides the marker).
_TOP = ("index.html", "static", "tiles")
#: Tiles fetched at once from an object store.
_BATCH = 256


def _refuse(site: Path, problem: str) -> InputError:
    return InputError(
        f"{site}: {problem}; --export writes only into a new or empty folder or one of an earlier "
        f"export (with its {MARKER}): choose one, e.g. {site / 'map'}"
    )


def check_export_site(site: Path | str, viewer: Location | None = None) -> frozenset[str]:
    """Check that ``site`` may receive an export; return the files its previous export wrote.

    Parameters
    ----------
    site : Path or str
        The folder of ``--export``.
    viewer : Location, optional
        The run's ``viewer`` folder (an export inside it is refused: a rebuilt pyramid
        replaces that folder).

    Returns
    -------
    frozenset of str
        Paths relative to ``site`` (``tiles/bands/0/0/0.png``) listed by its marker;
        empty for a new or empty folder.

    Raises
    ------
    InputError
        ``site`` is a file, holds something other than a previous export, its marker is
        not one of ours, or it lies in the run's ``viewer`` folder.
    """
    site = Path(site).expanduser()
    if viewer is not None and viewer.is_local:
        inside = Path(os.path.realpath(site))
        if inside == Path(os.path.realpath(viewer.path)) or Path(os.path.realpath(viewer.path)) in inside.parents:
            raise _refuse(site, f"inside the run's tile pyramid ({viewer}), which a rebuild replaces")
    if not os.path.lexists(site):
        return frozenset()
    if not site.is_dir():
        raise _refuse(site, "not a folder")
    entries = os.listdir(site)
    if not entries:
        return frozenset()
    marker = site / MARKER
    if MARKER not in entries:
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise _refuse(site, f"holds files that no map export wrote ({shown})")
    try:
        if marker.is_symlink() or not marker.is_file():
            raise ValueError("not a plain file")
        record = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != MARKER_FORMAT:
            raise ValueError(f"format {record.get('format') if isinstance(record, dict) else None!r}")
        files = record.get("files")
        if not isinstance(files, list) or not all(isinstance(f, str) and _is_ours(f) for f in files):
            raise ValueError("its file list names paths an export does not write")
    except (OSError, ValueError) as exc:
        raise _refuse(site, f"{MARKER} is not the marker of a map export ({exc})") from exc
    return frozenset(files)


def _is_ours(relative: str) -> bool:
    """Whether ``relative`` is a path an export writes (no ``..``, no absolute path, one of :data:`_TOP`)."""
    parts = PurePosixPath(relative).parts
    return (
        bool(parts)
        and "\\" not in relative
        and not relative.startswith("/")
        and parts[0] in _TOP
        and all(p not in ("", ".", "..") for p in parts)
        and (parts[0] == "index.html") == (len(parts) == 1)
    )


def export_files(pyramid: Pyramid, page: Page) -> dict[str, Any]:
    """What an export writes: relative path -> ``bytes``, a local source file or a tile's :class:`Location`.

    Every tile of the pyramid's grid (:meth:`Grid.tile_counts <pipeline.viewer.pyramid.Grid.tile_counts>`
    of each level) of each layer, the page's static files and ``index.html``.
    """
    files: dict[str, Any] = {"index.html": page.html.encode("utf-8")}
    files.update(page.static)
    tiles = pyramid.tiles_location
    for layer in pyramid.layers:
        for z in range(pyramid.grid.max_level + 1):
            rows, cols = pyramid.grid.tile_counts(z)
            for x in range(cols):
                for y in range(rows):
                    name = f"{layer}/{z}/{x}/{y}.png"
                    files[f"tiles/{name}"] = tiles / name
    return files


def export_site(pyramid: Pyramid, page: Page, site: Path | str) -> Path:
    """Write the map as a static folder: ``index.html``, ``static/``, ``tiles/`` and the marker.

    Parameters
    ----------
    pyramid : Pyramid
        The run's tile pyramid (its tiles are copied).
    page : Page
        The rendered page.
    site : Path or str
        A new or empty folder, or one of a previous export (:func:`check_export_site`):
        the previous export's files are replaced or removed, nothing else is touched.

    Returns
    -------
    pathlib.Path
        ``site / "index.html"``.

    Raises
    ------
    InputError
        ``site`` is not such a folder, or something the export did not write is in the
        way of a file it writes.
    RunError
        A tile of the pyramid is missing (rebuild it with ``--rebuild``).
    """
    site = Path(site).expanduser()
    previous = check_export_site(site, pyramid.location)
    files = export_files(pyramid, page)
    _check_paths(site, files, previous)
    site.mkdir(parents=True, exist_ok=True)
    _write_marker(site, sorted(previous | set(files)), pyramid, page, complete=False)
    stale = previous - set(files)
    for relative in sorted(previous & set(files)) + sorted(stale):
        target = site / relative
        if not target.is_dir() or target.is_symlink():  # a folder of the user's where we wrote a file stays
            target.unlink(missing_ok=True)  # by name: a link goes, not its target
    _prune(site, stale)
    made: set[Path] = set()
    local = {k: v for k, v in files.items() if not isinstance(v, Location) or v.is_local}
    for relative, source in local.items():
        if isinstance(source, bytes):
            _create(site, relative, source, made)
        else:
            path = source.path if isinstance(source, Location) else source
            try:
                with open(path, "rb") as handle:
                    _create(site, relative, handle, made)
            except FileNotFoundError as exc:
                raise RunError(f"{path}: missing from the tile pyramid; rebuild it with --rebuild") from exc
    remote = [k for k in files if k not in local]
    for start in range(0, len(remote), _BATCH):
        batch = remote[start : start + _BATCH]
        folder = pyramid.tiles_location
        got = folder.read_many([k.removeprefix("tiles/") for k in batch])
        for relative in batch:
            data = got.get(relative.removeprefix("tiles/"))
            if data is None:
                raise RunError(f"{files[relative]}: missing from the tile pyramid; rebuild it with --rebuild")
            _create(site, relative, data, made)
    _write_marker(site, sorted(files), pyramid, page, complete=True)
    return site / "index.html"


def _check_paths(site: Path, files: dict[str, Any], previous: frozenset[str]) -> None:
    """Refuse before anything is removed when something not ours is in the way of a file we write, or
    a folder on the way to a file we write or remove is a link (or a file).
    """
    in_the_way: list[str] = []
    folders: set[PurePosixPath] = set()
    for relative in previous:  # the previous export's files are removed through these folders
        folders.update(PurePosixPath(relative).parents)
    for relative in files:
        folders.update(PurePosixPath(relative).parents)
        target = site / relative
        if os.path.lexists(target) and (relative not in previous or target.is_dir() and not target.is_symlink()):
            in_the_way.append(relative)
    for folder in sorted(folders - {PurePosixPath(".")}):
        path = site / folder
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            in_the_way.append(f"{folder} (a {'link' if path.is_symlink() else 'file'}, not a folder)")
    if in_the_way:
        shown = ", ".join(in_the_way[:3]) + (f" and {len(in_the_way) - 3} more" if len(in_the_way) > 3 else "")
        raise InputError(
            f"{site}: the export would write where files it did not write are: {shown}; move them "
            f"away or export into a new folder"
        )


def _create(site: Path, relative: str, content: Any, made: set[Path]) -> None:
    """Create ``site / relative`` (never opening something already there)."""
    target = site / relative
    if target.parent not in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        made.add(target.parent)
    with open(target, "xb") as out:
        if isinstance(content, bytes):
            out.write(content)
        else:
            shutil.copyfileobj(content, out, 1 << 20)


def _prune(site: Path, removed: set[str]) -> None:
    """Remove the folders that the removed files leave empty (deepest first; never ``site``)."""
    folders = {p for r in removed for p in PurePosixPath(r).parents if p != PurePosixPath(".")}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        path = site / folder
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError:  # not empty: something of the user's is in it
                pass


def _write_marker(site: Path, files: list[str], pyramid: Pyramid, page: Page, *, complete: bool) -> None:
    record = {
        "format": MARKER_FORMAT,
        "what": "map of a run (python -m pipeline view --export)",
        "pyramid": pyramid.fingerprint,
        "objects": page.objects,
        "complete": complete,
        "files": files,
    }
    marker = Location(site / MARKER)
    marker.write_bytes(json.dumps(record, indent=0).encode())
