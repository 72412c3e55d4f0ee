"""pipeline.cli.options: argparse options generated from dataclass fields, checked against
what argparse itself does with hand-written options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.cli.options import add_options, from_args
from pipeline.settings.fields import field_default, setting


@dataclass
class Toy:
    name: str = setting("a", help="a name", choices=("a", "b"))
    size: int = setting(3, help="a size", metavar="N")
    scale: float | None = setting(None, help="a scale", flag="--zoom")
    folder: Path | None = setting(None, help="a folder")
    verbose: bool = setting(False, help="say more")
    progress: bool = setting(True, help="no progress bar")
    items: list[int] = setting(default_factory=list)  # no help: not an option
    rate: float = setting(0.5, help="paper, or a number", aliases=("--speed",))


def _hand_written() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", choices=("a", "b"), default="a")
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--zoom", dest="scale", type=float, default=None)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--rate", "--speed", type=float, default=0.5)
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--name", "b", "--size", "7", "--zoom", "1.5", "--folder", "x/y", "--verbose", "--no-progress"],
        ["--speed", "2"],
    ],
)
def test_generated_options_parse_as_hand_written_ones(argv):
    parser = argparse.ArgumentParser()
    added = add_options(parser, Toy)
    assert added == ["name", "size", "scale", "folder", "verbose", "progress", "rate"]
    assert vars(parser.parse_args(argv)) == vars(_hand_written().parse_args(argv))
    assert Toy(**from_args(parser.parse_args(argv), Toy)) == Toy(**vars(_hand_written().parse_args(argv)))


def test_help_choices_and_bad_values(capsys):
    parser = argparse.ArgumentParser()
    add_options(parser, Toy)
    text = parser.format_help()
    assert "a size (default: 3)" in text and "--zoom" in text and "--no-progress" in text and "N" in text
    assert "items" not in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "c"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "x"])
    capsys.readouterr()


def test_options_not_given_stay_out_without_defaults():
    parser = argparse.ArgumentParser()
    add_options(parser, Toy, ("size", "scale"), keep_defaults=False)
    assert from_args(parser.parse_args([]), Toy, ("size", "scale")) == {}
    assert from_args(parser.parse_args(["--size", "4"]), Toy, ("size", "scale")) == {"size": 4}


def test_converter_override_and_fields_without_help():
    parser = argparse.ArgumentParser()
    add_options(parser, Toy, ("rate",), types={"rate": lambda t: 9.0 if t == "paper" else float(t)})
    assert parser.parse_args(["--rate", "paper"]).rate == 9.0
    with pytest.raises(TypeError, match="items"):
        add_options(argparse.ArgumentParser(), Toy, ("items",))
    assert field_default(Toy, "items") == [] and field_default(Toy, "size") == 3
