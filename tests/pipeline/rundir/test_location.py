"""Tests for pipeline.rundir.location (Location on local paths and fsspec URLs) and the ledger on it.

URL locations are exercised with fsspec's in-process ``memory://`` file system, which
follows the same code paths as ``s3://`` (the S3 run itself is in ``test_s3.py``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest

from morpheus_core.stats import WindowStats
from pipeline.errors import InputError
from pipeline.rundir.credentials import check_storage_options
from pipeline.rundir.ledger import Ledger
from pipeline.rundir.location import Location, as_location, is_url, run_dir_value
from pipeline.settings import RunSettings


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path) -> Location:
    """An empty folder: a local path, or a fresh prefix of the in-memory file system."""
    if request.param == "local":
        yield Location(tmp_path / "run")
        return
    location = Location(f"memory://bucket-{uuid.uuid4().hex[:8]}/run")
    yield location
    location.remove(recursive=True)


def test_is_url_and_run_dir_value():
    assert is_url("s3://bucket/run") and is_url("gs://b/r") and is_url("memory://x")
    assert not is_url("runs/demo") and not is_url("file:///tmp/run") and not is_url(Path("s3:/x"))
    assert run_dir_value("s3://bucket/run/") == "s3://bucket/run"
    assert run_dir_value("file:///tmp/run") == Path("/tmp/run")
    assert run_dir_value("runs/demo") == Path("runs/demo")


def test_location_join_name_and_str():
    run = Location("s3://survey/goods-s", {"endpoint_url": "http://127.0.0.1:9000"})
    leaf = run / "ledger" / "t0000_0001.done"
    assert str(leaf) == "s3://survey/goods-s/ledger/t0000_0001.done"
    assert leaf.name == "t0000_0001.done"
    assert leaf.storage_options == {"endpoint_url": "http://127.0.0.1:9000"}  # inherited
    assert not leaf.is_local
    with pytest.raises(ValueError, match="not on a local file system"):
        leaf.path
    local = Location("runs/demo") / "ledger"
    assert local.is_local and local.path == Path("runs/demo/ledger").absolute()


def test_location_pickles_without_its_file_system(root):
    (root / "a.txt").write_bytes(b"x")  # opens the file system
    copy = pickle.loads(pickle.dumps(root / "a.txt"))
    assert copy == root / "a.txt"
    assert copy.read_bytes() == b"x"


def test_write_read_list_remove(root):
    (root / "ledger" / "t1.done").write_json({"windows": 3})
    (root / "ledger" / "t2.done").write_bytes(b'{"windows": 4}')
    (root / "ledger" / "executions" / "t1.abc").write_bytes(b"{}")
    assert (root / "ledger" / "t1.done").read_json() == {"windows": 3}
    assert (root / "ledger").listdir() == ["executions", "t1.done", "t2.done"]
    assert (root / "nothing").listdir() == []
    assert (root / "ledger").read_many(["t1.done", "t2.done", "t3.done"]) == {
        "t1.done": b'{\n  "windows": 3\n}',
        "t2.done": b'{"windows": 4}',
    }
    (root / "ledger" / "t2.done").remove()
    (root / "ledger" / "t2.done").remove()  # missing is fine
    assert not (root / "ledger" / "t2.done").exists()
    (root / "ledger").remove(recursive=True)
    assert not (root / "ledger" / "t1.done").exists()


def test_write_replaces_content(root):
    target = root / "manifest.json"
    target.write_json({"a": 1})
    target.write_json({"a": 2})
    assert target.read_json() == {"a": 2}


def test_failed_atomic_write_leaves_nothing(root):
    target = root / "partials" / "t.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with target.open_atomic() as fh:
            fh.write(b"half-writ")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert (root / "partials").listdir() == ["t.npz"]  # no temporary file left behind


def test_upload(root, tmp_path):
    source = tmp_path / "n.fits"
    source.write_bytes(b"SIMPLE  =" + bytes(range(256)) * 10)
    (root / "fits" / "n.fits").upload(source)
    assert (root / "fits" / "n.fits").read_bytes() == source.read_bytes()


def test_zarr_group_round_trip(root):
    group = (root / "x.zarr").open_group(mode="w", zarr_format=3, attributes={"k": 1})
    array = group.create_array("a", shape=(6, 7), chunks=(3, 3), dtype="float32")
    array[:] = np.arange(42, dtype=np.float32).reshape(6, 7)
    again = (root / "x.zarr").open_group(mode="r")
    assert again.attrs["k"] == 1
    np.testing.assert_array_equal(again["a"][2:5, 1:3], np.arange(42).reshape(6, 7)[2:5, 1:3])


def test_secrets_are_refused_in_settings():
    assert check_storage_options({"endpoint_url": "http://x", "anon": False}) == {
        "endpoint_url": "http://x",
        "anon": False,
    }
    for name in ("key", "secret", "token", "aws_secret_access_key", "account_key", "password"):
        with pytest.raises(ValueError, match=f"{name}.*environment"):
            check_storage_options({name: "hunter2"})
    with pytest.raises(ValueError, match="secret"):
        RunSettings(run_dir="s3://b/r", storage_options={"secret": "x"})


@pytest.mark.parametrize(
    "options, where",
    [
        ({"client_kwargs": {"aws_secret_access_key": "hunter2"}}, "client_kwargs.aws_secret_access_key"),
        ({"endpoint_url": "https://alice:hunter2@minio.example:9000"}, "endpoint_url"),
        ({"headers": {"Authorization": "Bearer hunter2"}}, "headers.Authorization"),
        ({"config_kwargs": {"token": "hunter2"}}, "config_kwargs.token"),
        ({"client_kwargs": {"extra": [{"api_key": "hunter2"}]}}, "client_kwargs.extra[0].api_key"),
    ],
)
def test_nested_secrets_are_refused_and_never_echoed(options, where):
    # Regression: only top-level names were once screened, so these reached manifest.json.
    with pytest.raises(ValueError, match="environment") as info:
        RunSettings(run_dir="s3://b/r", storage_options=options)
    assert where in str(info.value) and "hunter2" not in str(info.value)


_PRESIGNED = (
    "https://survey.s3.amazonaws.com/run?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
    "&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=hunter2"
)


@pytest.mark.parametrize(
    "options, where",
    [
        # names that used to pass: separators other than "_", and missing words
        ({"headers": {"X-Api-Key": "hunter2"}}, "headers.X-Api-Key"),
        ({"client_kwargs": {"headers": {"X-Auth": "hunter2"}}}, "client_kwargs.headers.X-Auth"),
        ({"connection_string": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=hunter2"}, "connection_string"),
        ({"passphrase": "hunter2"}, "passphrase"),
        ({"pkey": "hunter2"}, "pkey"),
        ({"client_kwargs": {"aws_access_key_id": "AKIAhunter2"}}, "client_kwargs.aws_access_key_id"),
        # credentials in values, whatever the option's name, in dicts and lists
        ({"headers": [["Authorization", "Bearer hunter2"]]}, "headers[0] (Authorization)"),
        ({"headers": [["X-Forwarded", "Bearer hunter2"]]}, "headers[0][1]"),
        ({"headers": ["X-Auth: hunter2"]}, "headers[0] (X-Auth)"),
        (
            {"client_kwargs": {"conn": "BlobEndpoint=https://a.blob.core.windows.net;AccountKey=hunter2"}},
            "client_kwargs.conn",
        ),
        ({"endpoint_url": _PRESIGNED}, "endpoint_url"),
        (
            {"config_kwargs": {"urls": ["https://a.blob.core.windows.net/c?sv=2022-11-02&sr=c&sig=hunter2"]}},
            "config_kwargs.urls[0]",
        ),
        ({"extra": {"conn": "SharedAccessSignature sr=a&se=1&skn=b&hunter2"}}, "extra.conn"),
        ({"extra": {"sas_value": "x"}, "proxy": {"list": ["http://alice:hunter2@proxy:3128"]}}, "proxy.list[0]"),
    ],
)
def test_credentials_in_names_and_values_are_refused_at_any_depth(options, where):
    # Each of these reached manifest.json: names with "-", words the screen lacked, and
    # credentials in values (a list of header pairs, a connection string, signed URLs).
    with pytest.raises(InputError, match="environment") as info:
        RunSettings(run_dir="s3://b/r", storage_options=options)
    assert where in str(info.value) and "hunter2" not in str(info.value)


def test_harmless_nested_options_are_kept():
    options = {
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": False,
        "client_kwargs": {"region_name": "eu-west-1"},
        "config_kwargs": {"retries": {"max_attempts": 5}, "signature_version": "s3v4"},
        "headers": {"User-Agent": "morpheus-survey"},
        "requester_pays": True,
        "default_block_size": 2**22,
    }
    assert check_storage_options(options) == options
    assert RunSettings(run_dir="s3://b/r", storage_options=options).to_json()["storage_options"] == options


def test_a_local_run_directory_records_no_storage_options(tmp_path):
    # A local run directory ignores storage options; they used to be recorded anyway.
    config = RunSettings(run_dir=tmp_path / "run", storage_options={"endpoint_url": "http://127.0.0.1:9000"})
    assert config.storage_options == {} and config.to_json()["storage_options"] == {}
    with pytest.raises(InputError, match="headers.X-Api-Key"):  # credentials are refused all the same
        RunSettings(run_dir=tmp_path / "run", storage_options={"headers": {"X-Api-Key": "hunter2"}})


def test_run_config_keeps_urls_through_json():
    config = RunSettings(
        run_dir="s3://bucket/goods-s/",
        storage_options={"endpoint_url": "http://h:9000"},
        cluster="slurm",
        cluster_config=Path("deploy/hpc/jobqueue.yaml"),
    )
    assert config.run_dir == "s3://bucket/goods-s"
    again = RunSettings.from_json(config.to_json())
    assert again.run_dir == "s3://bucket/goods-s" and again.location == config.location
    assert again.cluster_config == Path("deploy/hpc/jobqueue.yaml").absolute()  # recorded absolute
    local = RunSettings.from_json(RunSettings(run_dir="runs/x").to_json())
    assert local.run_dir == Path("runs/x").absolute() and local.location.is_local
    with pytest.raises(ValueError, match="cluster must be"):
        RunSettings(cluster="lsf")
    with pytest.raises(ValueError, match="not both"):
        RunSettings(cluster="slurm", scheduler="tcp://h:8786")


def _stats(seed: int) -> WindowStats:
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 5, size=(4, 5)).astype(np.int32)
    return WindowStats(
        n, rng.random((5, 4, 5)), rng.random((5, 4, 5)), rng.integers(0, 3, size=(5, 4, 5)).astype(np.int32)
    )


def test_ledger_on_location(root):
    ledger = Ledger(root)
    ledger.record_start("t0000_0000")
    ledger.record_start("t0000_0000")
    ledger.record_start("t0000_0001")
    ledger.save_partial("t0000_0000", _stats(1), {"windows": 10, "worker": "w1"})
    ledger.mark_failed("t0000_0001", "RuntimeError: boom", "Traceback ...")
    assert ledger.finished() == {"t0000_0000"}
    assert ledger.is_finished("t0000_0000") and not ledger.is_finished("t0000_0001")
    assert ledger.executions() == {"t0000_0000": 2, "t0000_0001": 1}
    assert ledger.summary(["t0000_0000", "t0000_0001", "t0000_0002"]) == {
        "finished": ["t0000_0000"],
        "failed": ["t0000_0001"],
        "pending": ["t0000_0002"],
    }
    assert ledger.failed()["t0000_0001"]["error"] == "RuntimeError: boom"
    infos = ledger.done_infos(["t0000_0000", "t0000_0001"])
    assert list(infos) == ["t0000_0000"]
    record = infos["t0000_0000"]
    assert {k: record[k] for k in ("windows", "worker", "tile", "run_id")} == {
        "windows": 10,
        "worker": "w1",
        "tile": "t0000_0000",
        "run_id": "",
    }
    data = (root / "partials" / "t0000_0000.npz").read_bytes()
    assert record["partial"] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    back = ledger.load_partial("t0000_0000")
    expected = _stats(1)
    for field in ("n", "votes"):  # counts exactly; moments as float32 (pipeline.rundir.ledger.compact_partial)
        np.testing.assert_array_equal(getattr(back, field), getattr(expected, field))
    for field in ("mean", "m2"):
        np.testing.assert_array_equal(getattr(back, field), getattr(expected, field).astype(np.float32))
    # A finished tile clears its failure record; clear_failed forgets the others.
    ledger.save_partial("t0000_0001", _stats(2), {"windows": 1})
    assert ledger.failed() == {}
    ledger.mark_failed("t0000_0002", "x", "y")
    assert ledger.clear_failed() == ["t0000_0002"] and ledger.failed() == {}


def test_ledger_verifies_partials_on_any_store(root):
    """Truncated, altered or another run's partials are refused by name."""
    from pipeline.rundir.ledger import PartialError

    ledger = Ledger(root)
    for i, name in enumerate(("t0000_0000", "t0000_0001", "t0000_0002")):
        ledger.save_partial(name, _stats(i), {"windows": 1}, run_id="run-a")
    names = ["t0000_0000", "t0000_0001", "t0000_0002", "t0000_0003"]
    assert ledger.verify(names, run_id="run-a") == ({"t0000_0000", "t0000_0001", "t0000_0002"}, {})
    good = (root / "partials" / "t0000_0000.npz").read_bytes()
    (root / "partials" / "t0000_0000.npz").write_bytes(good[:-7])
    (root / "partials" / "t0000_0001.npz").write_bytes(good)  # t0000_0000's partial under another name
    ok, problems = ledger.verify(names, run_id="run-a")
    assert ok == {"t0000_0002"} and set(problems) == {"t0000_0000", "t0000_0001"}
    assert "truncated" in problems["t0000_0000"] and "t0000_0000.npz" in problems["t0000_0000"]
    with pytest.raises(PartialError, match="t0000_0002.*another run|belongs to run run-a"):
        ledger.load_partial("t0000_0002", run_id="run-b")
    ledger.discard("t0000_0000")
    assert "t0000_0000" not in ledger.finished()


