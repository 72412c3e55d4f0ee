"""pipeline.rundir.ledger: compact partials checked against float64 statistics, and the
record that the partials are merged."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.engine import classify_image
from morpheus_core.stats import WindowStats, finalize
from morpheus_core.testing import StandInClassifier
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import Ledger, compact_partial, merged_record
from pipeline.rundir.location import Location


def _stats(rng, shape=(60, 70)) -> WindowStats:
    image = rng.normal(size=(4, *shape)).astype(np.float32)
    image[:, 10:20, 30:45] = np.nan  # an unobserved patch
    return classify_image(image, StandInClassifier(), stride=3)


def test_compact_partials_are_exact_counts_and_float32_moments(tmp_path, rng):
    stats = _stats(rng)
    ledger = Ledger(tmp_path)
    ledger.save_partial("t0000_0000", stats, {"windows": 1}, run_id="r1")
    with np.load(tmp_path / "partials" / "t0000_0000.npz") as npz:  # a compressed npz, readable by NumPy
        assert npz["n"].dtype == np.uint16 and npz["votes"].dtype == np.uint16
        assert npz["mean"].dtype == np.float32 and npz["m2"].dtype == np.float32
    back = ledger.load_partial("t0000_0000", run_id="r1")
    np.testing.assert_array_equal(back.n, stats.n)
    np.testing.assert_array_equal(back.votes, stats.votes)
    # float32 rounding only: relative 2**-24 of each value
    np.testing.assert_allclose(back.mean, stats.mean, rtol=2.0**-24, atol=0)
    np.testing.assert_allclose(back.m2, stats.m2, rtol=2.0**-24, atol=0)
    # the products (float32) from a compact partial differ from the float64 ones by
    # at most a float32 rounding or two
    ref, got = finalize(stats), finalize(back)
    for name in ("mean", "variance"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=0, atol=2e-7)
    np.testing.assert_array_equal(got.rank, ref.rank)
    # smaller than the float64 partial of the same statistics
    raw = stats.n.nbytes + stats.mean.nbytes + stats.m2.nbytes + stats.votes.nbytes
    assert (tmp_path / "partials" / "t0000_0000.npz").stat().st_size < 0.5 * raw


def test_counts_beyond_uint16_stay_int32(rng):
    stats = _stats(rng, (50, 50))
    stats.n[0, 0] = 70000
    compact = compact_partial(stats)
    assert compact["n"].dtype == np.int32 and compact["n"][0, 0] == 70000
    assert compact["votes"].dtype == np.uint16


def test_merged_record_names_its_run_and_partials_can_go(tmp_path, rng):
    ledger = Ledger(tmp_path)
    stats = _stats(rng, (50, 50))
    for name in ("t0000_0000", "t0000_0001"):
        ledger.save_partial(name, stats, {}, run_id="r1")
    assert not ledger.merged("r1")
    ledger.mark_merged("r1", 2)
    assert ledger.merged("r1") and not ledger.merged("r2")
    # it names the store's checksum record, written before it (pipeline.rundir.checksums)
    record = merged_record(Location(tmp_path), "r1")
    assert record["tiles"] == 2 and record["checksums"] == "classification.checksums.json"
    assert RunLayout(Location(tmp_path)).classification_checksums.path == tmp_path / "ledger" / record["checksums"]
    assert merged_record(Location(tmp_path), "r2") is None
    assert ledger.remove_partials() == 2 and ledger.finished() == set()
    assert ledger.remove_partials() == 0
    (tmp_path / "ledger" / "merged.json").write_text("{trunc")
    assert not ledger.merged("r1")  # an unreadable record is no record
    with pytest.raises(Exception):
        ledger.load_partial("t0000_0000")
