"""Fault injection on a finished run directory: nothing lost, nothing trusted blindly (issue #13).

Each case damages or misuses a finished small run (stand-in network) the way a careless
user or a failing disk would, and checks the exit code or error, that the message names
the file or tile, and that finished products are byte-identical afterwards or correctly
recomputed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.ledger import Ledger
from pipeline.run import redo_downstream, resubmit, run, status
from tests.faults import inject
from tests.pipeline.small_runs import assert_same, outputs, run_cli, small_config, write_mosaic


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0")
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> Path:
    return write_mosaic(tmp_path_factory.mktemp("mosaic"))


@pytest.fixture()
def finished(tmp_path, mosaic, client) -> Path:
    """A finished run (classification and downstream products)."""
    summary = run(small_config(tmp_path / "run", mosaic), client=client, echo=lambda *_: None)
    assert not summary.failed
    return summary.run_dir


@pytest.fixture
def unmerged(tmp_path, mosaic, client) -> Path:
    """A run killed after its tiles were classified but before its merge was recorded:
    the partials are there and are what a resumed run merges (a finished run removes
    them, and its merged store is the result)."""
    summary = run(small_config(tmp_path / "run", mosaic, keep_partials=True), client=client, echo=lambda *_: None)
    assert not summary.failed
    (summary.run_dir / "ledger" / "merged.json").unlink()
    return summary.run_dir


def _snapshot(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every file in the run directory (logs excluded)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.suffix != ".log"}


def _same_size_tiles(run_dir: Path) -> tuple[str, str]:
    """Two tiles whose partials have the same shape (interior tiles)."""
    by_shape: dict[tuple, list[str]] = {}
    for path in sorted((run_dir / "partials").glob("*.npz")):
        with np.load(path) as data:
            by_shape.setdefault(data["n"].shape, []).append(path.stem)
    pairs = [names for names in by_shape.values() if len(names) >= 2]
    assert pairs, "the plan must hold two tiles of the same shape"
    return pairs[0][0], pairs[0][1]


def _executions(run_dir: Path) -> dict[str, int]:
    return Ledger(run_dir).executions()


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "swap", "delete"])
def test_bad_partial_is_named_counts_as_pending_and_resubmit_recomputes_only_it(
        unmerged, client, damage):
    reference = outputs(unmerged)
    victim, other = _same_size_tiles(unmerged)
    path = unmerged / "partials" / f"{victim}.npz"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "bitflip":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(flipped))
    elif damage == "swap":  # another tile's partial of the same shape: used to merge silently
        path.write_bytes((unmerged / "partials" / f"{other}.npz").read_bytes())
    else:
        path.unlink()

    report = status(unmerged)
    assert victim in report["states"]["pending"] and victim not in report["states"]["finished"]
    if damage != "delete":
        assert victim in report["corrupt"] and str(path.name) in report["corrupt"][victim]

    before = _executions(unmerged)
    lines: list[str] = []
    summary = resubmit(unmerged, client=client, echo=lines.append)
    assert not summary.failed and summary.executed == 1
    after = _executions(unmerged)
    assert {name for name in after if after[name] != before.get(name, 0)} == {victim}
    if damage != "delete":
        assert any(victim in line and "recomputed" in line for line in lines)
    assert_same(outputs(unmerged), reference)
    assert status(unmerged)["corrupt"] == {}


def test_cli_status_names_a_corrupt_partial(unmerged):
    victim, _ = _same_size_tiles(unmerged)
    (unmerged / "partials" / f"{victim}.npz").write_bytes(b"PK\x03\x04 not a partial")
    proc = run_cli("status", "--run-dir", str(unmerged))
    assert proc.returncode == 0, proc.stderr
    assert "1 with a bad partial" in proc.stdout and victim in proc.stdout


def test_restart_with_a_typo_deletes_nothing(finished, mosaic):
    from pipeline.config import RunSettings

    before = _snapshot(finished)
    for name, toml in (("smal", mosaic), ("small", mosaic.with_name("nope.toml"))):
        config = RunSettings(mosaic=name, mosaics_file=toml, run_dir=finished, tile=40, model="standin",
                           progress=False, batch_size=256, restart=True)
        with pytest.raises(InputError):
            run(config, echo=lambda *_: None)
        assert _snapshot(finished) == before


def test_restart_refuses_a_folder_that_holds_no_run(tmp_path, mosaic):
    own = tmp_path / "mine"
    (own / "fits").mkdir(parents=True)
    (own / "fits" / "precious.fits").write_bytes(b"SIMPLE")
    proc = run_cli("run", "--mosaic", "small", "--mosaics-file", str(mosaic), "--run-dir", str(own),
                   "--model", "standin", "--tile", "40", "--no-progress", "--restart")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no manifest.json" in proc.stdout + proc.stderr
    assert (own / "fits" / "precious.fits").read_bytes() == b"SIMPLE"


def test_restart_removes_the_old_downstream_products(finished, mosaic, client):
    # A restarted run that stops before its downstream stage must not leave the old
    # segmentation and catalog behind for a later 'catalog' to reuse.
    from pipeline.errors import RunError

    for name in ("segmentation.zarr", "catalog", "colour.png", "downstream.json"):
        assert (finished / name).exists()
    config = small_config(finished, mosaic, restart=True, stride=2, retries=0)
    with inject(fail=["t0000_0000"]), pytest.raises(RunError, match="t0000_0000"):
        run(config, client=client, echo=lambda *_: None)
    for name in ("segmentation.zarr", "catalog", "colour.png", "downstream.json", "classification.zarr"):
        assert not (finished / name).exists(), name
    assert (finished / "manifest.json").exists()


def test_a_failed_merge_leaves_the_finished_classification_intact(unmerged, client, monkeypatch):
    import pipeline.classify as classify

    store = unmerged / "classification.zarr"
    before = {k: v for k, v in _snapshot(unmerged).items() if k.startswith("classification.zarr")}
    assert before

    def broken(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(classify, "merge_chunk", broken)
    monkeypatch.setattr("pipeline.run.merge_chunk", broken)
    with pytest.raises(OSError, match="injected"):
        resubmit(unmerged, client=client, echo=lambda *_: None)
    after = {k: v for k, v in _snapshot(unmerged).items() if k.startswith("classification.zarr")}
    assert after == before and store.is_dir()
    assert not (unmerged / "classification.zarr.partial").exists()


# ------------------------------------------------------------------ one writer

def test_a_second_command_on_a_locked_run_directory_exits_2_naming_the_holder(finished):
    from pipeline.lock import run_lock
    from pipeline.storage import Location

    with run_lock(Location(finished), "run"):
        proc = run_cli("catalog", "--run-dir", str(finished))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"in use by 'run' (pid {__import__('os').getpid()}" in proc.stderr
    before = _snapshot(finished)
    assert run_cli("status", "--run-dir", str(finished)).returncode == 0  # reading needs no lock
    assert _snapshot(finished) == before


def test_the_lock_of_a_killed_command_is_taken_over(tmp_path):
    import signal
    import subprocess
    import sys

    from pipeline.lock import run_lock
    from pipeline.storage import Location

    code = ("import time; from pipeline.lock import run_lock; from pipeline.storage import Location; "
            f"cm = run_lock(Location({str(tmp_path)!r}), 'run'); cm.__enter__(); print('held', flush=True); "
            "time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {child.pid}"):
            with run_lock(Location(tmp_path), "catalog"):
                pass
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        with run_lock(Location(tmp_path), "catalog"):  # the OS released the dead holder's lock
            pass
    finally:
        child.kill()


def test_object_store_lock_refuses_a_live_holder_and_takes_over_a_stale_one():
    import json
    import os
    import socket
    import time

    import pipeline.lock as lock_module
    from pipeline.lock import run_lock
    from pipeline.storage import Location

    root = Location("memory://locks/run")
    live = {"host": socket.gethostname(), "pid": os.getpid(), "command": "run", "since": time.time(),
            "heartbeat": time.time(), "token": "x"}
    (root / ".lock").write_bytes(json.dumps(live).encode())
    with pytest.raises(InputError, match="in use by 'run'"):
        with run_lock(root, "segment"):
            pass
    (root / ".lock").write_bytes(json.dumps({**live, "heartbeat": time.time() - 2 * lock_module.STALE_S}).encode())
    with run_lock(root, "segment"):
        assert json.loads((root / ".lock").read_bytes())["command"] == "segment"
    assert not (root / ".lock").exists()


def test_two_runs_on_one_directory_one_refused_the_other_finishes(tmp_path, mosaic):
    import subprocess
    import sys

    from tests.pipeline.small_runs import REPO, cli_args, python_env, wait_for

    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "tests.faults", "--tile-delay", "0.3", "--",
            *cli_args(run_dir, mosaic, "--workers", "1")]
    first = subprocess.Popen(args, cwd=REPO, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_for(lambda: (run_dir / "manifest.json").exists(), 120, "the first run's manifest")
        second = run_cli(*cli_args(run_dir, mosaic))
        assert second.returncode == 2 and "in use by 'run'" in second.stderr, second.stdout + second.stderr
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, out + err
    finally:
        first.kill()
    executions = _executions(run_dir)
    assert set(executions.values()) == {1}  # no tile computed twice


# ------------------------------------------------------- inputs the network cannot use

def _toml(folder: Path, mosaic: Path, bands: dict[str, str], name: str = "custom") -> Path:
    entries = ", ".join(f'{band} = "{mosaic.parent / f"small_{src}.fits"}"' for band, src in bands.items())
    path = folder / f"{name}.toml"
    path.write_text(f"[mosaics.{name}]\nbands = {{ {entries} }}\n")
    return path


def _refused_before_anything(tmp_path, toml, match, name="custom", **kwargs):
    from pipeline.config import RunSettings

    config = RunSettings(mosaic=name, mosaics_file=toml, run_dir=tmp_path / "refused", tile=40,
                       model="standin", progress=False, **kwargs)
    with pytest.raises(InputError, match=match):
        run(config, echo=lambda *_: None)
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())


def test_bands_are_fed_by_name_whatever_order_the_toml_lists_them(tmp_path, mosaic, finished, client):
    from pipeline.config import RunSettings

    # Listed Z, V, J, H (and in lower case): used to classify in that order with exit 0.
    toml = _toml(tmp_path, mosaic, {"z": "Z", "V": "V", "J": "J", "h": "H"})
    config = RunSettings(mosaic="custom", mosaics_file=toml, run_dir=tmp_path / "zvjh", tile=40,
                       model="standin", progress=False, batch_size=256)
    summary = run(config, client=client, echo=lambda *_: None)
    assert not summary.failed
    assert_same(outputs(tmp_path / "zvjh"), outputs(finished))


@pytest.mark.parametrize("bands, match", [
    ({"H": "H", "J": "J", "V": "V"}, r"missing band\(s\) Z"),
    ({"A": "H", "B": "J", "C": "V", "D": "Z"}, r"missing band\(s\) H, J, V, Z; band\(s\) the network does not take: A"),
    ({"H": "H", "J": "J", "V": "V", "Z": "Z", "I": "Z"}, r"does not take: I"),
])
def test_missing_extra_or_unknown_bands_are_refused_before_anything(tmp_path, mosaic, bands, match):
    _refused_before_anything(tmp_path, _toml(tmp_path, mosaic, bands), match)


def test_an_all_nan_band_or_no_covered_window_is_refused(tmp_path, mosaic):
    from astropy.io import fits

    data = fits.getdata(mosaic.parent / "small_J.fits")
    fits.PrimaryHDU(np.full_like(data, np.nan), header=fits.getheader(mosaic.parent / "small_J.fits")).writeto(
        tmp_path / "small_J.fits")
    for band in "HVZ":
        (tmp_path / f"small_{band}.fits").write_bytes((mosaic.parent / f"small_{band}.fits").read_bytes())
    fake = tmp_path / "mosaics.toml"
    _refused_before_anything(tmp_path, _toml(tmp_path, fake, {b: b for b in "HJVZ"}),
                             r"without a single finite non-zero pixel: J")
    # An integer band with zeros on a 30-pixel grid: every pixel finite, no 40x40 window covered.
    grid = np.ones(data.shape, np.int16)
    grid[::30, :] = 0
    grid[:, ::30] = 0
    fits.PrimaryHDU(grid, header=fits.getheader(mosaic.parent / "small_H.fits")).writeto(
        tmp_path / "small_J.fits", overwrite=True)
    _refused_before_anything(tmp_path, _toml(tmp_path, fake, {b: b for b in "HJVZ"}), r"no 40x40 window")


def test_a_bad_flux_band_or_weights_file_is_refused_before_anything(tmp_path, mosaic):
    from pipeline.downstream import DownstreamSettings

    toml = _toml(tmp_path, mosaic, {b: b for b in "HJVZ"})
    from pipeline.config import RunSettings

    config = RunSettings(mosaic="custom", mosaics_file=toml, run_dir=tmp_path / "refused", tile=40,
                       model="standin", progress=False)
    with pytest.raises(InputError, match="--flux-band 'Q'"):
        run(config, echo=lambda *_: None, downstream=DownstreamSettings(flux_band="Q"))
    assert not (tmp_path / "refused").exists()
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    proc = run_cli("run", "--mosaic", "custom", "--mosaics-file", str(toml), "--run-dir", str(tmp_path / "w"),
                   "--weights", str(bad), "--no-progress")
    assert proc.returncode == 2 and "bad.weights.h5" in proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "w" / "manifest.json").exists()  # the corrected rerun is not refused


def test_mosaic_names_and_mosaics_files_are_checked(tmp_path):
    from pipeline.mosaics import known_mosaics

    escaping = tmp_path / "escape.toml"
    escaping.write_text('[mosaics."../x"]\nbands = { H = "h.fits" }\n')
    with pytest.raises(InputError, match=r"escape.toml.*mosaic name"):
        known_mosaics(escaping)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[mosaics.caf\xe9]\nbands = { H = "h.fits" }\n'.encode("latin-1"))
    with pytest.raises(InputError, match="latin1.toml"):
        known_mosaics(latin1)


def test_a_resumed_run_reports_the_rate_of_its_own_windows_only(finished, mosaic, client):
    lines: list[str] = []
    summary = run(small_config(finished, mosaic), client=client, echo=lines.append)
    assert summary.executed == 0 and summary.windows == 0
    assert any("(0 windows, 0 windows/s)" in line for line in lines)


def test_every_product_is_readable_by_the_group_like_the_fits_files(finished):
    # catalog.csv, catalog.mrt and colour.png used to be 0600 (mkstemp) while the rest were 0644.
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    products = [finished / "colour.png", *sorted((finished / "catalog").glob("catalog.*")),
                *sorted((finished / "fits").glob("*.fits"))]
    assert len(products) > 20
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in products}
    assert modes == {name: expected for name in modes}


def test_a_truncated_ledger_record_is_named_and_its_tile_recomputed(unmerged, client):
    reference = outputs(unmerged)
    victim, _ = _same_size_tiles(unmerged)
    record = unmerged / "ledger" / f"{victim}.done"
    record.write_bytes(record.read_bytes()[:20])
    report = status(unmerged)
    assert victim in report["states"]["pending"] and f"{victim}.done" in report["corrupt"][victim]
    summary = resubmit(unmerged, client=client, echo=lambda *_: None)
    assert summary.executed == 1 and not summary.failed
    assert_same(outputs(unmerged), reference)


def test_status_says_products_written_only_when_they_are(finished):
    assert status(finished)["products"]
    (finished / "fits" / "disk_mean.fits").unlink()
    report = status(finished)
    assert not report["products"] and any("disk_mean.fits" in p for p in report["missing_products"])


def test_a_cube_is_named_as_a_cube(tmp_path):
    from astropy.io import fits

    from pipeline.ingest import validate_bands

    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((4, 8, 8), np.float32)).writeto(path)
    with pytest.raises(InputError, match=r"cube.fits.*3-D cube of shape \(4, 8, 8\)"):
        validate_bands({"H": path})


# ------------------------------------------- the finished stores: checked against their checksums

def _damage(path: Path, how: str) -> None:
    """Delete, truncate or flip one bit of a file."""
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))


def _products(run_dir: Path) -> dict[str, str]:
    """SHA-256 of the FITS products, the catalog and the segmentation maps."""
    return {k: v for k, v in _snapshot(run_dir).items()
            if k.startswith(("fits/", "catalog/", "segmentation.zarr/", "colour.png"))}


@pytest.mark.parametrize("damage", ["delete", "truncate", "bitflip"])
def test_a_damaged_chunk_of_the_merged_classification_is_named_and_never_used(finished, mosaic, client, damage):
    # The partials are gone after the merge: the store is the only copy. A deleted chunk
    # used to read as zeros ("merged already", exit 0, a catalog made from the zeros).
    victim = finished / "classification.zarr" / "mean" / "c" / "0" / "1" / "2"
    before = _products(finished)
    _damage(victim, damage)
    report = status(finished)["stores"]["classification"]
    assert len(report["problems"]) == 1, report
    assert "array 'mean' chunk (0, 1, 2)" in report["problems"][0] and str(victim) in report["problems"][0]
    assert "--restart" in report["advice"]
    with pytest.raises(InputError, match=r"classification.zarr is damaged: array 'mean' chunk \(0, 1, 2\).*--restart"):
        run(small_config(finished, mosaic), client=client, echo=lambda *_: None)
    with pytest.raises(InputError, match=r"mean/c/0/1/2"):
        redo_downstream(finished, reuse_segmentation=True, client=client, echo=lambda *_: None)
    assert _products(finished) == before  # nothing exported or measured from the damaged store


def test_the_cli_refuses_a_damaged_classification_and_status_names_the_chunk(finished, mosaic):
    from tests.pipeline.small_runs import cli_args

    victim = finished / "classification.zarr" / "mean" / "c" / "0" / "1" / "2"
    victim.unlink()
    proc = run_cli(*cli_args(finished, mosaic))  # the same command again
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(victim) in proc.stderr and "is missing" in proc.stderr and "--restart" in proc.stderr
    proc = run_cli("status", "--run-dir", str(finished))
    assert proc.returncode == 0, proc.stderr
    assert "classification.zarr: DAMAGED" in proc.stdout and f"chunk (0, 1, 2): file {victim} is missing" in proc.stdout


def test_with_kept_partials_a_damaged_classification_is_merged_again_identically(tmp_path, mosaic, client):
    config = small_config(tmp_path / "run", mosaic, keep_partials=True)
    run(config, client=client, echo=lambda *_: None)
    run_dir = config.run_dir
    from astropy.io import fits

    def fits_data() -> dict[str, np.ndarray]:
        return {p.name: fits.getdata(p) for p in sorted((run_dir / "fits").glob("*.fits"))}

    reference, before, products = outputs(run_dir), _snapshot(run_dir), fits_data()
    store = run_dir / "classification.zarr"
    _damage(store / "mean" / "c" / "0" / "1" / "2", "delete")
    _damage(store / "rank" / "c" / "0" / "0" / "1", "bitflip")
    report = status(run_dir)["stores"]["classification"]
    assert len(report["problems"]) == 2 and "resubmit" in report["advice"]
    lines: list[str] = []
    summary = run(config, client=client, echo=lines.append)
    assert summary.executed == 0 and not summary.failed
    assert any("merged again from the kept partials" in line and "mean/c/0/1/2" in line for line in lines), lines
    for name, values in outputs(run_dir).items():  # the same partials, merged in the same order
        np.testing.assert_array_equal(values, reference[name], err_msg=name)
    after = _snapshot(run_dir)
    for key in before:  # the store and the catalog: byte-identical
        if key.startswith(("classification.zarr/", "catalog/")):
            assert after[key] == before[key], key
    again = fits_data()  # written again from the new store (their headers hold the time)
    assert again.keys() == products.keys()
    for name, data in again.items():
        np.testing.assert_array_equal(data, products[name], err_msg=name)
    assert status(run_dir)["stores"]["classification"] == {"problems": [], "recorded": True, "advice": ""}


@pytest.mark.parametrize("damage", ["delete", "bitflip"])
def test_a_damaged_segmentation_is_not_reused_by_catalog(finished, client, damage):
    import zarr

    seg = finished / "segmentation.zarr"
    labels = np.asarray(zarr.open_group(str(seg), mode="r")["deblended"][:])
    catalog = (finished / "catalog" / "catalog.csv").read_bytes()
    chunks = sorted(p for p in (seg / "deblended" / "c").rglob("*") if p.is_file())
    assert chunks, "the run must have labelled pixels"
    _damage(chunks[0], damage)
    report = status(finished)["stores"]["segmentation"]
    assert len(report["problems"]) == 1 and str(chunks[0]) in report["problems"][0]
    lines: list[str] = []
    summary = redo_downstream(finished, reuse_segmentation=True, client=client, echo=lines.append)
    assert not summary.reused_segmentation
    assert any("segmentation.zarr is damaged" in line and "made again" in line for line in lines), lines
    np.testing.assert_array_equal(zarr.open_group(str(seg), mode="r")["deblended"][:], labels)
    assert (finished / "catalog" / "catalog.csv").read_bytes() == catalog
    # made again and recorded: the next catalog reuses it
    assert status(finished)["stores"]["segmentation"]["problems"] == []
    assert redo_downstream(finished, reuse_segmentation=True, client=client,
                           echo=lambda *_: None).reused_segmentation


def test_a_run_merged_before_checksums_were_recorded_gets_them_on_first_use(finished, mosaic, client):
    import json

    def as_before_checksums() -> None:
        merged = finished / "ledger" / "merged.json"
        record = json.loads(merged.read_text())
        record.pop("checksums", None)
        merged.write_text(json.dumps(record))
        for name in ("classification", "segmentation"):
            (finished / "ledger" / f"{name}.checksums.json").unlink(missing_ok=True)

    as_before_checksums()
    report = status(finished)["stores"]
    assert report["classification"] == {"problems": [], "recorded": False,
                                         "advice": "the next 'run', 'resubmit', 'segment' or 'catalog' records them"}
    assert not report["segmentation"]["recorded"]
    # catalog: the classification's checksums recorded from the store as it is; the
    # segmentation, without a record to check it against, is made again, not reused
    lines: list[str] = []
    summary = redo_downstream(finished, reuse_segmentation=True, client=client, echo=lines.append)
    assert not summary.reused_segmentation
    assert any("merged before its checksums were recorded; recorded them now" in line for line in lines), lines
    assert json.loads((finished / "ledger" / "merged.json").read_text())["checksums"]
    report = status(finished)["stores"]
    assert report["classification"]["recorded"] and report["segmentation"]["recorded"]
    assert not report["classification"]["problems"] and not report["segmentation"]["problems"]
    # run: the same on first use
    as_before_checksums()
    lines = []
    run(small_config(finished, mosaic), client=client, echo=lines.append)
    assert any("recorded them now" in line for line in lines) and status(finished)["stores"]["classification"][
        "recorded"]
    # Without a record a deleted chunk is still found: its n chunk has counted pixels.
    as_before_checksums()
    (finished / "classification.zarr" / "mean" / "c" / "0" / "1" / "2").unlink()
    assert "mean/c/0/1/2 is missing (n has values" in status(finished)["stores"]["classification"]["problems"][0]
    with pytest.raises(InputError, match=r"mean/c/0/1/2 is missing"):
        run(small_config(finished, mosaic), client=client, echo=lambda *_: None)


def test_a_merged_classification_without_its_metadata_is_refused_not_classified_again(finished, mosaic, client):
    # merged.json records the merge, the partials are gone: a store that no longer opens
    # used to count as "not merged", and every tile was classified again without a word.
    before = _executions(finished)
    (finished / "classification.zarr" / "zarr.json").unlink()
    with pytest.raises(InputError, match=r"classification.zarr/zarr.json is missing.*records the merge.*--restart"):
        run(small_config(finished, mosaic), client=client, echo=lambda *_: None)
    assert _executions(finished) == before
    assert status(finished)["stores"]["classification"]["problems"]
