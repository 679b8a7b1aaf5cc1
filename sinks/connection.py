"""Open a ClickHouse client from the one DSN setting that decides where data lives.

The same code path serves the embedded engine (chDB, for a single-box install, CI and tests)
and a ClickHouse server (production): only the DSN differs.

    chdb:///absolute/path           embedded engine, persistent, owned by this process
    chdb://memory                   embedded engine, in memory, gone when the process exits
    http(s)://user:pass@host:port   ClickHouse server (no path: the database is a setting)

chDB facts, measured with clickhouse-connect 1.12.0 / chdb 4.4.0 (engine 26.9):

- One engine per process. While any client is open, a client on a *different* location in the
  same process fails ("EmbeddedServer already initialized with path A, cannot connect with
  different path B"); this includes `chdb://memory` next to a path. Any number of clients on the
  *same* location coexist and share data.
- `client.close()` releases the engine (and the path's lock) once the *last* client of that
  location is closed; with two clients open, closing one keeps the lock. The process can then
  open another path (or memory), or re-open the first one with its data intact. A client that is
  garbage-collected unclosed is released too, but only close() makes that happen on time.
- Across processes the lock is an flock on `<path>/status` (the file holds the owner's PID).
  A second process fails, and `?mode=ro` does not get around it. chDB prints "Cannot lock file
  .../status. Another server instance in same directory is already running" on stderr but the
  exception only says "Error initializing EmbeddedServer", so `open_client` probes the lock
  itself to give the real reason.
- The lock goes away with the owner: after `close()` in a live process, and after the owning
  process exits, whether cleanly, by SIGTERM or by SIGKILL (the kernel drops flocks). Rows
  inserted before a SIGKILL are still there. So an integration test may run the worker as a
  subprocess on a path, stop it, then open the same path from pytest to inspect rows, as long
  as pytest itself has no other chDB client open at that moment.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.exceptions import ClickHouseUnavailableError, SinkError
from sinks.identifiers import checked_identifier

logger = logging.getLogger(__name__)

_MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """Where a DSN points. `embedded_path` is None for memory and for servers."""

    dsn: str
    embedded: bool
    embedded_path: str | None

    @property
    def redacted(self) -> str:
        """The DSN with any password replaced, safe for logs and error messages."""
        return redact_dsn(self.dsn)


def redact_dsn(dsn: str) -> str:
    """Hide the password of a DSN so it can be logged."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def parse_dsn(dsn: str) -> ClickHouseTarget:
    """Validate a DSN up front so a typo fails at start-up with a fix, not deep in a query."""
    parts = urlsplit(dsn)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        if parts.netloc == _MEMORY and parts.path in ("", "/"):
            return ClickHouseTarget(dsn=dsn, embedded=True, embedded_path=None)
        if parts.netloc == "" and parts.path.startswith("/") and parts.path != "/":
            if parts.query:
                raise SinkError(
                    f"embedded DSN {dsn!r} has options ({parts.query!r}); remove them: "
                    "cipulse opens the data path read-write and nothing else"
                )
            return ClickHouseTarget(dsn=dsn, embedded=True, embedded_path=parts.path)
        raise SinkError(
            f"embedded DSN {dsn!r} is neither chdb://memory nor chdb:///absolute/path "
            "(three slashes, absolute path)"
        )
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise SinkError(
                f"server DSN {redact_dsn(dsn)!r} has no host: use http(s)://user:pass@host:port"
            )
        if parts.path not in ("", "/"):
            raise SinkError(
                f"server DSN {redact_dsn(dsn)!r} has a path; remove it: the database is a "
                "separate setting, not part of the DSN"
            )
        return ClickHouseTarget(dsn=dsn, embedded=False, embedded_path=None)
    raise SinkError(
        f"unsupported ClickHouse DSN scheme {scheme!r} in {redact_dsn(dsn)!r}: use "
        "chdb:///absolute/path, chdb://memory or http(s)://user:pass@host:port"
    )


EMBEDDED_PURGE_RATIO = 0.05
"""Idle (freed, still resident) pages the embedded engine keeps, as a share of its memory cap."""


