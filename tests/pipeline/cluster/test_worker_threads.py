"""Several tiles classified at once in one worker process (a Dask worker with several
threads: ``--threads-per-worker``, dask-jobqueue ``cores``, ``dask worker --nthreads``)
give the same statistics as one at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from distributed import Client, LocalCluster

from morpheus_core.engine import classify_image
from morpheus_core.simulate import render_sky
from morpheus_core.testing import StandInClassifier
from pipeline.run import run
from tests.pipeline.small_runs import assert_same, outputs, small_config, write_mosaic


def _stats(image):
    s = classify_image(image, StandInClassifier(), batch_size=64)
    return s.n, s.mean, s.m2, s.votes


def test_concurrent_classify_image_calls_do_not_mix():
    images = [render_sky((70, 90), seed=seed, n_galaxies=3, n_stars=1).images.astype(np.float32) for seed in range(4)]
    sequential = [_stats(image) for image in images]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(_stats, images * 3))
    for i, result in enumerate(concurrent):
        for got, expected in zip(result, sequential[i % 4]):
            np.testing.assert_array_equal(got, expected)


def test_multithreaded_worker_equals_single_threaded(tmp_path):
    toml = write_mosaic(tmp_path / "mosaic")
    results = {}
    for threads in (1, 3):
        with (
            LocalCluster(n_workers=1, threads_per_worker=threads, processes=False, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            summary = run(small_config(tmp_path / f"threads{threads}", toml), client=client, echo=lambda s: None)
        results[threads] = outputs(summary.run_dir)
    assert_same(results[3], results[1])
