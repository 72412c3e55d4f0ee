"""The GPU path: TensorFlow memory growth on GPU workers, and classification tasks (only
they) requesting the GPU resource, checked where the tasks actually ran.

No GPU is needed: TensorFlow's GPU list is faked where a GPU is involved, and GPU
workers are CPU workers advertising ``GPU=1`` (which is all the scheduler sees). The
one test that needs a real GPU is skipped without one; its CPU fallback runs always.
"""

from __future__ import annotations

import logging
import sys
import types

import pytest
from distributed import Client, Scheduler, SpecCluster, Worker
from distributed.diagnostics.plugin import SchedulerPlugin

from morpheus_core import runtime
from pipeline.classify import tasks as classify
from pipeline.cluster.client import make_client
from pipeline.cluster.info import describe_client, gpu_resources
from pipeline.cluster.local import detect_gpus
from pipeline.errors import InputError
from pipeline.run import run
from pipeline.settings import RunSettings
from tests.pipeline.small_runs import N_TILES, assert_same, done_records, outputs, small_config, write_mosaic

# --- TensorFlow memory growth --------------------------------------------------------------


class _FakeDevice:
    def __init__(self, name):
        self.name = name


def _fake_tensorflow(monkeypatch, *, initialised=()):
    """A `tensorflow` module with two GPUs; those in `initialised` refuse new settings."""
    growth = {}

    def set_memory_growth(device, enable):
        if device.name in initialised:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        growth[device.name] = enable

    experimental = types.SimpleNamespace(
        set_memory_growth=set_memory_growth, get_memory_growth=lambda d: growth.get(d.name, False)
    )
    devices = [_FakeDevice("/physical_device:GPU:0"), _FakeDevice("/physical_device:GPU:1")]
    config = types.SimpleNamespace(
        list_physical_devices=lambda kind: devices if kind == "GPU" else [], experimental=experimental
    )
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))
    return growth


def test_memory_growth_on_every_gpu(monkeypatch):
    growth = _fake_tensorflow(monkeypatch)
    assert runtime.configure_gpu_memory_growth() == ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    assert growth == {"/physical_device:GPU:0": True, "/physical_device:GPU:1": True}


def test_memory_growth_after_initialisation_is_reported(monkeypatch, caplog):
    growth = _fake_tensorflow(monkeypatch, initialised={"/physical_device:GPU:1"})
    with caplog.at_level(logging.WARNING, logger="morpheus_core.runtime"):
        assert runtime.configure_gpu_memory_growth() == ["/physical_device:GPU:0"]
    assert growth == {"/physical_device:GPU:0": True}
    assert "GPU:1 already initialised without memory growth" in caplog.text


