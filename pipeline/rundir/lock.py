"""One writer per run directory: an exclusive lock taken by ``run``, ``resubmit``,
``segment`` and ``catalog``.

- On a file system: an OS file lock (``fcntl.flock``) on ``<run>/.lock``. The OS
  releases it when the holding process ends, however it ends, so the lock of a killed
  command is taken over at once. The file also holds the holder's host, pid, command
  and start time, which a refused command prints.
- In an object store (no OS locks): a lock object ``<run>/.lock`` with the same
  fields, a random token and a heartbeat time refreshed every :data:`HEARTBEAT_S`
  seconds by a daemon thread. It is taken over when its heartbeat is older than
  :data:`STALE_S` (the holder died without removing it) or when its holder ran on
  this host with a pid that no longer exists. Object stores have no atomic
  create-if-absent here, so two commands starting within the same second could both
  write the object; each re-reads it after writing and the loser backs off.

A second command on a locked run directory exits 2 with a message naming the holder.

People delete "stale" lock files. The lock therefore holds by inode, not by name: on a
file system the lock taken is that of the file found at ``<run>/.lock`` *after* the
``flock`` (a file removed or replaced between the open and the ``flock`` is let go and
the new one locked), and the run directory itself is locked too (``flock`` on the
folder, where the file system allows it, as local ones do), so a second command finds
the run in use even when ``.lock`` was deleted under the first. The holder checks its
lock between stages (:meth:`HeldLock.check`): a lock file removed or replaced (or, in
an object store, a lock object now holding another token) stops it with a
:class:`~pipeline.errors.RunError` rather than letting two writers work on one run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

from pipeline.errors import InputError, RunError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location

__all__ = ["HEARTBEAT_S", "STALE_S", "HeldLock", "run_lock"]

#: Seconds between heartbeats of an object-store lock.
HEARTBEAT_S = 30.0
#: An object-store lock whose heartbeat is older than this is stale.
STALE_S = 300.0
#: Tries to lock the file at the lock's path while it keeps being replaced.
_ATTEMPTS = 5


class HeldLock:
    """The run directory's lock while a command holds it (what :func:`run_lock` yields).

    Parameters
    ----------
    run_dir : Location
        The run directory.
    still_held : callable
        Returns whether the lock is still this command's.
    """

    def __init__(self, run_dir: Location, still_held: Callable[[], bool]) -> None:
        self.run_dir = run_dir
        self._still_held = still_held

    def check(self) -> None:
        """Stop if the lock was lost: its file removed or replaced, or (object store)
        its object taken over.

        Raises
        ------
        RunError
            Naming the run directory; another command may be writing to it.
        """
        if not self._still_held():
            raise RunError(
                f"{self.run_dir}: the lock file {RunLayout(self.run_dir).lock} was removed or replaced while "
                "this command ran, so another command may be writing to this run directory; stopped here "
                "(finished tiles are kept): once no other command runs on it, run the same command again"
            )


def _holder(command: str, token: str) -> dict[str, Any]:
    now = time.time()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "since": now,
        "heartbeat": now,
        "token": token,
    }


def _refusal(run_dir: Location, holder: dict[str, Any] | None, *, note: str = "") -> InputError:
    if not holder:
        who = "another command"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        who = (
            f"'{holder.get('command', '?')}' (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since})"
        )
    return InputError(
        f"{run_dir}: in use by {who}{note}; wait for it to finish (one command at a time per run directory)"
    )


@contextlib.contextmanager
def run_lock(run_dir: Location, command: str) -> Iterator[HeldLock]:
    """Hold the run directory's exclusive lock for the duration of the block.

    Parameters
    ----------
    run_dir : Location
        The run directory (created if missing).
    command : str
        What holds it (shown to a refused command).

    Yields
    ------
    HeldLock
        Its :meth:`~HeldLock.check` stops the holder if the lock was lost.

    Raises
    ------
    InputError
        The run directory is locked by a live command, or cannot be created or
        written (naming the folder and the reason).
    """
    if run_dir.is_local:
        with _file_lock(run_dir, command) as held:
            yield held
    else:
        with _object_lock(run_dir, command) as held:
            yield held


def _cannot(run_dir: Location, what: str, exc: OSError) -> InputError:
    return InputError(f"{run_dir}: cannot {what} ({exc.strerror or exc}); choose another --run-dir")


def _same_file(fh: IO[str], path: Any) -> bool:
    """Whether the open file ``fh`` is still the file at ``path`` (same device and inode)."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fh.fileno())
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _lock_folder(folder: Any) -> int | None:
    """``flock`` the run directory itself; ``None`` where the file system cannot lock a
    folder (NFS locks only files opened for writing).

    Raises
    ------
    BlockingIOError
        Another command holds it.
    """
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP):
            return None
        raise
    return fd


def _read_holder(fh: IO[str]) -> dict[str, Any] | None:
    fh.seek(0)
    try:
        holder = json.loads(fh.read() or "null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


@contextlib.contextmanager
def _file_lock(run_dir: Location, command: str) -> Iterator[HeldLock]:
    import fcntl

    try:
        run_dir.makedirs()
    except OSError as exc:
        raise _cannot(run_dir, "create the run directory", exc) from None
    path = RunLayout(run_dir).lock.path
    for _ in range(_ATTEMPTS):
        try:
            fh: IO[str] = open(path, "a+", encoding="utf-8")
        except OSError as exc:
            raise _cannot(run_dir, "write in the run directory", exc) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fh)
            fh.close()
            raise _refusal(run_dir, holder) from None
        except BaseException:
            fh.close()
            raise
        if _same_file(fh, path):
            break
        fh.close()  # removed or replaced between the open and the flock: lock the file there now
    else:
        raise _refusal(run_dir, None, note=f" (its lock file {path} keeps being replaced)")
    try:
        try:
            folder = _lock_folder(run_dir.path)
        except BlockingIOError:
            raise _refusal(run_dir, None, note=f" (its lock file {path} was removed while it ran)") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(_holder(command, uuid.uuid4().hex)))
            fh.flush()
            yield HeldLock(run_dir, lambda: _same_file(fh, path))
        finally:
            if _same_file(fh, path):
                fh.seek(0)
                fh.truncate()
                fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            if folder is not None:
                os.close(folder)  # releases the folder's lock
    finally:
        fh.close()


def _alive_here(holder: dict[str, Any]) -> bool:
    """Whether the holder runs on this host with a live pid (unknown elsewhere: True)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def _read(lock: Location) -> dict[str, Any] | None:
    try:
        value = json.loads(lock.read_bytes())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


@contextlib.contextmanager
def _object_lock(run_dir: Location, command: str) -> Iterator[HeldLock]:
    lock = RunLayout(run_dir).lock
    current = _read(lock)
    if current is not None:
        stale = time.time() - float(current.get("heartbeat", 0)) > STALE_S or not _alive_here(current)
        if not stale:
            raise _refusal(run_dir, current)
    token = uuid.uuid4().hex
    mine = _holder(command, token)
    lock.write_json(mine)
    time.sleep(0.2)  # let a concurrent writer's object land, then see who won
    if (_read(lock) or {}).get("token") != token:
        raise _refusal(run_dir, _read(lock))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            if (_read(lock) or {}).get("token") != token:
                return  # taken over (we were presumed dead): stop writing
            lock.write_json({**mine, "heartbeat": time.time()})

    thread = threading.Thread(target=beat, name="run-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield HeldLock(run_dir, lambda: (_read(lock) or {}).get("token") == token)
    finally:
        stop.set()
        thread.join(timeout=5)
        if (_read(lock) or {}).get("token") == token:
            lock.remove()
