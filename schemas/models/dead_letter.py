"""`DeadLetter`: a record some component could not process. Mirrors `dead_letter.v1.avsc`.

Deliberately lenient: a dead letter must always be writable, whatever was wrong with the
original record, so only the fields needed to find and explain it are checked.
"""

from __future__ import annotations

from typing import ClassVar

from schemas.enums import DeadLetterKind
from schemas.models._base import AvroInt, AvroLong, NonEmptyId, TopLevelRecord, UtcTimestamp


class DeadLetter(TopLevelRecord):
    """The original bytes (`payload`, `key`) with where they came from and why they failed."""

    avro_name: ClassVar[str] = "io.cipulse.DeadLetter"

    source_topic: NonEmptyId
    source_partition: AvroInt
    source_offset: AvroLong
    key: bytes | None = None
    payload: bytes
    kind: DeadLetterKind
    reason: str
    failed_at: UtcTimestamp
    processor: NonEmptyId