def test_memory_growth_without_gpu_is_a_no_op():
    """CPU fallback of the real-GPU test below: the real TensorFlow, no GPU visible."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: covered by test_real_gpu_worker")
    assert runtime.configure_gpu_memory_growth() == []


def test_classifier_loading_sets_memory_growth_before_building_the_model(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "configure_gpu_memory_growth", lambda: calls.append("growth") or [])
    monkeypatch.setattr(runtime, "configure_threads", lambda n: calls.append(f"threads={n}") or {})
    import morpheus_core.classifier as classifier_module
    import morpheus_core.weights as weights

    monkeypatch.setattr(weights, "load_model", lambda *a, **k: calls.append("model") or object())
    monkeypatch.setattr(classifier_module, "KerasWindowClassifier", lambda m, border: ("classifier", m, border))
    monkeypatch.setattr(classify, "_CACHE", {})
    config = RunSettings(threads_per_worker=3, model="fake.weights.h5")
    assert classify.load_classifier(config)[0] == "classifier"
    assert calls == ["growth", "threads=3", "model"]
    classify.load_classifier(config)  # cached: loaded once per process
    assert calls == ["growth", "threads=3", "model"]


# --- where tasks run ---------------------------------------------------------------------------


class RecordPlacement(SchedulerPlugin):
    """Records, for every task that starts processing, its resource restrictions and worker."""

    name = "record-placement"

    def __init__(self):
        self.placed = {}

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "processing":
            ts = self.scheduler.tasks[key]
            self.placed[str(key)] = (dict(ts.resource_restrictions or {}), ts.processing_on.name)


@pytest.fixture
def mixed_cluster():
    """One worker advertising GPU=1, one plain CPU worker (in-process, one thread each)."""
    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"dashboard_address": None, "host": "127.0.0.1"}},
        workers={
            "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
            "cpu": {"cls": Worker, "options": {"nthreads": 1}},
        },
    )
    with cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    return write_mosaic(tmp_path_factory.mktemp("mosaic"))


def test_only_classification_requests_the_gpu(mixed_cluster, mosaic, tmp_path):
    client = mixed_cluster
    info = describe_client(client, what="client given")
    assert info.gpu and gpu_resources(info) == {"GPU": 1} and "1 of 2 worker(s)" in info.reason
    client.register_plugin(RecordPlacement())
    summary = run(small_config(tmp_path / "run", mosaic), client=client, echo=lambda s: None)
    assert not summary.failed
    placed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["record-placement"].placed)
    tiles = {k: v for k, v in placed.items() if k.startswith("tile-")}
    others = {k: v for k, v in placed.items() if not k.startswith("tile-")}
    assert len(tiles) == N_TILES
    assert all(v == ({"GPU": 1}, "gpu") for v in tiles.values()), tiles
    merges = [k for k in others if k.startswith("merge_chunk-")]
    assert len(merges) == N_TILES  # one per output chunk, and none restricted
    assert all(restrictions == {} for restrictions, _ in others.values()), others
    assert {worker for _, worker in others.values()} == {"gpu", "cpu"}  # CPU worker took part
    # The ledger says the same: every tile was classified on the GPU worker.
    gpu_address = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "gpu")
    assert {r["worker"] for r in done_records(summary.run_dir).values()} == {gpu_address}


def test_gpu_never_leaves_tasks_unrestricted(mixed_cluster, mosaic, tmp_path):
    client = mixed_cluster
    client.register_plugin(RecordPlacement())
    summary = run(small_config(tmp_path / "run", mosaic, gpu="never"), client=client, echo=lambda s: None)
    placed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["record-placement"].placed)
    assert all(restrictions == {} for restrictions, _ in placed.values())
    assert len(done_records(summary.run_dir)) == N_TILES


def test_require_gpu_on_a_cpu_only_client(mosaic, tmp_path):
    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
        workers={"cpu": {"cls": Worker, "options": {"nthreads": 1}}},
    )
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1)
        with pytest.raises(InputError, match="GPU is required.*none of 1 worker"):
            run(small_config(tmp_path / "run", mosaic, gpu="require"), client=client, echo=lambda s: None)


def test_waiting_for_a_gpu_worker(tmp_path):
    """An external cluster whose GPU worker connects late is waited for (--wait-workers)."""
    import threading

    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"dashboard_address": None, "host": "127.0.0.1"}}, workers={}
    )
    with cluster:
        timer = threading.Timer(1.5, lambda: cluster.scale(1))
        cluster.new_spec = {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}}
        timer.start()
        client, info = make_client(scheduler=cluster.scheduler_address, gpu="require", wait_workers=60)
        with client:
            assert info.gpu and info.n_workers == 1
        timer.join()


# --- a real GPU, when there is one ---------------------------------------------------------------


def _real_gpu() -> bool:
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        return False
    return detect_gpus()[0] > 0


@pytest.mark.slow
@pytest.mark.skipif(
    not _real_gpu(),
    reason="needs an NVIDIA GPU and dask-cuda (CPU fallback: test_cluster.py::test_local_cluster_without_gpu)",
)
def test_real_gpu_worker(mosaic, tmp_path):  # pragma: no cover - no GPU in CI
    client, info = make_client(n_workers=1)
    try:
        assert info.kind == "local-cuda" and info.gpu
        summary = run(small_config(tmp_path / "run", mosaic), client=client, echo=lambda s: None)

        def growth():
            import tensorflow as tf

            return [tf.config.experimental.get_memory_growth(d) for d in tf.config.list_physical_devices("GPU")]

        assert all(client.run(growth).popitem()[1])
        reference = outputs(run(small_config(tmp_path / "cpu", mosaic, gpu="never"), echo=lambda s: None).run_dir)
        assert_same(outputs(summary.run_dir), reference)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
