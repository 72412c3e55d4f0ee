"""pipeline.rundir.checksums and pipeline.rundir.verified: the checksums of a finished Zarr store,
recorded once and checked against the files, on a local folder and in an S3 bucket.

The stores are made as a run makes them (:func:`pipeline.classify.tasks.create_output_store`:
Zarr v3, chunk files ``<array>/c/<i>/<j>/...``) with an unobserved corner whose chunks
hold only the fill value, so Zarr writes no file for them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from morpheus_core import CLASSES
from pipeline.classify.tasks import create_output_store
from pipeline.rundir.checksums import chunk_of, list_files, record_store, verify_files
from pipeline.rundir.location import Location
from pipeline.rundir.verified import classification_gaps

SHAPE, CHUNK = (50, 70), 20  # 3 x 4 chunks, the last row and column partial


def _classification(where: Location, seed: int = 0) -> dict[str, np.ndarray]:
    """A classification-like store at ``where``, its last chunk row unobserved (n = 0)."""
    rng = np.random.default_rng(seed)
    create_output_store(where, SHAPE, CHUNK, {"classes": list(CLASSES), "run_id": "r1"})
    n = rng.integers(1, 900, SHAPE).astype(np.int32)
    n[40:] = 0  # chunk row 2 unobserved: no file for its chunks
    mean = rng.dirichlet(np.ones(5), SHAPE).transpose(2, 0, 1).astype(np.float32) * (n > 0)
    data = {"mean": mean, "variance": (0.1 * mean).astype(np.float32), "rank": mean, "n": n}
    group = where.open_group(mode="r+")
    for name, values in data.items():
        group[name][...] = values
    return data


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    return bytes(flipped)


def test_chunk_keys_name_their_array_and_chunk():
    assert chunk_of("mean/c/0/1/2") == ("mean", (0, 1, 2))
    assert chunk_of("n/c/3/4") == ("n", (3, 4))
    assert chunk_of("mean/zarr.json") == ("mean", None)
    assert chunk_of("zarr.json") == ("", None)
    assert chunk_of("sub/group/arr/c/7") == ("sub/group/arr", (7,))


def test_record_lists_every_written_file_with_its_size_and_sha256(tmp_path):
    store = Location(tmp_path / "classification.zarr")
    _classification(store)
    files = record_store(store)
    on_disk = {p.relative_to(store.path).as_posix(): p for p in store.path.rglob("*") if p.is_file()}
    assert set(files) == set(on_disk)  # every chunk and metadata file, nothing else
    for key, (size, digest) in files.items():  # against hashlib on the bytes on disk
        assert size == on_disk[key].stat().st_size
        assert digest == hashlib.sha256(on_disk[key].read_bytes()).hexdigest()
    assert {"zarr.json", "mean/zarr.json", "n/zarr.json"} <= set(files)
    # 3 x 4 chunks per array, the unobserved row (4 chunks) written by none
    assert sorted(k for k in files if k.startswith("n/c/")) == [f"n/c/{i}/{j}" for i in (0, 1) for j in range(4)]
    assert verify_files(store, files).ok


@pytest.mark.parametrize("damage", ["delete", "truncate", "bitflip", "extra"])
def test_a_damaged_file_is_named_by_array_chunk_and_file(tmp_path, damage):
    store = Location(tmp_path / "classification.zarr")
    _classification(store)
    files = record_store(store)
    victim = store.path / ("mean/c/0/2/1" if damage == "extra" else "mean/c/0/1/2")
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-7])
    elif damage == "bitflip":
        victim.write_bytes(_flip(victim.read_bytes()))
    else:  # a chunk of the unobserved row, which has no file in the finished store
        assert not victim.exists()
        victim.parent.mkdir(parents=True, exist_ok=True)
        victim.write_bytes((store.path / "mean/c/0/1/2").read_bytes())
    check = verify_files(store, files)
    assert [p.key for p in check.problems] == [victim.relative_to(store.path).as_posix()]
    problem = check.problems[0]
    assert problem.array == "mean" and problem.chunk == ((0, 2, 1) if damage == "extra" else (0, 1, 2))
    expected = {"delete": "is missing", "truncate": "recorded", "bitflip": "sha256", "extra": "not in the record"}
    assert expected[damage] in str(problem) and str(victim) in str(problem)
    assert "array 'mean' chunk" in check.message()
    # sizes only: one listing finds all but an altered byte
    assert verify_files(store, files, hashes=False).ok == (damage == "bitflip")
    if damage != "bitflip":
        assert verify_files(store, files, hashes=False).bytes_read == 0


def test_an_altered_metadata_file_is_named(tmp_path):
    store = Location(tmp_path / "classification.zarr")
    _classification(store)
    files = record_store(store)
    store.open_group(mode="r+").attrs["complete"] = True  # the group's zarr.json rewritten
    check = verify_files(store, files)
    assert [p.key for p in check.problems] == ["zarr.json"] and "group metadata" in str(check.problems[0])


def test_without_a_record_a_deleted_chunk_is_found_by_its_siblings(tmp_path):
    store = Location(tmp_path / "classification.zarr")
    _classification(store)
    assert classification_gaps(store) == []
    (store.path / "mean/c/0/1/2").unlink()
    (store.path / "n/c/0/3").unlink()
    gaps = classification_gaps(store)
    assert [p.key for p in gaps] == ["mean/c/0/1/2", "n/c/0/3"]
    assert "n has values" in str(gaps[0]) and "mean and rank have values" in str(gaps[1])


def test_record_and_verify_in_an_s3_bucket(tmp_path, monkeypatch):
    """The same store in a bucket (moto's S3 server on 127.0.0.1): one listing finds the
    objects, each is read once; a deleted, truncated or altered object is named."""
    from moto.server import ThreadedMotoServer

    from tests.pipeline.small_runs import free_port

    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIAMORPHEUSTEST",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        options = {"endpoint_url": f"http://127.0.0.1:{port}"}
        Location("s3://checks", options).fs.mkdir("checks")
        store = Location("s3://checks/run/classification.zarr", options)
        _classification(store)
        local = Location(tmp_path / "classification.zarr")
        _classification(local)
        files = record_store(store)
        assert files == record_store(local)  # the same bytes as the same store on disk
        assert list_files(store) == {k: size for k, (size, _) in files.items()}
        assert verify_files(store, files).bytes_read == sum(size for size, _ in files.values())
        (store / "mean/c/0/1/2").remove()
        (store / "rank/c/0/0/1").write_bytes(_flip((store / "rank/c/0/0/1").read_bytes()))
        (store / "n/c/1/1").write_bytes((store / "n/c/1/1").read_bytes()[:10])
        check = verify_files(store, files)
        assert [(p.key, p.chunk) for p in check.problems] == [
            ("mean/c/0/1/2", (0, 1, 2)),
            ("n/c/1/1", (1, 1)),
            ("rank/c/0/0/1", (0, 0, 1)),
        ]
        assert "s3://checks/run/classification.zarr/mean/c/0/1/2 is missing" in str(check.problems[0])
        assert [p.key for p in verify_files(store, files, hashes=False).problems] == ["mean/c/0/1/2", "n/c/1/1"]
    finally:
        server.stop()
