"""Settings fields: each default, help text and choice written once, on a dataclass field.

:func:`setting` makes a field whose metadata the command line reads
(:mod:`pipeline.cli.options` turns every field with ``help`` into an option),
:func:`field_default` reads a field's default back, and :func:`option_flag` and
:func:`option_text` say how the command line spells a field and a value of it: the
one mapping from settings to the words users see (``tile`` -> ``--tile 128``,
``restart`` -> ``--restart``, ``tls`` -> ``--no-tls``), which messages use too.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

__all__ = ["VERBOSE_HELP", "field_default", "option_flag", "option_text", "setting"]

#: Help of ``--verbose`` (every command that may load TensorFlow takes it).
VERBOSE_HELP = (
    "show TensorFlow's start-up lines and other libraries' messages (quiet by default; the log file "
    "has the details either way)"
)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None = None,  # noqa: A002 - argparse's name
    default_factory: Any = dataclasses.MISSING,
    **metadata: Any,
) -> Any:
    """A dataclass field that is also a command-line option (when it has ``help``).

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field`; a field with neither is a required option.
    help : str, optional
        The option's help text; the default is appended to it.
    **metadata
        ``choices``, ``flag``, ``aliases``, ``metavar``, ``type``, and any keys of the
        settings class's own (e.g. ``result``).
    """
    if help is not None:
        metadata["help"] = help
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def _field(cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def field_default(cls: type, name: str) -> Any:
    """The default value of a dataclass field (its default or default factory);
    :data:`dataclasses.MISSING` for a field without one (a required option).
    """
    field_ = _field(cls, name)
    if field_.default is not dataclasses.MISSING:
        return field_.default
    if field_.default_factory is not dataclasses.MISSING:
        return field_.default_factory()
    return dataclasses.MISSING


def _is_flag(cls: type, name: str) -> bool:
    """Whether the field is a ``bool`` (an option without a value)."""
    import typing

    return typing.get_type_hints(cls)[name] is bool


def option_flag(cls: type, name: str) -> str:
    """The command line's flag of field ``name`` of ``cls``.

    ``--`` and the name with dashes, unless the field's metadata names its ``flag``; a
    ``bool`` that defaults to ``True`` is turned off by ``--no-NAME``.

    Examples
    --------
    >>> from pipeline.settings import RunSettings
    >>> option_flag(RunSettings, "threads_per_worker"), option_flag(RunSettings, "tls")
    ('--threads-per-worker', '--no-tls')
    """
    field_ = _field(cls, name)
    dashed = name.replace("_", "-")
    if _is_flag(cls, name) and field_default(cls, name) is True:
        return field_.metadata.get("flag", "--no-" + dashed)
    return field_.metadata.get("flag", "--" + dashed)


def option_text(cls: type, name: str, value: Any) -> str:
    """How a user gives ``name = value`` on the command line: ``--tile 128``;
    a ``bool`` as its flag alone, when the flag gives that value (``--restart``,
    ``--no-tls``), else ``--restart`` left out (``no --restart``).

    A field that is not an option (no ``help``) is named as it is recorded
    (``window 40``).
    """
    field_ = _field(cls, name)
    if "help" not in field_.metadata:
        return f"{name.replace('_', ' ')} {value}"
    flag = option_flag(cls, name)
    if _is_flag(cls, name):
        return flag if bool(value) != bool(field_default(cls, name)) else f"no {flag}"
    if value is None:
        return f"no {flag}"
    return f"{flag} {shlex.quote(str(value))}"
