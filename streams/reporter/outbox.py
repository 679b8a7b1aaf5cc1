"""The runner-local SQLite outbox: every change goes through it, and a change is *accepted*
only once its transaction is committed here.

One file holds three things, always written together in one transaction by `accept`:
- `outbox`: the encoded events not yet acknowledged by the broker, in acceptance order
  (`id` only grows, so draining by `id` keeps each build's `seq` order);
- `builds`: per build, the next sequence number and the last accepted snapshot, so a
  restarted runner neither re-sends what it already accepted nor reuses a number.

WAL mode lets the sender read and delete while the runner appends; `synchronous=FULL` makes a
commit durable across an OS crash or power loss, not only a killed process. One `Outbox` object
per thread (SQLite connections are not shared): the reporter has one, the sender another.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from streams.reporter.exceptions import OutboxError
from streams.reporter.snapshot import BuildSnapshot, snapshot_from_dict, snapshot_to_dict

SCHEMA_VERSION = 1
FIRST_SEQ = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    build_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (build_id, seq)
);
CREATE TABLE IF NOT EXISTS builds (
    build_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    snapshot TEXT NOT NULL
);
"""

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    build_id: str
    seq: int
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One encoded event about to be accepted."""

    seq: int
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class BuildProgress:
    """Where a build's reporting stands: the next `seq` to use and what was last accepted."""

    next_seq: int
    snapshot: BuildSnapshot | None


class OutboxClaim:
    """One reporter per outbox file: two senders draining the same rows would send them twice.

    An exclusive `flock` on `<outbox>.lock`, released by `release()` or when the process dies
    (the kernel drops it, so a killed runner never leaves a stale claim behind).
    """

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        self.path = path.with_name(path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise OutboxError(
                f"{path} is in use by {holder}; give each reporter (runner process) its own outbox file"
            ) from exc
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class Outbox:
    def __init__(self, path: Path | str, *, synchronous: Synchronous = "FULL", busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise OutboxError(
                    f"{self.path} has outbox schema version {version}, this reporter knows "
                    f"{SCHEMA_VERSION}; use a newer cipulse or another outbox file"
                )
            self._db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the reporter outbox {self.path}: {exc}") from exc

    def progress(self, build_id: str) -> BuildProgress:
        with self._lock:
            row = self._db.execute("SELECT next_seq, snapshot FROM builds WHERE build_id = ?", (build_id,)).fetchone()
        if row is None:
            return BuildProgress(FIRST_SEQ, None)
        return BuildProgress(int(row[0]), snapshot_from_dict(json.loads(row[1])))

    def accept(self, snapshot: BuildSnapshot, events: Sequence[PendingEvent], next_seq: int) -> None:
        """Commit the events and the build's new progress atomically: all of it or nothing."""
        payload = json.dumps(snapshot_to_dict(snapshot), separators=(",", ":"))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO outbox (build_id, seq, key, value) VALUES (?, ?, ?, ?)",
                        [(snapshot.build_id, e.seq, e.key, e.value) for e in events],
                    )
                    self._db.execute(
                        "INSERT INTO builds (build_id, next_seq, snapshot) VALUES (?, ?, ?) "
                        "ON CONFLICT (build_id) DO UPDATE SET next_seq = excluded.next_seq, snapshot = excluded.snapshot",
                        (snapshot.build_id, next_seq, payload),
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise OutboxError(
                    f"could not accept {len(events)} changes of build {snapshot.build_id} into "
                    f"{self.path}: {exc}; nothing of this report was accepted"
                ) from exc

    def pending(self, after_id: int = 0, limit: int = 1000) -> list[OutboxRow]:
        """Unacknowledged rows after `after_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, build_id, seq, key, value FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [OutboxRow(int(r[0]), r[1], int(r[2]), bytes(r[3]), bytes(r[4])) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Forget rows the broker acknowledged; returns how many were deleted."""
        params = [(row_id,) for row_id in ids]
        if not params:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cursor = self._db.executemany("DELETE FROM outbox WHERE id = ?", params)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"could not delete acknowledged rows from {self.path}: {exc}") from exc
        return int(cursor.rowcount)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