def embedded_engine_options(memory_bytes: int) -> dict[str, str]:
    """Server settings for the embedded engine, given to chDB when it starts.

    chDB sizes itself for a dedicated server: a memory cap of 90 % of the machine's RAM, and its
    allocator (jemalloc) returns freed pages to the OS only after they sat idle for 5 s or once
    they exceed 20 % of that cap. Inside the worker every sink insert frees its buffers, so
    ~100 MiB of freed pages stayed resident (benchmarks/README.md). With the cap set to the
    engine's budget, its memory worker hands freed pages back once they pass 5 % of it.
    """
    return {
        "max_server_memory_usage": str(memory_bytes),
        "memory_worker_purge_dirty_pages_threshold_ratio": str(EMBEDDED_PURGE_RATIO),
    }


def open_client(dsn: str, database: str, *, embedded_memory_bytes: int | None = None) -> Client:
    """Open a client on `dsn`, create `database` if missing, and make it the client's default.

    `embedded_memory_bytes` caps the embedded engine's memory (`embedded_engine_options`); it
    only counts for the client that starts the engine, and is ignored for servers.
    Calls on the returned client block the calling thread; asyncio code runs them in a
    single-thread executor. The caller owns the client and must `close()` it: for the embedded
    engine that is what releases the data path for other processes.
    """
    database = checked_identifier(database)
    target = parse_dsn(dsn)
    try:
        if target.embedded and embedded_memory_bytes is not None:
            client = clickhouse_connect.get_client(
                dsn=dsn, chdb_options=embedded_engine_options(embedded_memory_bytes)
            )
        else:
            client = clickhouse_connect.get_client(dsn=dsn)
    except (ClickHouseError, OSError) as exc:
        raise _unavailable(target, exc) from exc
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.database = database
    except (ClickHouseError, OSError) as exc:
        client.close()
        raise ClickHouseUnavailableError(
            f"connected to {target.redacted} but could not create or use database {database!r}: "
            f"{exc}. Check that the user may CREATE DATABASE, or create it beforehand"
        ) from exc
    logger.info("ClickHouse client open on %s, database %s", target.redacted, database)
    return client


def embedded_path_owner(path: str) -> int | None:
    """PID of the process that holds the chDB lock on `path`, 0 if held but unreadable,
    None if nobody holds it. Probing takes and drops the same flock chDB uses."""
    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        with open(fd, closefd=False, encoding="utf-8", errors="replace") as status_file:
            for line in status_file.read().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "PID" and value.strip().isdigit():
                    return int(value.strip())
        return 0
    finally:
        os.close(fd)


def _unavailable(target: ClickHouseTarget, exc: BaseException) -> ClickHouseUnavailableError:
    """Turn a connection failure into a message that says what to fix."""
    text = str(exc)
    if target.embedded:
        if "already initialized with path" in text:
            return ClickHouseUnavailableError(
                f"cannot open {target.redacted}: this process already has the embedded engine "
                "open on another location, and chDB hosts one location per process. close() "
                f"every other chDB client first, or use the same DSN everywhere ({text})"
            )
        owner = embedded_path_owner(target.embedded_path) if target.embedded_path else None
        if owner is not None or "Cannot lock file" in text:
            who = f"process {owner}" if owner else "another process"
            return ClickHouseUnavailableError(
                f"cannot open {target.redacted}: the data path is locked by {who} (Cannot lock "
                f"file {target.embedded_path}/status: another server instance in the same "
                "directory is already running). In embedded mode exactly one cipulse process "
                "may own the data path: stop the other process, or point every process at a "
                "ClickHouse server DSN (http(s)://user:pass@host:port)"
            )
        return ClickHouseUnavailableError(
            f"cannot open the embedded ClickHouse at {target.redacted}: {text}. Check that the "
            "directory is writable and holds chDB data (or is empty)"
        )
    return ClickHouseUnavailableError(
        f"cannot reach the ClickHouse server at {target.redacted}: {text}. Check that the server "
        "runs, and the host, port, user and password in the DSN"
    )
