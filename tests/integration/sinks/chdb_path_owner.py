"""A separate process that uses an embedded chDB path, for the connection tests.

    python chdb_path_owner.py hold  <dsn> <database>   open, migrate, write one build, print
                                                       "ready <pid>", then hold the path until
                                                       stdin closes
    python chdb_path_owner.py probe <dsn> <database>   open and print "events <count>", or print
                                                       "unavailable <message>" and exit 3

Synchronisation is by lines on stdout/stdin, never by sleeping.
"""

from __future__ import annotations

import os
import sys

from sinks.connection import open_client
from sinks.exceptions import ClickHouseUnavailableError
from sinks.migrations import apply_migrations
from sinks.queries import count_build_events


def main(mode: str, dsn: str, database: str) -> int:
    try:
        client = open_client(dsn, database)
    except ClickHouseUnavailableError as exc:
        print(f"unavailable {exc}", flush=True)
        return 3
    try:
        if mode == "hold":
            apply_migrations(client, database)
            client.command(
                f"INSERT INTO {database}.build_events (build_id, seq, event_time, project, "
                "pipeline) VALUES ('held', 1, now64(3), 'p', 'q')"
            )
            print(f"ready {os.getpid()}", flush=True)
            sys.stdin.read()
        else:
            print(f"events {count_build_events(client, database)}", flush=True)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
