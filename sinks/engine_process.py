"""The worker's ClickHouse process: owns the client (and the embedded engine) and runs calls.

Started by `sinks.engine_gateway.EngineProcess` as `python -m sinks.engine_process`, with the
call pipe on stdin/stdout. Why a process of its own: the embedded engine's library is ~200 MiB
of resident code plus its own allocator, and clickhouse-connect's insert serialisation is Python
that would otherwise hold the worker's GIL; here both sit on their own core and memory.

Lifetime follows the worker: the process ignores SIGINT/SIGTERM (a Ctrl-C or a stop of the
process group reaches the worker, which still needs the engine for its last flush) and exits
when its stdin closes, which is also what happens when the worker is killed with SIGKILL. Its
stdout is the reply pipe only: anything the engine prints goes to stderr.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

from sinks.connection import embedded_path_owner, open_client, parse_dsn
from sinks.engine_wire import WireClosed, receive_frame, receive_message, send_message
from sinks.exceptions import ClickHouseUnavailableError, SinkError

log = logging.getLogger("sinks.engine_process")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The first message on the pipe; the DSN travels here, never on the command line."""

    dsn: str
    database: str
    embedded_memory_bytes: int | None
    log_level: int
    lock_wait_seconds: float


def open_engine_client(config: EngineConfig) -> Any:
    """Open the client, waiting up to `lock_wait_seconds` for an embedded path's previous owner.

    A worker restarted right after a SIGKILL can find the old engine process still finishing its
    last call; it exits as soon as it sees the closed pipe, so a short wait beats failing.
    """
    target = parse_dsn(config.dsn)
    deadline = time.monotonic() + config.lock_wait_seconds
    announced = False
    while True:
        try:
            return open_client(config.dsn, config.database, embedded_memory_bytes=config.embedded_memory_bytes)
        except ClickHouseUnavailableError:
            owner = embedded_path_owner(target.embedded_path) if target.embedded_path else None
            if owner is None or owner == os.getpid() or time.monotonic() >= deadline:
                raise
            if not announced:
                log.warning("waiting up to %.0fs for process %s to release %s",
                            config.lock_wait_seconds, owner or "?", target.embedded_path)
                announced = True
            time.sleep(0.2)


def portable_error(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else a SinkError that keeps its type name and message."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any unpicklable error is replaced, never lost
        return SinkError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return exc


def serve(requests: IO[bytes], replies: IO[bytes]) -> int:
    """Answer calls until the worker closes the pipe; the exit code of the process."""
    try:
        config: EngineConfig = receive_message(requests)
    except WireClosed:
        return 0
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s engine[%(process)d] %(name)s: %(message)s")
    try:
        client = open_engine_client(config)
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which names the fix
        send_message(replies, (False, portable_error(exc)))
        return 1
    send_message(replies, (True, os.getpid()))
    try:
        while True:
            try:
                frame = receive_frame(requests)
            except WireClosed:
                return 0
            try:
                fn, args, kwargs = pickle.loads(frame)
            except Exception as exc:  # noqa: BLE001 - e.g. a function this process cannot import
                send_message(replies, (False, SinkError(f"the engine process cannot load this call: {exc!r}")))
                continue
            try:
                reply: tuple[bool, Any] = (True, fn(client, config.database, *args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                reply = (False, portable_error(exc))
            try:
                send_message(replies, reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                send_message(replies, (False, SinkError(f"result of {fn!r} cannot be returned: {exc}")))
    finally:
        client.close()  # releases the embedded path's lock before the process exits


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the engine's own prints must not corrupt the reply pipe
    return serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    sys.exit(main())
