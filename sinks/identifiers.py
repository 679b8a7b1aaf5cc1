"""Checks for names that end up spliced into SQL text.

ClickHouse binds values (`{name:Type}`) but not database or table names in DDL, so every
identifier that reaches SQL text passes through `checked_identifier` first: a name that cannot
be written unquoted is rejected instead of escaped, which keeps the DDL files readable and
makes injection impossible by construction.
"""

from __future__ import annotations

import re

from sinks.exceptions import SinkError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def checked_identifier(name: str, what: str = "database name") -> str:
    """Return `name` unchanged if it is a plain ClickHouse identifier, else raise SinkError."""
    if not _IDENTIFIER.match(name):
        raise SinkError(
            f"invalid {what} {name!r}: use letters, digits and underscores only, "
            "starting with a letter or underscore (at most 128 characters)"
        )
    return name
