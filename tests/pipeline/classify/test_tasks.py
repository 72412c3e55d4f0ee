"""pipeline.classify.tasks: which tiles a merge task reads, and the windows a tile task
reports while it runs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from morpheus_core.engine import classify_image
from morpheus_core.testing import StandInClassifier
from morpheus_core.tiling import Box, plan_tiles
from pipeline.classify.progress import PROGRESS_TOPIC, WindowProgress
from pipeline.classify.tasks import overlapping


def test_overlapping_tiles_are_those_whose_read_region_meets_the_chunk():
    tiles = plan_tiles((100, 90), 32, window=8)  # halo 7 below and to the right
    for target in tiles:
        found = overlapping(tiles, target.core_box)
        brute = [
            t
            for t in tiles
            if any(
                t.read[0] <= y < t.read[1] and t.read[2] <= x < t.read[3]
                for y in range(target.core[0], target.core[1])
                for x in range(target.core[2], target.core[3])
            )
        ]
        assert found == brute and target in found
        assert overlapping(tiles, target.core) == found  # a plain (y0, y1, x0, x1) too
    # the tile up and to the left reaches into a core through its halo; the one below does not
    corner = overlapping(tiles, Box(32, 64, 32, 64))
    assert [t.index for t in corner] == [(0, 0), (0, 1), (1, 0), (1, 1)]


class _SlowStandIn(StandInClassifier):
    """The stand-in network, 0.25 s per call: a tile of several batches takes seconds."""

    def __call__(self, windows):
        time.sleep(0.25)
        return super().__call__(windows)


def _slow_tile(planned_check: int) -> int:
    """A tile task: the engine on a small image, reporting its windows as it goes."""
    from distributed import get_worker

    image = np.random.default_rng(1).normal(size=(4, 60, 60)).astype(np.float32)
    progress = WindowProgress("t0000_0000", get_worker(), interval=0.0)
    classify_image(image, _SlowStandIn(), stride=3, batch_size=8, progress=progress)
    assert progress.total == planned_check
    return progress.total


def test_progress_reaches_the_driver_during_a_tile():
    """Windows evaluated inside a running task move the driver's bar (a Dask event)."""
    from distributed import Client, LocalCluster

    from pipeline.classify.progress import WindowsBar

    tile = plan_tiles((60, 60), 60, window=40, stride=3)[0]
    planned = tile.n_windows(40, 3)
    assert planned == len(range(0, 21, 3)) ** 2  # anchors 0..20 on each axis, every third
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        bar = WindowsBar({"t0000_0000": planned}, show=False)
        client.subscribe_topic(PROGRESS_TOPIC, bar.event)
        future = client.submit(_slow_tile, planned, pure=False)
        seen_while_running = []
        deadline = time.monotonic() + 60
        while not future.done() and time.monotonic() < deadline:
            if 0 < bar.n < planned:
                seen_while_running.append(bar.n)
            time.sleep(0.05)
        assert future.result() == planned
        assert seen_while_running, "no progress arrived while the tile was running"
        assert bar.events >= 2
        bar.tile_done("t0000_0000")
        assert bar.n == planned  # brought to the plan when the tile ends, never beyond
        bar.tile_done("t0000_0000")
        assert bar.n == planned


def _job(tmp_path):
    from dataclasses import replace

    from morpheus_core.cards import RELEASED_CARD
    from pipeline.classify.job import ClassificationJob
    from pipeline.settings import RunSettings

    config = RunSettings(model=str(tmp_path / "fake.weights.h5"), run_dir=tmp_path / "run", threads_per_worker=2)
    card = replace(RELEASED_CARD, name="the card the command read")
    return ClassificationJob.start(config, config.location, "run-1", card)


def test_a_job_travels_to_the_workers_whole(tmp_path):
    import pickle

    job = _job(tmp_path)
    back = pickle.loads(pickle.dumps(job))
    assert (back.config, back.run_dir, back.run_id, back.card) == (job.config, job.run_dir, job.run_id, job.card)
    assert back.layout == job.layout and back.ledger.root == job.run_dir
    assert (tmp_path / "run" / "ledger" / "executions").is_dir()  # made once, by the driver


def test_workers_load_the_network_with_the_jobs_card_without_reading_it_again(tmp_path, monkeypatch):
    import morpheus_core.classifier as classifier
    import morpheus_core.runtime as runtime
    import morpheus_core.weights as weights_module
    import pipeline.classify.tasks as tasks
    import pipeline.inputs.model_cards as model_cards

    loaded = []
    monkeypatch.setattr(runtime, "configure_gpu_memory_growth", lambda: [])
    monkeypatch.setattr(runtime, "configure_threads", lambda n: {})
    monkeypatch.setattr(
        weights_module, "load_model", lambda weights, **kw: loaded.append((weights, kw["card"])) or "net"
    )
    monkeypatch.setattr(classifier, "KerasWindowClassifier", lambda m, border: ("classifier", m, border))
    monkeypatch.setattr(model_cards, "card_for", pytest.fail)  # the weights file's card is not read again
    monkeypatch.setattr(tasks, "_CACHE", {})
    job = _job(tmp_path)
    tasks.ClassifierPlugin(job).setup(worker=None)
    assert loaded == [(job.config.weights, job.card)]
    assert tasks.load_classifier(job.config, job.card) == ("classifier", "net", job.config.border)
    assert len(loaded) == 1  # once per process