def test_ledger_without_partial_is_not_finished(root):
    """A .done record whose partial statistics are missing does not count."""
    ledger = Ledger(root)
    (root / "ledger" / "t0000_0003.done").write_json({})
    assert ledger.finished() == set() and not ledger.is_finished("t0000_0003")


def test_as_location_accepts_all_forms(tmp_path):
    loc = Location(tmp_path)
    assert as_location(loc) is loc
    assert as_location(tmp_path) == loc
    assert as_location(str(tmp_path)) == loc
    assert as_location(os.fspath(tmp_path) + "/x") == loc / "x"


def test_ingest_into_an_object_store_location(tmp_path):
    """Ingest into a URL: written in place, attributes last; an interrupted store (no
    attributes) is rewritten, a complete one reused, changed inputs refused."""
    from pipeline.errors import InputError
    from pipeline.inputs.grid import validate_bands
    from pipeline.inputs.ingest import ingest
    from tests.pipeline.small_runs import write_mosaic

    toml = write_mosaic(tmp_path / "mosaic")
    bands = validate_bands({b: toml.parent / f"small_{b}.fits" for b in "HJVZ"})
    store = Location(f"memory://ingest-{uuid.uuid4().hex[:8]}/run/mosaic.zarr")
    try:
        # What an ingest killed half-way leaves behind: arrays, no attributes.
        partial = store.open_group(mode="w", zarr_format=3)
        partial.create_array("image", shape=(1, 2, 2), dtype="float32")
        group = ingest(bands, store, chunk=40)
        assert group.attrs["format_version"] == 1 and group["image"].shape == (4, *bands.shape)
        expected = np.stack([np.asarray(fits_data(toml.parent / f"small_{b}.fits")) for b in "HJVZ"])
        np.testing.assert_array_equal(group["image"][:], expected.astype(np.float32))
        # Reused as it is: a marker object left inside survives.
        (store / "marker").write_bytes(b"x")
        ingest(bands, store, chunk=40)
        assert (store / "marker").exists()
        with pytest.raises(InputError, match="--tile 40, not --tile 32"):
            ingest(bands, store, chunk=32)
    finally:
        Location(store.url.rsplit("/run/", 1)[0]).remove(recursive=True)


