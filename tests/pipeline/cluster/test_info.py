"""pipeline.cluster.info and owned_client: the one GPU-mode decision, and a command's client
opened and closed in one place."""

from __future__ import annotations

import pytest

from pipeline.cluster import client as cluster_mod
from pipeline.cluster.client import owned_client
from pipeline.cluster.info import ClusterInfo, choose_gpu
from pipeline.errors import InputError
from pipeline.settings import RunSettings
from pipeline.settings.run import GPU_MODES


def _probe(found, reason):
    calls = []

    def probe():
        calls.append(1)
        return found, reason

    return probe, calls


def test_never_does_not_look_for_gpus():
    probe, calls = _probe(2, "2 GPU(s) listed by nvidia-smi")
    assert choose_gpu("never", probe) == (None, 'GPUs not requested (gpu="never")')
    assert calls == []


@pytest.mark.parametrize("mode", ["auto", "require"])
def test_gpus_found_are_used(mode):
    probe, calls = _probe(2, "2 GPU(s) listed by nvidia-smi")
    assert choose_gpu(mode, probe) == (2, "2 GPU(s) listed by nvidia-smi")
    assert calls == [1]


def test_auto_without_gpus_falls_back_and_require_refuses_naming_why():
    probe, _ = _probe(0, "none of 3 worker(s) advertises a GPU resource")
    assert choose_gpu("auto", probe) == (None, "none of 3 worker(s) advertises a GPU resource")
    with pytest.raises(InputError) as refused:
        choose_gpu("require", probe, where="scheduler tls://h:8786 given: ", advice="; start GPU workers")
    assert str(refused.value) == (
        "scheduler tls://h:8786 given: a GPU is required (--gpu require) but none of 3 "
        "worker(s) advertises a GPU resource; start GPU workers"
    )


def test_the_modes_are_the_settings_choices():
    probe, _ = _probe(1, "one")
    for mode in GPU_MODES:
        choose_gpu(mode, probe)
    with pytest.raises(InputError, match=r"gpu must be one of \('auto', 'never', 'require'\), got 'always'"):
        choose_gpu("always", probe)


class _FakeClient:
    dashboard_link = "http://127.0.0.1:1/status"


_INFO = ClusterInfo(kind="local", dashboard_link=None, n_workers=1, gpu=False, reason="test", address="tls://x:1")


@pytest.fixture
def started(monkeypatch):
    """make_client and close_client replaced: what owned_client asked for, and what it closed."""
    calls = {"made": [], "closed": []}

    def make(**options):
        calls["made"].append(options)
        return _FakeClient(), _INFO

    monkeypatch.setattr(cluster_mod, "make_client", make)
    monkeypatch.setattr(cluster_mod, "close_client", lambda client: calls["closed"].append(client))
    return calls


def test_an_owned_client_is_started_from_the_settings_and_closed_even_on_error(started):
    config = RunSettings(workers=3, gpu="never", scheduler="tls://h:8786", tls=False)
    lines = []
    with pytest.raises(RuntimeError, match="stage failed"), owned_client(config, echo=lines.append) as (client, info):
        assert info is _INFO and started["closed"] == []
        raise RuntimeError("stage failed")
    (options,) = started["made"]
    assert options["n_workers"] == 3 and options["gpu"] == "never" and options["scheduler"] == "tls://h:8786"
    assert options["tls"] is False and options["threads_per_worker"] == config.threads_per_worker
    assert started["closed"] == [client]
    assert lines == ["cluster: local, 1 workers (test); scheduler tls://x:1"]


def test_keyword_settings_go_to_make_client_as_they_are(started):
    with owned_client({"scheduler": None, "n_workers": 2, "gpu": "never"}) as (client, _):
        pass
    assert started["made"] == [{"scheduler": None, "n_workers": 2, "gpu": "never"}]
    assert started["closed"] == [client]


def test_a_given_client_is_described_and_left_open(started, monkeypatch):
    described = []

    def describe(client, *, gpu, what):
        described.append((client, gpu, what))
        return _INFO

    monkeypatch.setattr(cluster_mod, "describe_client", describe)
    given = _FakeClient()
    with owned_client(RunSettings(gpu="require"), client=given, echo=pytest.fail) as (client, info):
        assert client is given and info is _INFO
    assert described == [(given, "require", "client given")]
    assert started == {"made": [], "closed": []}
