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
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

from pipeline.errors import InputError
from pipeline.layout import RunLayout
from pipeline.storage import Location

__all__ = ["HEARTBEAT_S", "LOCK_NAME", "STALE_S", "run_lock"]

#: The lock file or object in a run directory (:attr:`pipeline.layout.RunLayout.lock`).
LOCK_NAME = ".lock"
#: Seconds between heartbeats of an object-store lock.
HEARTBEAT_S = 30.0
#: An object-store lock whose heartbeat is older than this is stale.
STALE_S = 300.0


def _holder(command: str, token: str) -> dict[str, Any]:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "since": now,
            "heartbeat": now, "token": token}


def _refusal(run_dir: Location, holder: dict[str, Any] | None) -> InputError:
    if not holder:
        who = "another command"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        who = (f"'{holder.get('command', '?')}' (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
               f"since {since})")
    return InputError(f"{run_dir}: in use by {who}; wait for it to finish (one command at a time per run "
                      "directory)")


@contextlib.contextmanager
def run_lock(run_dir: Location, command: str) -> Iterator[None]:
    """Hold the run directory's exclusive lock for the duration of the block.

    Parameters
    ----------
    run_dir : Location
        The run directory (created if missing).
    command : str
        What holds it (shown to a refused command).

    Raises
    ------
    InputError
        The run directory is locked by a live command.
    """
    run_dir.makedirs()
    if run_dir.is_local:
        with _file_lock(run_dir, command):
            yield
    else:
        with _object_lock(run_dir, command):
            yield


@contextlib.contextmanager
def _file_lock(run_dir: Location, command: str) -> Iterator[None]:
    import fcntl

    path = RunLayout(run_dir).lock.path
    fh: IO[str] = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "null")
            except json.JSONDecodeError:
                holder = None
            raise _refusal(run_dir, holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(_holder(command, uuid.uuid4().hex)))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
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
def _object_lock(run_dir: Location, command: str) -> Iterator[None]:
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
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        if (_read(lock) or {}).get("token") == token:
            lock.remove()
