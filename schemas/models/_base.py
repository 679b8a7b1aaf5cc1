"""Shared base class and field types of the contract models.

The models mirror the latest Avro version of each record and are what every other package
handles. They are frozen so a decoded event cannot be altered on its way through an agent, and
they forbid extra fields so a typo in a producer fails at construction, not in a consumer.
The field types below carry the rules that hold for every record: ids are non-empty, Avro
`int`/`long` stay in range (so a valid model always encodes), and timestamps are aware UTC
datetimes at the millisecond precision Avro's `timestamp-millis` stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _non_empty_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty id (got an empty or blank string)")
    return value


def _utc_millis(value: datetime) -> datetime:
    """Require an aware datetime; normalise to UTC and drop sub-millisecond digits.

    Dropping the microseconds here (not only in the Avro writer) makes a model equal to itself
    after a round trip through bytes, which consumers rely on for dedup and tests.
    """
    if value.tzinfo is UTC and type(value) is datetime and not value.microsecond % 1000:
        return value  # already normalised (every decoded or copied timestamp): nothing to redo
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "must be timezone-aware (naive datetimes are ambiguous); "
            "pass e.g. datetime.now(UTC) or a datetime with tzinfo=UTC"
        )
    try:
        as_utc = value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+05:30 has no UTC representation
        raise ValueError(f"{value.isoformat()} is outside the representable UTC range") from exc
    return as_utc.replace(microsecond=as_utc.microsecond // 1000 * 1000)


NonEmptyId = Annotated[str, AfterValidator(_non_empty_id)]
"""An identifier: a string with at least one non-blank character."""

UtcTimestamp = Annotated[datetime, AfterValidator(_utc_millis)]
"""Avro `timestamp-millis`: aware, UTC, millisecond precision."""

AvroInt = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
"""Avro `int` (32-bit signed)."""

AvroLong = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""Avro `long` (64-bit signed)."""

SequenceNumber = Annotated[int, Field(ge=0, le=2**63 - 1)]

DurationMillis = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A duration can't be negative: a clock-skewed reporter's value is refused at the door."""
"""A per-entity sequence number (Avro `long`), never negative."""


_set_attribute = object.__setattr__  # models are frozen: pydantic's own __setattr__ refuses


class RecordModel(BaseModel):
    """Base of every contract model: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_checked_values(cls, fields: dict[str, Any]) -> Self:
        """Build a model from values that already passed these rules, without checking them again.

        Why: the build-state agent derives a change set per event from a state whose every value
        came from a validated event, and validating the copy was ~15 % of its per-event work.
        Every field must be given (no defaults are filled in), datetimes must already be UTC
        (`datetime.UTC`) at millisecond precision. A property test holds the callers to giving
        exactly what validation would produce.
        """
        if fields.keys() != cls.model_fields.keys():
            missing = sorted(set(cls.model_fields) - set(fields))
            unknown = sorted(set(fields) - set(cls.model_fields))
            raise TypeError(f"{cls.__name__}.from_checked_values needs every field: missing {missing}, unknown {unknown}")
        model = object.__new__(cls)
        _set_attribute(model, "__dict__", fields)
        _set_attribute(model, "__pydantic_fields_set__", set(fields))
        _set_attribute(model, "__pydantic_extra__", None)
        _set_attribute(model, "__pydantic_private__", None)
        return model


class TopLevelRecord(RecordModel):
    """A model that is published on its own, with an `.avsc` in `schemas/avro/`.

    `avro_name` is the Avro full name the catalog uses to find the model's schema versions.
    """

    avro_name: ClassVar[str]
