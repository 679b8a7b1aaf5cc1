"""The reporter SDK a CI runner embeds (issue 6).

The runner calls `BuildReporter.report(snapshot)` with its current build tree whenever it
likes. The reporter diffs it against the last accepted snapshot of that build, commits the
changes as numbered `BuildEvent`s to a local SQLite outbox (the moment a change is
"accepted"), and a background thread drains the outbox in order through an idempotent
confluent-kafka producer, deleting rows only after the broker acknowledged them.

Modules, one job each: `snapshot` (the tree and how reports accumulate), `diff` (snapshot
pair -> events and back, pure), `lifecycle` (which successors the worker would accept),
`outbox` (SQLite, durable), `sender` (outbox -> Kafka with backoff), `reporter` (the facade).
"""

from streams.reporter.exceptions import OutboxError, ReporterError, SnapshotRejected
from streams.reporter.reporter import DEFAULT_TOPIC, BuildReporter, ReportReceipt, ReporterConfig
from streams.reporter.snapshot import BuildSnapshot, StageSnapshot, TaskSnapshot

__all__ = [
    "DEFAULT_TOPIC",
    "BuildReporter",
    "BuildSnapshot",
    "OutboxError",
    "ReportReceipt",
    "ReporterConfig",
    "ReporterError",
    "SnapshotRejected",
    "StageSnapshot",
    "TaskSnapshot",
]
