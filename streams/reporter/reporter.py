"""`BuildReporter`: the one object a CI runner holds.

`report(snapshot)` diffs the snapshot against the build's last accepted one, checks the change
against the lifecycle, numbers the changes and commits them to the outbox; it returns once
they are committed (a local SQLite transaction, never a Kafka round trip). Delivery happens on
the sender thread. Several builds may share one reporter; each keeps its own `seq`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from schemas.serde import encode
from streams.producer import producer_config
from streams.reporter.diff import diff
from streams.reporter.exceptions import ReporterError
from streams.reporter.lifecycle import check_successor
from streams.reporter.outbox import BuildProgress, Outbox, OutboxClaim, PendingEvent, Synchronous
from streams.reporter.sender import OutboxSender, SenderStats, sender_producer_config
from streams.reporter.snapshot import BuildSnapshot, carry_forward

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "cipulse.build-events"
"""`<CIPULSE_TOPIC_PREFIX>.build-events` with the default prefix."""


@dataclass(frozen=True)
class ReporterConfig:
    """How the reporter stores and sends; the defaults suit one runner host."""

    bootstrap: str
    outbox_path: Path
    topic: str = DEFAULT_TOPIC
    window: int = 5000
    """Rows produced but not yet acknowledged, at most (bounds memory during an outage)."""
    read_batch: int = 1000
    delivery_timeout_s: float = 30.0
    """librdkafka's `message.timeout.ms`: after this a row counts as failed and the drain backs off."""
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    idle_wait_s: float = 1.0
    close_timeout_s: float = 10.0
    """How long `close()` (and leaving a `with` block) keeps delivering before it stops."""
    synchronous: Synchronous = "FULL"
    """SQLite `synchronous`: FULL survives power loss; NORMAL only a killed process (faster)."""
    producer_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outbox_path", Path(self.outbox_path))  # a str works too
        if self.window < 1 or self.read_batch < 1:
            raise ReporterError("window and read_batch must be at least 1")
        if self.delivery_timeout_s <= 0 or self.backoff_base_s <= 0 or self.backoff_cap_s < self.backoff_base_s:
            raise ReporterError("delivery_timeout_s and backoff_base_s must be > 0 and backoff_cap_s >= backoff_base_s")


@dataclass(frozen=True)
class ReportReceipt:
    """What one `report` accepted: the seqs of its changes (empty when nothing changed)."""

    build_id: str
    seqs: range

    @property
    def changes(self) -> int:
        return len(self.seqs)


class BuildReporter:
    def __init__(self, config: ReporterConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._drained = threading.Condition()
        self._progress: dict[str, BuildProgress] = {}
        kafka_config = sender_producer_config(
            producer_config(config.bootstrap, **config.producer_overrides), config.delivery_timeout_s
        )
        self._claim = OutboxClaim(config.outbox_path)
        try:
            self._outbox = Outbox(config.outbox_path, synchronous=config.synchronous)
        except BaseException:
            self._claim.release()
            raise
        self._closed = False
        self._sender = OutboxSender(
            config.outbox_path,
            config.topic,
            kafka_config,
            window=config.window,
            read_batch=config.read_batch,
            backoff_base_s=config.backoff_base_s,
            backoff_cap_s=config.backoff_cap_s,
            idle_wait_s=config.idle_wait_s,
            synchronous=config.synchronous,
            on_deleted=self._deleted,
        )
        self._sender.start()

    # ------------------------------------------------------------ the runner's calls

    def report(self, snapshot: BuildSnapshot, *, at: datetime | None = None) -> ReportReceipt:
        """Accept the changes since the build's last report; returns once they are committed.

        Raises `SnapshotRejected` (nothing accepted) if the worker would refuse the change, and
        `OutboxError` if the outbox cannot be written. `at` is the events' time (default now).
        """
        if self._closed:
            raise ReporterError("report() after close(): create a new BuildReporter")
        with self._lock:
            progress = self._progress.get(snapshot.build_id) or self._outbox.progress(snapshot.build_id)
            current = carry_forward(progress.snapshot, snapshot)
            check_successor(progress.snapshot, current)
            events = diff(progress.snapshot, current, next_seq=progress.next_seq, event_time=at or self._clock())
            if not events:
                self._progress[snapshot.build_id] = progress
                return ReportReceipt(snapshot.build_id, range(progress.next_seq, progress.next_seq))
            next_seq = progress.next_seq + len(events)
            key = snapshot.build_id.encode()
            self._outbox.accept(current, [PendingEvent(e.seq, key, encode(e)) for e in events], next_seq)
            self._progress[snapshot.build_id] = BuildProgress(next_seq, current)
        self._sender.wake()
        return ReportReceipt(snapshot.build_id, range(progress.next_seq, next_seq))

    def last_snapshot(self, build_id: str) -> BuildSnapshot | None:
        """The build as accepted so far (what the next `report` is diffed against)."""
        with self._lock:
            progress = self._progress.get(build_id) or self._outbox.progress(build_id)
        return progress.snapshot

    def pending(self) -> int:
        """Changes accepted but not yet acknowledged by the broker."""
        with self._drained:
            return self._outbox.count()

    @property
    def stats(self) -> SenderStats:
        return self._sender.stats

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until the broker acknowledged everything accepted; returns what is still pending."""
        self._sender.wake()
        deadline = time.monotonic() + timeout
        with self._drained:
            while (left := self._outbox.count()) and (remaining := deadline - time.monotonic()) > 0:
                self._drained.wait(min(remaining, 1.0))
        return left

    def close(self, timeout: float | None = None) -> int:
        """Deliver for up to `timeout` s (default `close_timeout_s`), then stop; returns the
        changes left in the outbox, which the next reporter on the same file sends."""
        if self._closed:
            return 0
        self._closed = True
        self._sender.stop(self.config.close_timeout_s if timeout is None else timeout)
        left = self.pending()
        self._outbox.close()
        self._claim.release()
        if left:
            log.warning("reporter closed with %d changes in %s; they are sent on the next start", left,
                        self.config.outbox_path)
        return left

    def __enter__(self) -> BuildReporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ sender thread

    def _deleted(self, outbox: Outbox, row_ids: list[int]) -> None:
        """Called on the sender thread with rows the broker acknowledged."""
        with self._drained:
            outbox.delete(row_ids)
            self._drained.notify_all()
