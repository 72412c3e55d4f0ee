"""Tests for pipeline.inputs.mosaics, mosaic_files and demo_mosaics: the registry of named mosaics, their
files resolved, and the demo files."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.errors import InputError, RunError
from pipeline.inputs.demo_mosaics import generate_demo
from pipeline.inputs.grid import validate_bands
from pipeline.inputs.ingest import ingest, read_wcs
from pipeline.inputs.mosaic_files import resolve_mosaic
from pipeline.inputs.mosaics import DEMO, GOODS_S, MOSAICS, Mosaic, default_data_dir, known_mosaics

HLF_NAMES = (
    "hlsp_hlf_hst_wfc3-60mas_goodss_f160w_v2.0_sci.fits",
    "hlsp_hlf_hst_wfc3-60mas_goodss_f125w_v2.0_sci.fits",
    "hlsp_hlf_hst_acs-60mas_goodss_f606w_v2.0_sci.fits",
    "hlsp_hlf_hst_acs-60mas_goodss_f850lp_v2.0_sci.fits",
)


def make_wcs(shape: tuple[int, int]) -> WCS:
    """TAN WCS near GOODS-S with 0.06 arcsec pixels."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [53.12, -27.81]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cd = [[-0.06 / 3600, 0.0], [0.0, 0.06 / 3600]]
    return w


@pytest.fixture
def fake_simulator(monkeypatch):
    """Replace morpheus_core.simulate with a stand-in; records its calls.

    The tests must not depend on the real simulator's internals, only on the
    documented ``render_sky(shape, *, seed) -> SyntheticSky(images, wcs, truth)``.
    """
    calls = []

    def render_sky(shape=(512, 512), *, seed=0, **kwargs):
        calls.append((tuple(shape), seed))
        rng = np.random.default_rng(seed)
        images = (rng.normal(size=(4, *shape)) + 5.0).astype(np.float32)
        truth = Table({"id": [1, 2], "x": [10.5, 20.0], "y": [3.0, 7.25], "class": ["disk", "spheroid"]})
        return types.SimpleNamespace(images=images, wcs=make_wcs(shape), truth=truth)

    module = types.ModuleType("morpheus_core.simulate")
    module.render_sky = render_sky
    monkeypatch.setitem(sys.modules, "morpheus_core.simulate", module)
    return calls


def test_registry():
    assert set(MOSAICS) == {"demo", "goods-s", "demo-nircam"}
    assert GOODS_S.bands == DEMO.bands == ("H", "J", "V", "Z")
    assert tuple(GOODS_S.files.values()) == HLF_NAMES
    assert "archive.stsci.edu/prepds/hlf" in GOODS_S.source_hint
    with pytest.raises(ValueError, match="do not match"):
        Mosaic("bad", bands=("H", "J"), files={"H": "h.fits"}, description="", source_hint="")


def test_goods_s_missing_files_all_listed(tmp_path):
    with pytest.raises(InputError) as err:
        resolve_mosaic("goods-s", data_dir=tmp_path)
    msg = str(err.value)
    for name in HLF_NAMES:
        assert str(tmp_path / name) in msg
    assert "4 of 4" in msg and "MORPHEUS_DATA_DIR" in msg
    assert "archive.stsci.edu/prepds/hlf" in msg


