"""Command-line options generated from settings dataclasses.

Each setting is written once, as a dataclass field: its default, and in the field's
metadata its help text and, where they apply, ``choices``, ``flag``, ``aliases``,
``metavar`` and ``type`` (the argparse converter; otherwise taken from the field's
annotation). :func:`add_options` turns the fields into ``argparse`` options and
:func:`from_args` turns the parsed namespace back into the dataclass's keywords, so
the command line never restates a default, a choice or a help text.

A field without ``help`` in its metadata is not a command-line option.

Examples
--------
>>> from dataclasses import dataclass
>>> from pipeline.settings.fields import setting
>>> @dataclass
... class Settings:
...     tile: int = setting(256, help="tile size in pixels")
>>> parser = argparse.ArgumentParser()
>>> _ = add_options(parser, Settings)
>>> Settings(**from_args(parser.parse_args(["--tile", "64"]), Settings))
Settings(tile=64)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.settings.fields import field_default, option_flag

__all__ = ["add_location_options", "add_options", "from_args", "given_options", "storage_options_from"]


def _option_fields(cls: type, names: Iterable[str] | None) -> list[dataclasses.Field]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if names is None:
        return [f for f in fields.values() if "help" in f.metadata]
    chosen = [fields[name] for name in names]
    missing = [f.name for f in chosen if "help" not in f.metadata]
    if missing:
        raise TypeError(f"{cls.__name__} fields without help are not options: {missing}")
    return chosen


def _converter(annotation: Any) -> Any:
    """The argparse ``type`` for a field annotation (``int | None`` -> ``int``)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    if annotation in (int, float, Path):
        return annotation
    return str


def add_options(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    names: Iterable[str] | None = None,
    *,
    keep_defaults: bool = True,
    types: dict[str, Any] | None = None,
    recorded: str | None = None,
) -> list[str]:
    """Add one option per setting of ``cls`` to ``parser`` (a parser or argument group).

    Parameters
    ----------
    parser : argparse.ArgumentParser or argparse argument group
        Where the options go.
    cls : type
        A dataclass whose option fields carry ``help`` in their metadata.
    names : iterable of str, optional
        The fields to add, in this order (default: every field with ``help``).
    keep_defaults : bool
        ``False`` leaves an option that is not given out of the namespace instead of
        filling in the default: for commands whose settings come from a record and
        the command line only overrides some of them (``resubmit``).
    types : dict, optional
        Argparse converters by field name, for classes that cannot name them in their
        metadata (the core's settings do not import the pipeline).
    recorded : str, optional
        With ``keep_defaults=False``: where a value not given comes from, for the help
        text (``"the run's recorded value"`` -> ``(default: the run's recorded value)``;
        ``", else DEFAULT"`` is added where the field has a default).

    Returns
    -------
    list of str
        The names of the fields added (the namespace's attribute names).

    Notes
    -----
    A ``bool`` field that defaults to ``False`` becomes ``--flag``; one that defaults to
    ``True`` becomes ``--no-flag`` (:func:`~pipeline.settings.fields.option_flag`). A
    field without a default is a required option.
    """
    hints = typing.get_type_hints(cls)
    added = []
    for field_ in _option_fields(cls, names):
        meta = field_.metadata
        default = field_default(cls, field_.name)
        flag = option_flag(cls, field_.name)
        kwargs: dict[str, Any] = {"dest": field_.name, "help": meta["help"]}
        if default is dataclasses.MISSING:
            kwargs["required"] = True
            default = None
        if hints[field_.name] is bool:
            kwargs["action"] = "store_false" if default else "store_true"
        else:
            kwargs["type"] = (types or {}).get(field_.name) or meta.get("type") or _converter(hints[field_.name])
            for key in ("choices", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
            shown = default is not None and default != ""
            if recorded:
                kwargs["help"] += f" (default: {recorded}{f', else {default}' if shown else ''})"
            elif shown:
                kwargs["help"] += f" (default: {default})"
        if not kwargs.get("required"):
            kwargs["default"] = default if keep_defaults else argparse.SUPPRESS
        parser.add_argument(flag, *meta.get("aliases", ()), **kwargs)
        added.append(field_.name)
    return added


def from_args(args: argparse.Namespace, cls: type, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The keywords of ``cls`` found in ``args`` (options added by :func:`add_options`)."""
    return {f.name: getattr(args, f.name) for f in _option_fields(cls, names) if hasattr(args, f.name)}


def given_options(args: argparse.Namespace, cls: type, names: Iterable[str] | None = None) -> list[str]:
    """The command line of the options of ``cls`` in ``args``: every value that is not
    ``None``, flags only when given (``--epochs 3 --out runs/train --verbose``).
    """
    hints = typing.get_type_hints(cls)
    words: list[str] = []
    for field_ in _option_fields(cls, names):
        value = getattr(args, field_.name, None)
        if value is None:
            continue
        flag = option_flag(cls, field_.name)
        if hints[field_.name] is bool:
            if value != field_default(cls, field_.name):
                words.append(flag)
        else:
            words += [flag, str(value)]
    return words


def add_location_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--run-dir`` and ``--storage-option``: where a run lives (options of every command)."""
    from pipeline.rundir.location import run_dir_value

    parser.add_argument(
        "--run-dir",
        type=run_dir_value,
        required=required,
        help="run directory: a path, or a URL such as s3://bucket/run"
        + ("" if required else " (default: runs/<mosaic>)"),
    )
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option of a URL run directory, e.g. endpoint_url=https://... "
        "(repeatable; values are JSON when they parse, else strings; "
        "credentials come from the environment, never from here)",
    )


def storage_options_from(items: Iterable[str] | None) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` items as a dict (JSON values where they parse),
    screened for credentials (:func:`pipeline.rundir.credentials.check_storage_options`).

    Raises
    ------
    InputError
        An item that is not ``KEY=VALUE``, or a credential.
    """
    import json

    from pipeline.errors import InputError
    from pipeline.rundir.credentials import check_storage_options

    options: dict[str, Any] = {}
    for number, item in enumerate(items or [], 1):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():  # not echoed: it may be a credential given by mistake
            raise InputError(f"--storage-option number {number}: expected KEY=VALUE (its text is not shown)")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return check_storage_options(options)  # no credentials on command lines
