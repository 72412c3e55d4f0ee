"""docs/options.md: the option reference, generated from the parser, is current."""

from __future__ import annotations

import argparse

from pipeline.cli.reference import REFERENCE, main, reference_text


def test_docs_options_md_is_current(capsys):
    # Run `python -m pipeline.cli.reference` after changing a setting's flag, default or help.
    assert REFERENCE.read_text() == reference_text()
    assert main(["--check"]) == 0


def test_the_reference_has_every_command_and_option_with_its_default():
    from pipeline.cli.parser import build_parser

    text = reference_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["run", "segment", "catalog", "status", "resubmit", "train", "view"]
    for name, command in sub.choices.items():
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert f"`{action.option_strings[0]}" in section, (name, action.option_strings)
    run = text.split("\n## run\n", 1)[1].split("\n## ", 1)[0]
    assert "| `--tile TILE` | 256 | tile core size in pixels |" in run
    resubmit = text.split("\n## resubmit\n", 1)[1].split("\n## ", 1)[0]
    assert "| `--no-progress` |  | no progress bar |" in resubmit
    assert "| `--batch-size BATCH_SIZE` | the run's recorded value, else 512 |" in resubmit


def test_check_fails_when_the_file_is_stale(monkeypatch, tmp_path, capsys):
    import pipeline.cli.reference as reference

    stale = tmp_path / "options.md"
    stale.write_text(reference_text().replace("tile core size", "tile size"))
    monkeypatch.setattr(reference, "REFERENCE", stale)
    assert reference.main(["--check"]) == 1
    assert "not current" in capsys.readouterr().err
    assert reference.main([]) == 0 and stale.read_text() == reference_text()
