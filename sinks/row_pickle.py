"""Cheap pickling for the row dataclasses the sinks ship to the ClickHouse engine process.

A slotted dataclass pickles through copyreg's generic slot walk: ~13 us per build_events row,
paid on the worker's Python thread for every event. As (class, field values) it is ~3 us; the
engine process re-runs `__init__` (and its checks) when it loads the row.
"""

from __future__ import annotations

import operator
from dataclasses import fields
from typing import Any, TypeVar

RowClass = TypeVar("RowClass", bound=type)


def pickled_as_fields(cls: RowClass) -> RowClass:
    """Class decorator (outside `@dataclass`): pickle instances as `cls(*field values)`."""
    values = operator.attrgetter(*(field.name for field in fields(cls)))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return (cls, values(self))

    cls.__reduce__ = __reduce__  # type: ignore[method-assign, assignment]
    return cls
