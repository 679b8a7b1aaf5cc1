"""Exceptions of the event contract.

`CipulseError` is the root of every error cipulse raises on purpose, so callers can tell our
failures from library bugs. Below it, `SerdeError` groups everything that can go wrong turning
bytes into models: a stream agent catches `SerdeError`, dead-letters the record with the message,
and moves on. Programming mistakes (asking for a record the catalog does not hold, a broken
`.avsc` file in the package) are not `SerdeError`s, so they are never dead-lettered silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class CipulseError(Exception):
    """Root of every error raised by cipulse code."""


class SerdeError(CipulseError):
    """Bytes could not be turned into a model, or a model into bytes."""


class UndecodableError(SerdeError):
    """The payload is not a readable cipulse record.

    Raised for a wrong single-object marker, a fingerprint no known schema has, and truncated or
    corrupt Avro. Nothing about the payload can be trusted, so keep the raw bytes.
    """


class SchemaViolationError(SerdeError):
    """The payload decoded cleanly but its values break the model's rules.

    `errors` holds pydantic's error list (location, message, input) so a dead letter can say
    exactly which field is wrong.
    """

    def __init__(self, message: str, errors: Sequence[Mapping[str, object]] = ()) -> None:
        super().__init__(message)
        self.errors: tuple[Mapping[str, object], ...] = tuple(errors)


class UnknownSchemaError(CipulseError):
    """A record name, version or model class the schema catalog does not hold.

    This is a programming or deployment error (a model without an `.avsc`, a typo in a record
    name), not bad input: fix the caller or add the schema to `schemas/avro/`.
    """


class SchemaCatalogError(CipulseError):
    """The `.avsc` files shipped in `schemas/avro/` are inconsistent.

    Raised while the catalog loads (unparseable file, misnamed file, two versions with the same
    fingerprint, a record without a model). The package is broken; fix the file named in the
    message.
    """
