"""Errors raised by the ClickHouse sink; all derive from the project's root `CipulseError`.

Callers catch `SinkError` to tell "ClickHouse did not take the batch" from bugs: a worker that
sees one must not commit the Kafka offsets of the batch it was writing.
"""

from __future__ import annotations

from schemas.exceptions import CipulseError


class SinkError(CipulseError):
    """Something between cipulse and ClickHouse failed in a way the operator can fix."""


class ClickHouseUnavailableError(SinkError):
    """No usable client could be opened: wrong DSN, server down, or the embedded data path is
    owned by another process. The message names the DSN (without its password) and the fix."""


class SinkWriteError(SinkError):
    """An insert was rejected or failed midway; the message names the table.

    Nothing of the failed call may be treated as written: retry the whole call (rows are
    deduplicated on read, so a retry after a partial write never double counts).
    """

    def __init__(self, message: str, table: str) -> None:
        super().__init__(message)
        self.table = table

    def __reduce__(self) -> tuple[type[SinkWriteError], tuple[str, str]]:
        """Pickle with the table: the error crosses from the ClickHouse engine process."""
        return (type(self), (str(self), self.table))


class MigrationError(SinkError):
    """The DDL history in the database disagrees with the migration files shipped in
    `sinks/ddl/`, or a migration statement failed. The message names the file."""