def fits_data(path):
    from astropy.io import fits

    return fits.getdata(path)


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    import os
    import stat

    from pipeline.rundir.location import atomic_path, file_mode

    final = tmp_path / "sub" / "product.txt"
    final.parent.mkdir()
    with atomic_path(final) as tmp:
        tmp.write_text("first")
    assert final.read_text() == "first" and stat.S_IMODE(final.stat().st_mode) == file_mode()
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert final.read_text() == "first" and os.listdir(final.parent) == ["product.txt"]


def test_staged_store_is_swapped_in_whole_or_not_at_all(tmp_path):
    from pipeline.rundir.staging import staged

    store = Location(tmp_path / "x.zarr")
    with staged(store) as work:
        (work.path / "a").mkdir(parents=True)
        assert not store.path.exists()  # built aside
    assert (store.path / "a").is_dir()
    with pytest.raises(OSError):
        with staged(store) as work:
            (work.path / "b").mkdir(parents=True)
            raise OSError("disk full (injected)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zarr"] and (store.path / "a").is_dir()
    with staged(store) as work:
        (work.path / "c").mkdir(parents=True)
    assert [p.name for p in store.path.iterdir()] == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zarr"]


def test_a_zarr_group_is_known_by_its_metadata_file(root):
    store = root / "classification.zarr"
    assert not store.is_zarr_group()
    (store / "n").makedirs()  # a folder (or prefix) without the group's zarr.json
    (store / "n" / "c" / "0").write_bytes(b"x")
    assert not store.is_zarr_group()
    store.open_group(mode="w", zarr_format=3)
    assert store.is_zarr_group() and not (root / "mosaic.zarr").is_zarr_group()
