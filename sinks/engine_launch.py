"""Launching the worker's engine process, cheap enough to do before anything else is imported.

Why a module of its own: the engine process needs about a second to import the sinks and open
the embedded engine, and the worker needs about as long to import Faust and the agents. The
worker's command launches the process first (`launch_engine_process`) and hands it to the
gateway (`sinks.engine_gateway.EngineProcess`), so the two start-ups overlap; only the standard
library is imported here.
"""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

def uses_engine_process(mode: str, dsn: str) -> bool:
    """`CIPULSE_CLICKHOUSE_ENGINE_PROCESS`: on, off, or auto (on for the embedded engine, chdb://, only)."""
    return mode == "on" or (mode == "auto" and urlsplit(dsn).scheme.lower() == "chdb")


def launch_engine_process() -> subprocess.Popen[bytes]:
    """Start `python -m sinks.engine_process`; it waits for its `EngineConfig` on the pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "sinks.engine_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        close_fds=True,
    )


def discard_engine_process(process: subprocess.Popen[bytes]) -> None:
    """Close the pipe of a launched process that will not be used; it exits on the closed pipe."""
    if process.stdin is not None:
        process.stdin.close()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
