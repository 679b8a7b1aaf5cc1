"""Errors of the reporter SDK; all derive from the project's root `CipulseError`."""

from __future__ import annotations

from streams.exceptions import StreamsError


class ReporterError(StreamsError):
    """The reporter cannot do what the runner asked; the message says what to fix."""


class SnapshotRejected(ReporterError):
    """A reported snapshot breaks the build lifecycle; nothing of it was accepted.

    `problems` lists every rule it breaks, one sentence each, so a runner can log them all.
    """

    def __init__(self, build_id: str, problems: list[str]) -> None:
        self.build_id = build_id
        self.problems = list(problems)
        super().__init__(f"snapshot of build {build_id} rejected: " + "; ".join(problems))


class OutboxError(ReporterError):
    """The local SQLite outbox cannot be opened or written (disk full, wrong path, locked)."""
