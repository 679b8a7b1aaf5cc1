"""De-duplication of notifications: the dedup key and the notification log.

Alertmanager's rule, kept here: the log is written only AFTER the receiver acknowledged the
send (2xx). Writing it before would turn a crash between "logged" and "sent" into a lost
notification; writing it after turns the same crash into a re-send, which carries the same
`Idempotency-Key` so the receiver can drop it. Before sending, the sender drops every member
whose key `was_sent` (`unsent`); a Kafka redelivery, a rebalance or a restart therefore re-adds
the notification, but never sends it twice once one send was acknowledged.

The key depends only on what the notification is about, never on when it was seen: subscription,
subject (kind + id), transition and version (the build's `revision` at its final status, or the
audit alert's episode).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas import NotificationRequest, NotificationTransition

KEY_FORMAT = "cipulse.notify.v1"
"""Part of every key; change it only together with a migration of the stored log."""


def dedup_key(
    subscription_id: str,
    subject_kind: str,
    subject_id: str,
    transition: NotificationTransition,
    version: int,
) -> str:
    """sha256 hex of the canonical JSON of the tuple; the same inputs give the same key forever."""
    canonical = json.dumps(
        [KEY_FORMAT, subscription_id, subject_kind, subject_id, transition.value, version],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class SentRecord(BaseModel):
    """One acknowledged send in the log (JSON-serialisable, for a Faust table value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    sent_at: datetime
    attempt: int = Field(ge=1)
    """The attempt that was acknowledged (1 = first try)."""


class NotificationLog(Protocol):
    """Keys of acknowledged sends. Write with `record_sent` only after a 2xx (or a log
    channel's write); the in-memory version is for tests, a Faust table for the worker."""

    def was_sent(self, key: str) -> bool: ...

    def record_sent(self, key: str, sent_at: datetime, attempt: int) -> None:
        """Idempotent: recording an already recorded key keeps the first record."""
        ...

    def get(self, key: str) -> SentRecord | None: ...


class InMemoryNotificationLog:
    """`NotificationLog` in a dict; state is lost with the process (tests).

    The worker's log is the `notify-log` table (`streams.notify_log_table`), whose retention is
    its changelog's (`compact,delete`); `forget_sent_before` is this class's equivalent.
    """

    def __init__(self) -> None:
        self._records: dict[str, SentRecord] = {}

    def was_sent(self, key: str) -> bool:
        return key in self._records

    def record_sent(self, key: str, sent_at: datetime, attempt: int) -> None:
        if key not in self._records:
            self._records[key] = SentRecord(key=key, sent_at=sent_at, attempt=attempt)

    def get(self, key: str) -> SentRecord | None:
        return self._records.get(key)

    def forget_sent_before(self, cutoff: datetime) -> int:
        """Drop records older than `cutoff`, return how many."""
        stale = [key for key, record in self._records.items() if record.sent_at < cutoff]
        for key in stale:
            del self._records[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._records)


N = TypeVar("N", bound=NotificationRequest)


def unsent(notifications: Iterable[N], log: NotificationLog) -> list[N]:
    """The notifications still to send: not acknowledged before, each key once."""
    seen: set[str] = set()
    result: list[N] = []
    for notification in notifications:
        key = notification.notification_id
        if key in seen or log.was_sent(key):
            continue
        seen.add(key)
        result.append(notification)
    return result
