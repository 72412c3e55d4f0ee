"""``python -m pipeline train``, the training-set folder format, and ``run --model``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.table import Table

from morpheus_core import CLASSES
from morpheus_core.training.data import synthetic_training_set, vote_distribution
from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.training.training_set import read_training_set, write_training_set


@pytest.fixture(scope="module")
def objects():
    return synthetic_training_set(40, seed=21, size=64)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, objects):
    folder = tmp_path_factory.mktemp("training_set")
    write_training_set(objects, folder, test_fraction=0.25, seed=1)
    return folder


def test_folder_round_trip(data_dir, objects):
    data = read_training_set(data_dir)
    _, keep = vote_distribution(np.stack([o.votes for o in objects]))
    assert len(data.train) + len(data.test) == keep.sum()
    assert sorted(data.dropped) == sorted(o.name for o, k in zip(objects, keep) if not k)
    table = Table.read(data.votes_file)
    assert {o.name for o in data.test} == {str(i) for i, s in zip(table["id"], table["split"]) if s == "test"}
    by_name = {o.name: o for o in objects}
    for obj in data.train[:5]:
        src = by_name[obj.name]
        np.testing.assert_array_equal(obj.image, np.moveaxis(src.images, 0, -1))
        np.testing.assert_array_equal(obj.mask, src.segmap == 1)
        np.testing.assert_allclose(obj.q, src.votes[:4] / src.votes[:4].sum(), rtol=0, atol=1e-15)


def test_folder_without_split_column_uses_seeded_split(tmp_path, objects):
    write_training_set(objects[:10], tmp_path)
    table = Table.read(tmp_path / "votes.csv")
    table.remove_columns(["split", "segmap_id"])  # segmap label at the centre is used
    table.write(tmp_path / "votes.csv", overwrite=True)
    a = read_training_set(tmp_path, test_fraction=0.3, seed=2)
    b = read_training_set(tmp_path, test_fraction=0.3, seed=2)
    assert [o.name for o in a.test] == [o.name for o in b.test]
    assert len(a.test) + len(a.train) + len(a.dropped) == 10


def test_folder_errors_name_the_file(tmp_path, objects):
    with pytest.raises(InputError, match="no votes table"):
        read_training_set(tmp_path)
    write_training_set(objects[:3], tmp_path)
    kept = read_training_set(tmp_path)
    name = (kept.train + kept.test)[0].name
    (tmp_path / f"{name}_V.fits").unlink()
    with pytest.raises(InputError, match=f"{name}_V.fits: missing"):
        read_training_set(tmp_path)
    table = Table.read(tmp_path / "votes.csv")
    table.remove_column("unknown")
    table.write(tmp_path / "votes.csv", overwrite=True)
    with pytest.raises(InputError, match="missing column\\(s\\) unknown"):
        read_training_set(tmp_path)


def _csv(path):
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def test_train_command_fine_tunes_and_run_uses_the_weights(tmp_path, data_dir, capsys, monkeypatch):
    out = tmp_path / "out"
    code = main(
        [
            "train",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--init",
            "released",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--learning-rate",
            "released",
        ]
    )
    assert code == 0, capsys.readouterr().err
    for name in ("model.weights.h5", "best.weights.h5", "training_log.csv", "training.png", "training.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = _csv(out / "training_log.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    summary = json.loads((out / "training.json").read_text())
    assert summary["init"] == "released" and summary["settings"]["learning_rate"] == pytest.approx(9.9293e-4)

    # Fine-tuning starts from the released weights: before any step they already
    # classify the held-out objects far better than a random initialisation does.
    from morpheus_core.training.fit import evaluate_network, evaluation_views, initial_model, logits_model
    from morpheus_core.training.settings import TrainSettings

    data = read_training_set(data_dir)
    x, y = evaluation_views(data.test, seed=1)  # the views train() uses for test objects (seed + 1)
    random_init = evaluate_network(logits_model(initial_model(None, seed=0)), x, y, TrainSettings())
    released = rows[0]
    assert released["test_accuracy"] == pytest.approx(
        evaluate_network(logits_model(initial_model("released")), x, y, TrainSettings())["accuracy"], abs=1e-9
    )
    assert released["test_accuracy"] > random_init["accuracy"] + 0.3
    assert released["test_iou_0.5"] > 0.5 > random_init["iou_0.5"] + 0.3
    balanced = np.nanmean([released[f"test_accuracy_{c}"] for c in CLASSES])
    assert balanced > np.nanmean([random_init[f"accuracy_{c}"] for c in CLASSES]) + 0.2

    # The weights file classifies in `run --model`: the run's classifier gives the
    # trained network's outputs (and not the released ones).
    from morpheus_core.classifier import KerasWindowClassifier
    from morpheus_core.weights import load_model, load_released_model
    from pipeline.classify.tasks import load_classifier
    from pipeline.settings import RunSettings

    # (The worker's thread limit cannot be applied in this already-initialised process.)
    monkeypatch.setattr("morpheus_core.runtime.configure_threads", lambda n: {})
    weights = out / "model.weights.h5"
    clf = load_classifier(RunSettings(model=str(weights), run_dir=tmp_path / "run"))
    windows = x[:16]
    trained = KerasWindowClassifier(load_model(weights))(windows)
    np.testing.assert_allclose(clf(windows), trained, rtol=0, atol=2e-5)  # cropped vs full network
    released_out = KerasWindowClassifier(load_released_model())(windows)
    assert np.abs(trained - released_out).max() > 1e-3


def test_train_command_bad_input_exits_2(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--epochs", "1"]) == 2
    assert "training-set folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data-dir", str(tmp_path), "--learning-rate", "fast"])


def _parser_before():
    """``train``'s options as they were written by hand before they were generated from
    TrainRunSettings (flags, types, choices, defaults)."""
    import argparse
    from pathlib import Path

    from morpheus_core.training.settings import TrainSettings
    from pipeline.cli.options import add_options
    from pipeline.cli.train import parse_learning_rate

    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("runs/train"))
    p.add_argument("--init", default="released")
    p.add_argument("--bands", metavar="B1,B2,...")
    p.add_argument("--classes", metavar="C1,C2,...")
    p.add_argument("--pixel-scale", type=float, metavar="ARCSEC")
    p.add_argument("--first-layer", choices=("wavelength", "random"), default="wavelength")
    add_options(p, TrainSettings, types={"learning_rate": parse_learning_rate})
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int)
    p.add_argument("--synthetic", type=int, metavar="N")
    p.add_argument("--synthetic-size", type=int, default=84)
    return p


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "d"],
        [
            "--data-dir",
            "d",
            "--out",
            "o",
            "--init",
            "scratch",
            "--bands",
            "F150W,F200W",
            "--classes",
            "a,b",
            "--pixel-scale",
            "0.03",
            "--first-layer",
            "random",
            "--test-fraction",
            "0.5",
            "--threads",
            "3",
            "--synthetic",
            "12",
            "--synthetic-size",
            "64",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--learning-rate",
            "released",
            "--dropout",
            "0.5",
            "--seed",
            "4",
            "--eval-max",
            "9",
        ],
        ["--data-dir", "d", "--init", "w.weights.h5", "--learning-rate", "1e-3"],
    ],
)
def test_train_options_parse_as_before(argv):
    # The options are generated from TrainRunSettings now: every flag of the hand-written
    # parser parses to the same value (--out is the field out_dir).
    from pipeline.cli.options import from_args
    from pipeline.cli.parser import build_parser
    from pipeline.settings import TrainRunSettings

    before = vars(_parser_before().parse_args(argv))
    now = build_parser().parse_args(["train", *argv])
    assert {
        ("out" if k == "out_dir" else k): v for k, v in vars(now).items() if k not in ("command", "verbose")
    } == before
    run = TrainRunSettings(**from_args(now, TrainRunSettings))
    assert run.out_dir == before["out"] and run.data_dir == before["data_dir"] and run.verbose is False


def test_train_help_lists_the_same_options_as_before():
    from pipeline.cli.parser import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {s for a in train._actions for s in a.option_strings}
    before = {s for a in _parser_before()._actions for s in a.option_strings}
    assert flags == before | {"--verbose"}  # --verbose: TensorFlow's lines, hidden by default
    text = train.format_help()
    for line in (
        "training-set folder (votes.csv + FITS thumbnails)",
        "output folder (default: runs/train)",
        "thumbnail side of simulated objects (px) (default: 84)",
    ):
        assert line in " ".join(text.split())


def test_hyper_parameter_errors_name_the_options(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--eval-max", "-1"]) == 2
    assert capsys.readouterr().err.startswith("error: need --epochs >= 0, --batch-size >= 1, --eval-max >= 0")
