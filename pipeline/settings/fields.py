"""Settings fields: each default, help text and choice written once, on a dataclass field.

:func:`setting` makes a field whose metadata the command line reads
(:mod:`pipeline.cli.options` turns every field with ``help`` into an option), and
:func:`field_default` reads a field's default back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["field_default", "setting"]


def setting(default: Any = dataclasses.MISSING, *, help: str | None = None,  # noqa: A002 - argparse's name
            default_factory: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A dataclass field that is also a command-line option (when it has ``help``).

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field`.
    help : str, optional
        The option's help text; the default is appended to it.
    **metadata
        ``choices``, ``flag``, ``aliases``, ``metavar``, ``type``, and any keys of the
        settings class's own (e.g. ``result``).
    """
    if help is not None:
        metadata["help"] = help
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def field_default(cls: type, name: str) -> Any:
    """The default value of a dataclass field (its default or default factory)."""
    field_ = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field_.default is not dataclasses.MISSING:
        return field_.default
    return field_.default_factory()  # type: ignore[misc]
