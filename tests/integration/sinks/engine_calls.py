"""Gateway calls the engine-process tests ship to the child: importable, so they pickle.

The child finds this module through PYTHONPATH, which the tests set to this folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from sinks.exceptions import SinkWriteError


def engine_pid(client: Any, database: str) -> int:
    return os.getpid()


def crash(client: Any, database: str, code: int) -> None:
    os._exit(code)


def refuse(client: Any, database: str, table: str) -> None:
    raise SinkWriteError(f"insert into {table} refused", table)


def unshippable_result(client: Any, database: str) -> Iterator[int]:
    return (number for number in range(3))  # generators do not pickle
