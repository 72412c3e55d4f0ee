"""The option reference, ``docs/options.md``, generated from the command line's parser
(itself generated from the settings' fields): every command, every option, its default
and its help.

::

    python -m pipeline.cli.reference            # rewrite docs/options.md
    python -m pipeline.cli.reference --check    # exit 1 if it is not current
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

__all__ = ["REFERENCE", "main", "reference_text"]

#: Where the reference lives in the repository.
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "options.md"

_DEFAULT = re.compile(r" \(default: ([^()]*)\)$")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default_and_help(action: argparse.Action) -> tuple[str, str]:
    """The option's default (as its help text gives it, or its flag's state) and its help."""
    text = (action.help or "").replace("%%", "%")
    found = _DEFAULT.search(text)
    if found:
        return found.group(1), text[: found.start()]
    if action.required:
        return "required", text
    if isinstance(action.default, list) and not action.default:
        return "none", text
    return "", text


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    formatter = parser._get_formatter()
    for group in parser._action_groups:
        actions = [
            a for a in group._group_actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        ]
        if not actions:
            continue
        title = group.title if group.title not in ("options", "optional arguments") else "general"
        lines += [f"**{title}**", "", "| option | default | meaning |", "| --- | --- | --- |"]
        for action in actions:
            default, text = _default_and_help(action)
            invocation = formatter._format_action_invocation(action)
            lines.append(f"| `{invocation}` | {_cell(default)} | {_cell(text)} |")
        lines.append("")
    return lines


def reference_text() -> str:
    """The text of ``docs/options.md``."""
    from pipeline.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    lines = [
        "# Command-line options",
        "",
        "Every option of every `python -m pipeline` command, with its default and meaning. Generated from the",
        "settings classes (`pipeline/settings/`) by `python -m pipeline.cli.reference`; do not edit by hand",
        "(a test fails when this file is not current). `python -m pipeline COMMAND --help` prints the same.",
        "",
    ]
    lines += [f"- [`{name}`](#{name}): {helps.get(name, '')}" for name in sub.choices]
    lines.append("")
    for name, command in sub.choices.items():
        lines += [f"## {name}", "", helps.get(name, ""), ""]
        if command.description:
            lines += [" ".join(command.description.split()), ""]
        lines += _options(command)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/options.md`` (or, with ``--check``, say whether it is current)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.cli.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/options.md is not current")
    args = parser.parse_args(argv)
    text = reference_text()
    current = REFERENCE.read_text() if REFERENCE.exists() else ""
    if args.check:
        if current != text:
            print(f"{REFERENCE} is not current: run python -m pipeline.cli.reference", file=sys.stderr)
            return 1
        return 0
    if current != text:
        REFERENCE.write_text(text)
        print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
