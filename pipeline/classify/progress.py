"""Progress of the classification: workers send the windows they evaluated as Dask
events (:class:`WindowProgress`), the driver draws them as a bar (:class:`WindowsBar`).
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["PROGRESS_TOPIC", "WindowProgress", "WindowsBar"]


class WindowsBar:
    """The classification's progress bar: windows evaluated, with rate and ETA.

    Workers send the windows of the tile they are running every second or so
    (:class:`pipeline.classify.tasks.WindowProgress`, a Dask event); when a tile ends, the
    bar is brought to the tile's planned windows (windows on unusable pixels are
    planned but never evaluated).

    Parameters
    ----------
    planned : dict
        Tile -> windows it owns (:meth:`morpheus_core.tiling.Tile.n_windows`).
    show : bool
        Draw the bar (``tqdm``); without it only the counts are kept.
    """

    def __init__(self, planned: dict[str, int], show: bool = True) -> None:
        import threading

        self.planned = planned
        self.counted: dict[str, int] = {}
        self.events = 0
        self._lock = threading.Lock()  # events arrive on the client's event-loop thread
        self._bar = None
        if show:
            from tqdm import tqdm

            self._bar = tqdm(
                total=sum(planned.values()),
                desc="classifying",
                unit="win",
                unit_scale=True,
                smoothing=0.1,
                mininterval=1.0,
            )

    def _advance(self, name: str, windows: int) -> None:
        with self._lock:
            windows = max(0, min(windows, self.planned.get(name, 0) - self.counted.get(name, 0)))
            self.counted[name] = self.counted.get(name, 0) + windows
            if self._bar is not None and windows:
                self._bar.update(windows)

    def event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker's ``(time, {"tile", "windows"})`` event (a Dask topic handler)."""
        _, msg = event
        self.events += 1
        self._advance(str(msg.get("tile")), int(msg.get("windows", 0)))

    def tile_done(self, name: str) -> None:
        """A tile ended (finished or failed): count the rest of its planned windows."""
        self._advance(name, self.planned.get(name, 0))

    @property
    def n(self) -> int:
        """Windows counted so far."""
        return sum(self.counted.values())

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


#: Dask event topic of the windows evaluated during tile tasks (:class:`WindowProgress`).
PROGRESS_TOPIC = "morpheus-windows"


class WindowProgress:
    """The engine's progress callback in a tile task: counts the windows evaluated and
    sends the count to the client as a Dask event (topic :data:`PROGRESS_TOPIC`,
    message ``{"tile": name, "windows": k}``) at most every ``interval`` seconds, so
    the driver's progress bar moves during a tile.
    """

    def __init__(self, tile: str, worker: Any = None, interval: float = 1.0) -> None:
        self.tile, self.worker, self.interval = tile, worker, interval
        self.total = self._unsent = 0
        self._last = time.monotonic()

    def __call__(self, windows: int) -> None:
        """Count ``windows`` more evaluated windows (called after each batch)."""
        self.total += windows
        self._unsent += windows
        if time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Send the windows counted since the last event."""
        if self.worker is not None and self._unsent:
            self.worker.log_event(PROGRESS_TOPIC, {"tile": self.tile, "windows": self._unsent})
        self._unsent, self._last = 0, time.monotonic()
