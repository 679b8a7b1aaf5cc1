"""The ClickHouse gateway with the client in a child process (`sinks.engine_process`).

Same interface and ordering as `ClickHouseGateway` (one call at a time, from its one thread):
each call's function and arguments are pickled to the engine process, which runs
`fn(client, database, *args, **kwargs)` and sends back the result or the exception. So the
functions given to `call` must be importable (module-level functions or `functools.partial` of
them), and their arguments and results picklable.

If the engine process dies (a crash of the engine, an OOM kill), the call in flight fails with
`ClickHouseUnavailableError`, which the sinks treat like any outage: the batch stays unacked and
is retried; the next call starts a new engine process.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
from collections.abc import Callable
from typing import IO, Any, TypeVar, cast

from sinks.connection import redact_dsn
from sinks.engine_launch import discard_engine_process, launch_engine_process
from sinks.engine_process import EngineConfig
from sinks.engine_wire import WireClosed, receive_message, send_message
from sinks.exceptions import ClickHouseUnavailableError
from sinks.gateway import ClickHouseGateway

log = logging.getLogger(__name__)

R = TypeVar("R")

STOP_TIMEOUT_SECONDS = 30.0
"""How long `close` waits for the engine to finish its call and release its data path."""


class EngineProcess:
    """The child process and its pipes. Not thread-safe: the gateway's one thread drives it."""

    def __init__(
        self, config: EngineConfig, on_start: Callable[[int], None] = lambda pid: None,
        launched: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """`launched`: a process from `launch_engine_process` to use for the first start (it is
        already importing while the worker starts); later starts launch their own."""
        self._config = config
        self._on_start = on_start
        self._process: subprocess.Popen[bytes] | None = None
        self._launched = launched
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def call(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        process = self._running()
        try:
            send_message(cast("IO[bytes]", process.stdin), (fn, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(f"{_name(fn)} cannot run in the ClickHouse engine process: {exc}") from exc
        except OSError as exc:
            raise self._lost(process, _name(fn), exc) from exc
        try:
            ok, value = receive_message(cast("IO[bytes]", process.stdout))
        except (WireClosed, OSError) as exc:
            raise self._lost(process, _name(fn), exc) from exc
        if ok:
            return cast(R, value)
        raise value

    def close(self) -> None:
        """Close the pipe, which tells the engine to release its data path and exit; wait for it."""
        process, self._process = self._process, None
        if self._launched is not None:  # launched but never started: nothing to wait for
            launched, self._launched = self._launched, None
            discard_engine_process(launched)
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            code = process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("ClickHouse engine process %d did not exit within %.0fs; killing it",
                      process.pid, STOP_TIMEOUT_SECONDS)
            process.kill()
            code = process.wait()
        if process.stdout is not None:
            process.stdout.close()
        log.info("ClickHouse engine process %d stopped (exit code %s)", process.pid, code)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        if self._process is not None:
            self.close()
        return self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process, self._launched = self._launched or launch_engine_process(), None
        self.starts += 1
        try:
            send_message(cast("IO[bytes]", process.stdin), self._config)
            ok, value = receive_message(cast("IO[bytes]", process.stdout))
        except (WireClosed, OSError) as exc:
            process.kill()
            code = process.wait()
            raise ClickHouseUnavailableError(
                f"the ClickHouse engine process for {redact_dsn(self._config.dsn)} exited during start-up "
                f"(exit code {code}); its error is in the worker's stderr above"
            ) from exc
        if not ok:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            raise value
        self._process = process
        self._on_start(process.pid)
        log.info("ClickHouse engine process %d serving %s (start %d)", value, redact_dsn(self._config.dsn), self.starts)
        return process

    def _lost(self, process: subprocess.Popen[bytes], call: str, exc: BaseException) -> ClickHouseUnavailableError:
        try:
            code: int | None = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        self._process = None
        log.error("ClickHouse engine process %d ended during %s (exit code %s): %s; "
                  "the next call starts a new one", process.pid, call, code, exc)
        return ClickHouseUnavailableError(
            f"the ClickHouse engine process (pid {process.pid}) ended during {call} with exit code {code}; "
            "the call was not completed and is retried by its sink"
        )


class EngineProcessGateway(ClickHouseGateway):
    """`ClickHouseGateway` whose calls run in the engine process instead of the worker."""

    def __init__(
        self, config: EngineConfig, on_start: Callable[[int], None] = lambda pid: None,
        launched: subprocess.Popen[bytes] | None = None,
    ) -> None:
        super().__init__(_no_client, config.database)
        self.engine = EngineProcess(config, on_start, launched)

    def _run(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        return self.engine.call(fn, args, kwargs)

    def _release(self) -> None:
        self.engine.close()


def _no_client() -> Any:
    raise AssertionError("EngineProcessGateway opens no client in the worker")


def _name(fn: Callable[..., Any]) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', repr(inner))}"