def test_goods_s_some_missing_and_all_present(tmp_path):
    for name in HLF_NAMES[:2]:
        (tmp_path / name).write_bytes(b"")  # existence is all resolve_mosaic checks
    with pytest.raises(InputError) as err:
        resolve_mosaic("goods-s", data_dir=tmp_path)
    msg = str(err.value)
    assert "2 of 4" in msg and HLF_NAMES[2] in msg and HLF_NAMES[3] in msg
    assert HLF_NAMES[0] not in msg
    for name in HLF_NAMES[2:]:
        (tmp_path / name).write_bytes(b"")
    paths = resolve_mosaic("goods-s", data_dir=tmp_path)
    assert list(paths) == ["H", "J", "V", "Z"]
    assert [p.name for p in paths.values()] == list(HLF_NAMES)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MORPHEUS_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    with pytest.raises(InputError, match=str(tmp_path / "env")):
        resolve_mosaic("goods-s", data_dir=None)
    monkeypatch.delenv("MORPHEUS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home/.cache/morpheus-survey/data"


def test_unknown_name(tmp_path):
    with pytest.raises(InputError) as err:
        resolve_mosaic("goods-n", data_dir=tmp_path)
    msg = str(err.value)
    assert "goods-n" in msg and "demo" in msg and "goods-s" in msg


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_user_mosaic_from_toml(tmp_path):
    (tmp_path / "cfg" / "img").mkdir(parents=True)
    for band in "HJ":
        (tmp_path / "cfg" / "img" / f"{band}.fits").write_bytes(b"")
    absolute = tmp_path / "elsewhere_V.fits"
    absolute.write_bytes(b"")
    toml = write_toml(
        tmp_path / "cfg" / "mosaics.toml",
        f"""
[mosaics.my-field]
description = "my test field"
bands = {{ H = "img/H.fits", J = "img/J.fits", V = "{absolute}" }}
""",
    )
    paths = resolve_mosaic("my-field", data_dir=tmp_path / "unused", mosaics_file=toml)
    assert paths == {"H": tmp_path / "cfg/img/H.fits", "J": tmp_path / "cfg/img/J.fits", "V": absolute}
    mosaic = known_mosaics(toml)["my-field"]
    assert mosaic.description == "my test field" and mosaic.bands == ("H", "J", "V")
    with pytest.raises(InputError, match="my-field"):
        resolve_mosaic("other", data_dir=tmp_path, mosaics_file=toml)


def test_user_mosaic_missing_file(tmp_path):
    toml = write_toml(
        tmp_path / "m.toml",
        """
[mosaics.field]
bands = { H = "h.fits", J = "j.fits" }
""",
    )
    with pytest.raises(InputError) as err:
        resolve_mosaic("field", data_dir=None, mosaics_file=toml)
    msg = str(err.value)
    assert str(tmp_path / "h.fits") in msg and str(tmp_path / "j.fits") in msg
    assert "m.toml" in msg


@pytest.mark.parametrize(
    "text, match",
    [
        ("[mosaics.x\nbands = 1", "cannot read"),
        ("[mosaics.x]\nbands = 3", "needs bands"),
        ("[mosaics.x]\nbands = {}", "needs bands"),
        ("[mosaics.x]\nband = { H = 'h.fits' }", "unknown key"),
        ("[mosaics.demo]\nbands = { H = 'h.fits' }", "built-in"),
        ("[mosaics.x]\nbands = { H = 'h.fits' }\nthreshold = 1.5", r"threshold must be a number in \[0, 1\), got 1.5"),
    ],
)
def test_bad_toml(tmp_path, text, match):
    toml = write_toml(tmp_path / "bad.toml", text)
    with pytest.raises(InputError, match=match) as err:
        resolve_mosaic("x", data_dir=tmp_path, mosaics_file=toml)
    assert "bad.toml" in str(err.value)


def test_threshold_default_is_the_detection_rules_unless_the_mosaic_sets_one(tmp_path):
    from pipeline.cli.downstream import downstream_settings as _downstream_settings
    from pipeline.cli.parser import build_parser as _parser

    assert DEMO.threshold is None and GOODS_S.threshold is None  # no tuned threshold for any built-in
    toml = write_toml(
        tmp_path / "m.toml",
        """
[mosaics.plain]
bands = { H = "h.fits" }
[mosaics.tuned]
bands = { H = "h.fits" }
threshold = 0.2
""",
    )
    assert known_mosaics(toml)["plain"].threshold is None and known_mosaics(toml)["tuned"].threshold == 0.2

    def settings(mosaic, *options):
        args = _parser().parse_args(["segment", "--run-dir", str(tmp_path), *options])
        return _downstream_settings(args, mosaic, toml)

    assert (settings("demo").detection, settings("demo").threshold) == ("paper", 0.0)
    assert settings("demo", "--detection", "mean").threshold == 0.3
    assert settings("plain", "--detection", "mixed").threshold == 0.3
    assert settings("tuned", "--detection", "mixed").threshold == 0.2
    assert settings("tuned", "--threshold", "0.05").threshold == 0.05
    with pytest.raises(InputError, match="--threshold"):
        settings("demo", "--threshold", "-0.1")
    with pytest.raises(SystemExit) as exit_info:  # argparse: exit 2 and the valid choices
        settings("demo", "--detection", "rank")
    assert exit_info.value.code == 2


def test_missing_toml(tmp_path):
    with pytest.raises(InputError, match="nothere.toml"):
        resolve_mosaic("x", data_dir=tmp_path, mosaics_file=tmp_path / "nothere.toml")


def test_generate_demo(tmp_path, fake_simulator):
    paths = generate_demo(tmp_path / "data", shape=(40, 48), seed=3)
    assert fake_simulator == [((40, 48), 3)]
    assert list(paths) == ["H", "J", "V", "Z"]
    expected = (np.random.default_rng(3).normal(size=(4, 40, 48)) + 5.0).astype(np.float32)
    for i, (band, filt) in enumerate(zip("HJVZ", ("F160W", "F125W", "F606W", "F850LP"))):
        assert paths[band] == tmp_path / "data" / f"demo_{band}.fits"
        with fits.open(paths[band]) as hdul:
            header = hdul[0].header
            np.testing.assert_array_equal(hdul[0].data, expected[i])
        assert header["BUNIT"] == "electrons/s" and header["FILTER"] == filt
        assert "SYNTHETIC" in str(header["COMMENT"])
        np.testing.assert_allclose(WCS(header).wcs.crval, [53.12, -27.81])
    truth = Table.read(tmp_path / "data" / "demo_truth.ecsv")
    assert list(truth["class"]) == ["disk", "spheroid"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        [f"demo_{b}.fits" for b in "HJVZ"] + ["demo_truth.ecsv"]
    ), "no temp files left"


def test_resolve_demo_generates_once_and_ingests(tmp_path, fake_simulator):
    paths = resolve_mosaic("demo", data_dir=tmp_path)
    assert fake_simulator == [((512, 512), 2020)]
    assert resolve_mosaic("demo", data_dir=tmp_path) == paths
    assert len(fake_simulator) == 1, "existing demo files are reused"
    paths["V"].unlink()
    resolve_mosaic("demo", data_dir=tmp_path)
    assert len(fake_simulator) == 2, "a missing file triggers regeneration"
    group = ingest(validate_bands(paths), tmp_path / "demo.zarr", chunk=128)
    assert group["image"].shape == (4, 512, 512)
    np.testing.assert_allclose(read_wcs(group).wcs.crval, [53.12, -27.81])


def test_a_generated_demo_says_where_its_files_went(tmp_path, fake_simulator):
    lines = []
    resolve_mosaic("demo", data_dir=tmp_path / "data", echo=lines.append)
    assert lines == [
        f"demo data generated in {tmp_path / 'data'} (demo_H.fits, demo_J.fits, demo_V.fits, "
        "demo_Z.fits, demo_truth.ecsv)"
    ]
    resolve_mosaic("demo", data_dir=tmp_path / "data", echo=lines.append)
    assert len(lines) == 1, "reused files: nothing to say"


def test_generate_demo_checks_simulator_output(tmp_path, monkeypatch):
    module = types.ModuleType("morpheus_core.simulate")
    module.render_sky = lambda shape=(512, 512), *, seed=0: types.SimpleNamespace(
        images=np.ones((3, *shape), np.float32), wcs=make_wcs(shape), truth=Table()
    )
    monkeypatch.setitem(sys.modules, "morpheus_core.simulate", module)
    with pytest.raises(RunError, match="shape"):
        generate_demo(tmp_path, shape=(8, 8))


def test_a_symlink_loop_is_named_as_such_not_missing(tmp_path, monkeypatch):
    # A link loop was reported as "missing" with a MORPHEUS_DATA_DIR hint that does not apply.
    import os

    loop = tmp_path / "h.fits"
    os.symlink(loop, loop)
    (tmp_path / "j.fits").write_bytes(b"")
    toml = write_toml(tmp_path / "m.toml", '[mosaics.field]\nbands = { H = "h.fits", J = "j.fits" }\n')
    with pytest.raises(
        InputError,
        match=r"mosaic 'field': 1 of 2 band files cannot be read: H: .*h.fits "
        r"\(a symbolic link loop\)$",
    ) as err:
        resolve_mosaic("field", mosaics_file=toml)
    assert "MORPHEUS_DATA_DIR" not in str(err.value)
    os.symlink(HLF_NAMES[0], tmp_path / HLF_NAMES[0])  # the built-in mosaic's data dir
    with pytest.raises(InputError, match=r"a symbolic link loop") as err:
        resolve_mosaic("goods-s", data_dir=tmp_path)
    assert "MORPHEUS_DATA_DIR" not in str(err.value)


def test_a_missing_file_of_a_mosaics_file_gets_no_data_dir_hint(tmp_path):
    toml = write_toml(tmp_path / "m.toml", '[mosaics.field]\nbands = { H = "h.fits" }\n')
    with pytest.raises(InputError, match="relative to its folder") as err:
        resolve_mosaic("field", mosaics_file=toml)
    assert "MORPHEUS_DATA_DIR" not in str(err.value)


def test_the_demo_in_a_data_dir_that_cannot_be_written_is_an_input_error(tmp_path, fake_simulator):
    # It named a hidden temporary file and exited 1.
    import os
    import subprocess

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        InputError,
        match=rf"^{blocker / 'data'}: cannot write the demo mosaic's files in this "
        r"data dir \(.*\); pass --data-dir with a folder you can write",
    ):
        resolve_mosaic("demo", data_dir=blocker / "data")
    locked = tmp_path / "read-only"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("root ignores permissions and no immutable folders here")
    try:
        with pytest.raises(InputError, match=rf"^{locked}: cannot write the demo mosaic's files .*--data-dir"):
            resolve_mosaic("demo", data_dir=locked)
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o755)
