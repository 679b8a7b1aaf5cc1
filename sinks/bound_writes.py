"""Batches bound to the writer that stores them, as calls the ClickHouse gateway can ship.

The gateway runs `fn(client, database)`; with the engine in its own process (the default,
`sinks.engine_gateway`) `fn` is pickled, so a batch cannot ride in a closure or lambda. These
return `functools.partial`s of module-level functions instead, which pickle by reference.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from clickhouse_connect.driver import Client


def rows_write(write: Callable[[Client, str, Any], None], rows: Any) -> Callable[[Client, str], None]:
    """`write(client, database, rows)` as a gateway call."""
    return partial(_rows_write, write, rows)


def writer_call(writer_class: type, method: str, *args: Any, **kwargs: Any) -> Callable[[Client, str], Any]:
    """`writer_class(client, database).method(*args, **kwargs)` as a gateway call."""
    return partial(_writer_call, writer_class, method, args, kwargs)


def _rows_write(write: Callable[[Client, str, Any], None], rows: Any, client: Client, database: str) -> None:
    write(client, database, rows)


def _writer_call(
    writer_class: type, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], client: Client, database: str
) -> Any:
    return getattr(writer_class(client, database), method)(*args, **kwargs)
