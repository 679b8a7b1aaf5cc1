"""Where the worker runs its ClickHouse client (CIPULSE_CLICKHOUSE_ENGINE_PROCESS)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import CipulseSettings
from streams.worker import open_gateway
from sinks.engine_launch import launch_engine_process, uses_engine_process
from sinks.exceptions import SinkError
from sinks.gateway import ClickHouseGateway

EMBEDDED = "chdb:///var/lib/cipulse/clickhouse"
SERVER = "http://cipulse:secret@clickhouse:8123"


@pytest.mark.parametrize(
    ("mode", "dsn", "child_process"),
    [
        ("auto", EMBEDDED, True),  # keep the engine's memory and crashes apart from the stream state
        ("auto", "chdb://memory", True),
        ("auto", SERVER, False),  # a server: no engine in the worker to keep apart
        ("on", SERVER, True),
        ("off", EMBEDDED, False),
    ],
)
def test_auto_puts_only_the_embedded_engine_in_a_child_process(mode: str, dsn: str, child_process: bool) -> None:
    assert uses_engine_process(mode, dsn) is child_process


def test_the_default_is_auto_and_other_spellings_are_refused_with_the_choices() -> None:
    assert CipulseSettings().clickhouse_engine_process == "auto"
    with pytest.raises(ValidationError, match="'auto', 'on' or 'off'"):
        CipulseSettings(clickhouse_engine_process="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("dsn", [SERVER, "chdb://relative/path"])
def test_a_process_launched_ahead_is_not_left_behind_by_a_thread_gateway_or_a_bad_dsn(dsn: str) -> None:
    launched = launch_engine_process()
    settings = CipulseSettings(clickhouse_dsn=dsn)
    try:
        gateway = open_gateway(settings, launched=launched)
    except SinkError as exc:
        assert "chdb:///absolute/path" in str(exc)  # the malformed DSN is named with its fix
    else:
        assert type(gateway) is ClickHouseGateway  # a server DSN: the client runs in a thread
        gateway.close()
    assert launched.returncode == 0
