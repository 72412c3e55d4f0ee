"""Model cards in runs: cards beside and inside weights, bands matched by name,
filter or FITS FILTER, refusals before anything runs, and models of 2 and 6 bands trained,
saved with their card, loaded and run through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from morpheus_core.cards import JWST_NIRCAM_BANDS, RELEASED_CARD, Band, ModelCard
from morpheus_core.passbands import NIRCAM_BANDS
from morpheus_core.simulate import render_sky
from pipeline.errors import InputError
from pipeline.inputs.model_cards import H5_ATTRIBUTE, card_for, card_path, read_card, write_card
from pipeline.inputs.preflight import check_pixel_scale, order_bands
from tests.pipeline.small_runs import python_env, run_cli, write_mosaic

SIX = ("F090W", "F115W", "F150W", "F200W", "F277W", "F444W")


def _weights(tmp_path: Path, card: ModelCard) -> Path:
    from morpheus_core.model import build_for_card

    path = tmp_path / "net.weights.h5"
    build_for_card(card).save_weights(path)
    return path


def test_card_beside_and_inside_the_weights_file(tmp_path):
    card = ModelCard(
        bands=(JWST_NIRCAM_BANDS["F150W"], JWST_NIRCAM_BANDS["F444W"]),
        classes=("galaxy", "star", "background"),
        pixel_scale_arcsec=0.03,
        name="two",
        provenance={"command": "python -m pipeline train ..."},
    )
    weights = _weights(tmp_path, card)
    assert card_path(weights) == tmp_path / "net.card.json"
    beside = write_card(weights, card)
    assert json.loads(beside.read_text())["bands"][1]["name"] == "F444W"
    import h5py

    with h5py.File(weights, "r") as h5:
        assert ModelCard.from_json(h5.attrs[H5_ATTRIBUTE]) == ModelCard.from_json(card.to_json())
    assert read_card(weights).band_names == ("F150W", "F444W")
    beside.unlink()  # a weights file copied alone keeps its card
    assert read_card(weights).classes == ("galaxy", "star", "background")
    # The file beside wins; a broken one is refused naming it.
    beside.write_text("{not json")
    with pytest.raises(InputError, match="net.card.json: model card is not valid JSON"):
        read_card(weights)


def test_weights_without_a_card_are_the_released_bands_and_classes(tmp_path):
    weights = _weights(tmp_path, RELEASED_CARD)
    card = read_card(weights)
    assert (card.band_names, card.classes, card.pixel_scale_arcsec) == (
        ("H", "J", "V", "Z"),
        RELEASED_CARD.classes,
        0.06,
    )
    assert "without a model card" in card.provenance["note"]
    assert card_for("released") is RELEASED_CARD and card_for("standin").band_names == RELEASED_CARD.band_names


def _files(folder: Path, names: list[str], filters: dict[str, str] | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        header = fits.Header()
        if filters and name in filters:
            header["FILTER"] = filters[name]
        path = folder / f"{name}.fits"
        fits.PrimaryHDU(np.ones((4, 4), np.float32), header=header).writeto(path, overwrite=True)
        out[name] = path
    return out


def test_bands_are_matched_by_name_filter_or_fits_filter(tmp_path):
    # Hand-built expectation: the model's order, whatever the mosaic's.
    files = _files(tmp_path, ["z", "F125W", "v", "mystery"], filters={"mystery": "F160W", "z": "F850LP"})
    got = order_bands(files, RELEASED_CARD, where="m.toml")
    assert list(got) == ["H", "J", "V", "Z"]
    assert got == {"H": files["mystery"], "J": files["F125W"], "V": files["v"], "Z": files["z"]}
    six = ModelCard(
        bands=tuple(JWST_NIRCAM_BANDS[b] for b in SIX), classes=RELEASED_CARD.classes, pixel_scale_arcsec=0.03
    )
    shuffled = _files(tmp_path / "six", [SIX[i] for i in (5, 2, 0, 4, 1, 3)])
    assert list(order_bands(shuffled, six, where="m.toml")) == list(SIX)


def test_a_band_found_by_its_fits_filter_is_said_in_one_line(tmp_path):
    files = _files(tmp_path, ["H", "J", "V", "I"], filters={"I": "F850LP", "H": "F160W"})
    lines = []
    got = order_bands(files, RELEASED_CARD, where="m.toml", echo=lines.append)
    assert got["Z"] == files["I"]
    assert lines == [
        "note: band 'I' of m.toml is not a band of the model; its file I.fits has FITS FILTER = "
        "'F850LP', so it is used as the model's band Z"
    ]


@pytest.mark.parametrize(
    "names, filters, match",
    [
        (["H", "J", "V"], {}, r"m.toml: missing band\(s\) Z \(the network takes H \(F160W\)"),
        (["H", "J", "V", "Z", "K"], {}, r"does not take: K"),
        (["H", "J", "V", "Z", "K"], {"K": "F444W"}, r"does not take: K \(FILTER F444W\)"),
        (["H", "J", "V", "Z", "X"], {"X": "F160W"}, r"bands 'H' and 'X' are both the model's band H"),
        (
            ["H", "J", "V", "Z"],
            {"H": "F125W"},
            r"H.fits: the mosaic calls it band 'H' .* FILTER = 'F125W' is the "
            r"model's band J",
        ),
    ],
)
def test_missing_extra_duplicate_or_contradicted_bands_are_refused(tmp_path, names, filters, match):
    with pytest.raises(InputError, match=match):
        order_bands(_files(tmp_path, names, filters), RELEASED_CARD, where="m.toml")


def test_pixel_scale_within_ten_percent_passes_beyond_is_refused_or_accepted():
    assert check_pixel_scale(0.063, RELEASED_CARD, where="m") is None  # 5%
    with pytest.raises(InputError, match=r"m: pixel scale 0.03\"/px differs from the model's 0.06\"/px by 50%"):
        check_pixel_scale(0.03, RELEASED_CARD, where="m")
    assert "--accept-pixel-scale" in check_pixel_scale(0.03, RELEASED_CARD, where="m", accept=True)


def test_wrong_pixel_scale_exits_2_before_anything_unless_accepted(tmp_path):
    toml = write_mosaic(tmp_path / "data", pixel_scale=0.03)
    base = [
        "run",
        "--mosaic",
        "small",
        "--mosaics-file",
        str(toml),
        "--tile",
        "64",
        "--model",
        "standin",
        "--no-progress",
        "--workers",
        "1",
    ]
    proc = run_cli(*base, "--run-dir", str(tmp_path / "refused"), env=python_env())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'pixel scale 0.03"/px differs from the model\'s 0.06"/px' in proc.stderr
    assert str(toml) in proc.stderr and "--accept-pixel-scale" in proc.stderr
    assert not (tmp_path / "refused" / "manifest.json").exists()
    proc = run_cli(*base, "--run-dir", str(tmp_path / "accepted"), "--accept-pixel-scale", env=python_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning:" in proc.stdout and "classifying anyway" in proc.stdout


def _mosaic(folder: Path, bands: tuple[str, ...], order: list[int], *, filter_only: str | None = None) -> Path:
    """A seeded 0.03"/px mosaic in NIRCam-like ``bands``, listed in ``order`` in its TOML;
    ``filter_only`` is named ``extra`` in the TOML and found by its FITS FILTER."""
    by_name = {b.name: b for b in NIRCAM_BANDS}
    sky = render_sky((96, 112), seed=5, n_galaxies=5, n_stars=1, bands=[by_name[b] for b in bands], pixel_scale=0.03)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in order:
        header = sky.wcs.to_header()
        header["FILTER"] = bands[i]
        fits.PrimaryHDU(sky.images[i], header=header).writeto(folder / f"m_{bands[i]}.fits", overwrite=True)
        key = "extra" if bands[i] == filter_only else bands[i]
        entries.append(f'{key} = "m_{bands[i]}.fits"')
    toml = folder / "mosaics.toml"
    toml.write_text(f"[mosaics.jw]\nbands = {{ {', '.join(entries)} }}\n")
    return toml


def _train(tmp_path: Path, bands: tuple[str, ...], *extra: str) -> Path:
    out = tmp_path / "model"
    proc = run_cli(
        "train",
        "--data-dir",
        str(tmp_path / "set"),
        "--bands",
        ",".join(bands),
        "--init",
        "released",
        "--epochs",
        "1",
        "--batch-size",
        "6",
        "--eval-max",
        "6",
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
        env=python_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _run(tmp_path: Path, toml: Path, weights: Path, flux_band: str | None) -> Path:
    """``run`` with the model; ``flux_band`` None leaves it to the card (its reddest band)."""
    run_dir = tmp_path / "run"
    flux = ["--flux-band", flux_band] if flux_band else []
    proc = run_cli(
        "run",
        "--mosaic",
        "jw",
        "--mosaics-file",
        str(toml),
        "--run-dir",
        str(run_dir),
        "--tile",
        "64",
        "--model",
        str(weights),
        *flux,
        "--no-progress",
        "--workers",
        "1",
        env=python_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir


def _check_products(run_dir: Path, card: ModelCard) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert ModelCard.from_dict(manifest["model_card"]).band_names == card.band_names
    header = fits.getheader(run_dir / "fits" / f"{card.classes[0]}_mean.fits")
    assert header["MODBANDS"] == ",".join(card.band_names) and header["MODSCALE"] == card.pixel_scale_arcsec
    assert header["MODCLASS"] == ",".join(card.classes)
    assert sorted(p.name for p in (run_dir / "fits").glob("*_rank.fits")) == sorted(
        f"{c}_rank.fits" for c in card.classes
    )
    table = Table.read(run_dir / "catalog" / "catalog.fits")
    assert [c for c in table.colnames if c.startswith("p_") and not c.startswith("p_mean")] == [
        f"p_{c}" for c in card.classes
    ]
    assert [c for c in table.colnames if c.startswith("flux_")] == [f"flux_{b}" for b in card.band_names]
    assert table.meta["MODBANDS"] == ",".join(card.band_names)
    import zarr

    assert zarr.open_group(run_dir / "mosaic.zarr", mode="r").attrs["bands"] == list(card.band_names)


@pytest.mark.slow
def test_six_band_model_trains_saves_its_card_loads_and_classifies(tmp_path):
    out = _train(tmp_path, SIX, "--synthetic", "10", "--synthetic-size", "64")
    card = read_card(out / "best.weights.h5")
    assert card.band_names == SIX and card.pixel_scale_arcsec == 0.03
    assert card.provenance["trained_from"].startswith("released")
    assert "F090W<-Z" in card.provenance["initialisation"]["downconv-0_conv-0_conv"]
    assert "test_accuracy" not in card.provenance["metrics"] and "accuracy" in card.provenance["metrics"]
    (out / "best.card.json").unlink()  # the card inside the weights file is enough
    toml = _mosaic(tmp_path / "mosaic", SIX, [3, 0, 5, 1, 4, 2], filter_only="F277W")
    _check_products(_run(tmp_path, toml, out / "best.weights.h5", "F150W"), card)


@pytest.mark.slow
def test_two_band_model_with_its_own_classes(tmp_path):
    """A 2-band model with classes compact / extended (votes of the synthetic set regrouped)."""
    from morpheus_core.training.data import synthetic_training_set
    from pipeline.training.training_set import SetDescription, write_training_set

    bands = ("F150W", "F444W")
    passbands = tuple(b for b in NIRCAM_BANDS if b.name in bands)
    objects = synthetic_training_set(10, seed=2, size=64, bands=passbands, pixel_scale=0.03)
    description = SetDescription(
        tuple(JWST_NIRCAM_BANDS[b] for b in bands), 0.03, ("compact", "extended", "background")
    )
    write_training_set(objects, tmp_path / "set", description=description)
    votes = Table.read(tmp_path / "set" / "votes.csv")
    votes["compact"] = votes["point_source"]
    votes["extended"] = votes["spheroid"] + votes["disk"] + votes["irregular"]
    votes.write(tmp_path / "set" / "votes.csv", overwrite=True)
    out = _train(tmp_path, bands, "--classes", "compact,extended")
    card = read_card(out / "model.weights.h5")
    assert card.classes == ("compact", "extended", "background") and card.band_names == bands
    assert "classes background copied" in card.provenance["initialisation"]["final_conv_conv"]
    toml = _mosaic(tmp_path / "mosaic", bands, [1, 0])
    run_dir = _run(tmp_path, toml, out / "model.weights.h5", None)
    _check_products(run_dir, card)
    # no --flux-band: the card's reddest band deblends and weights Eq. 16
    assert json.loads((run_dir / "downstream.json").read_text())["settings"]["flux_band"] == "F444W"
    assert set(Table.read(run_dir / "catalog" / "catalog.fits")["dominant_class"]) <= {"compact", "extended"}


def test_a_model_card_with_other_bands_refuses_a_four_band_mosaic(tmp_path):
    card = ModelCard(
        bands=(Band("F150W", "F150W", 1.5), Band("F444W", "F444W", 4.4)),
        classes=RELEASED_CARD.classes,
        pixel_scale_arcsec=0.06,
    )
    weights = _weights(tmp_path, card)
    write_card(weights, card)
    toml = write_mosaic(tmp_path / "data")
    proc = run_cli(
        "run",
        "--mosaic",
        "small",
        "--mosaics-file",
        str(toml),
        "--run-dir",
        str(tmp_path / "r"),
        "--model",
        str(weights),
        "--no-progress",
        env=python_env(),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "missing band(s) F150W, F444W" in proc.stderr and "does not take: H, J, V, Z" in proc.stderr
    assert not (tmp_path / "r" / "manifest.json").exists()
