"""The notification log of the worker: the `notify-log` Faust table, staged per batch.

Keys are notification ids and flush ids; values a `SentRecord` as JSON. Writes are staged in a
`BatchStates` like every other table write, so they reach the table (and its changelog) only
after the batch's other effects were acknowledged. Each record is stored under the partition of
the event being handled: a receipt, keyed by group key, and lookups happen while handling that
same group's requests, so a record is always found where it was written.

Retention is the changelog's: the table is declared `cleanup.policy=compact,delete` with
`retention.ms` from `notify_log_retention_days`, so Kafka drops records older than that and a
rebuilt store no longer holds them. Keep it longer than the input topics' retention, or a
replay from the beginning could send again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from faust.types import EventT

from streams.batch_states import BatchStates
from streams.notify_dedup import SentRecord


def load_sent(raw: bytes | None) -> SentRecord | None:
    return None if raw is None else SentRecord.model_validate_json(raw)


def dump_sent(record: SentRecord) -> bytes:
    return record.model_dump_json().encode()


def changelog_configs(retention_days: float) -> dict[str, str]:
    """Topic configs of the log's changelog: compacted, and records older than the retention dropped."""
    return {"cleanup.policy": "compact,delete", "retention.ms": str(int(retention_days * 86_400_000))}


class TableNotificationLog:
    """`streams.notify_dedup.NotificationLog` over staged table states.

    Set `current` to the event being handled before `record_sent`: its partition stores the record.
    """

    def __init__(self, states: BatchStates[SentRecord]) -> None:
        self._states = states
        self.current: EventT[Any] | None = None

    @property
    def states(self) -> BatchStates[SentRecord]:
        """The staged writes: commit them with the batch."""
        return self._states

    def was_sent(self, key: str) -> bool:
        return self._states.get(key.encode()) is not None

    def record_sent(self, key: str, sent_at: datetime, attempt: int) -> None:
        if self.current is None:
            raise RuntimeError("TableNotificationLog.record_sent needs the current event (set .current)")
        if not self.was_sent(key):
            self._states.put(key.encode(), SentRecord(key=key, sent_at=sent_at, attempt=attempt), self.current)

    def get(self, key: str) -> SentRecord | None:
        return self._states.get(key.encode())
