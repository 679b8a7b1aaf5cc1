"""The settings object: safe local defaults, CIPULSE_* overrides, secrets kept secret, bad values refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.settings import REPO_ROOT, CipulseSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the CIPULSE_* variables they set, never the developer's or CI's."""
    for name in list(os.environ):
        if name.upper().startswith("CIPULSE_"):
            monkeypatch.delenv(name)


def test_repo_root_is_the_checkout_holding_streams() -> None:
    assert (REPO_ROOT / "streams" / "settings.py").is_file()


def test_defaults_point_at_a_local_broker_and_an_embedded_clickhouse_under_the_repo() -> None:
    settings = CipulseSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_url == "kafka://127.0.0.1:9092"
    dsn = settings.clickhouse_dsn.get_secret_value()
    assert dsn == f"chdb://{REPO_ROOT / '.data' / 'clickhouse'}"
    assert Path(dsn.removeprefix("chdb://")).is_relative_to(REPO_ROOT / ".data")
    assert settings.data_dir == REPO_ROOT / ".data" / "worker"
    assert (settings.topic_prefix, settings.app_id, settings.clickhouse_database) == ("cipulse", "cipulse", "cipulse")
    assert (settings.table_store, settings.web_host, settings.web_port) == ("rocksdb", "127.0.0.1", 6066)
    assert settings.api_url == "http://127.0.0.1:6066"


def test_cipulse_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CIPULSE_KAFKA_BOOTSTRAP", "10.0.0.5:9093, 10.0.0.6:9093")
    monkeypatch.setenv("CIPULSE_TOPIC_PREFIX", "t42")
    monkeypatch.setenv("CIPULSE_TOPIC_PARTITIONS", "8")
    monkeypatch.setenv("CIPULSE_CLICKHOUSE_DSN", "chdb://memory")
    monkeypatch.setenv("CIPULSE_CLICKHOUSE_DATABASE", "cipulse_test_1")
    monkeypatch.setenv("CIPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CIPULSE_TABLE_STORE", "memory")
    monkeypatch.setenv("CIPULSE_WEB_PORT", "7070")
    monkeypatch.setenv("CIPULSE_SINK_FLUSH_SECONDS", "0.25")
    monkeypatch.setenv("CIPULSE_LOG_LEVEL", "debug")
    settings = CipulseSettings()
    assert settings.kafka_url == "kafka://10.0.0.5:9093;kafka://10.0.0.6:9093"
    assert (settings.topic_prefix, settings.topic_partitions) == ("t42", 8)
    assert settings.clickhouse_dsn.get_secret_value() == "chdb://memory"
    assert settings.clickhouse_database == "cipulse_test_1"
    assert settings.data_dir == tmp_path
    assert (settings.table_store, settings.web_port, settings.sink_flush_seconds) == ("memory", 7070, 0.25)
    assert settings.log_level == "debug"
    assert settings.api_url == "http://127.0.0.1:7070"


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_PORT", "1234")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "elsewhere:1")
    settings = CipulseSettings()
    assert (settings.web_port, settings.kafka_bootstrap) == (6066, "127.0.0.1:9092")


def test_clickhouse_dsn_is_a_secret_whose_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPULSE_CLICKHOUSE_DSN", "https://ingest:s3cr3t-pw@ch.example:8443")
    settings = CipulseSettings()
    assert isinstance(settings.clickhouse_dsn, SecretStr)
    assert settings.clickhouse_dsn.get_secret_value() == "https://ingest:s3cr3t-pw@ch.example:8443"
    for shown in (repr(settings), str(settings), repr(settings.clickhouse_dsn), str(settings.clickhouse_dsn),
                  settings.model_dump_json()):
        assert "s3cr3t-pw" not in shown


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CIPULSE_WEB_PORT", "0"),
        ("CIPULSE_WEB_PORT", "65536"),
        ("CIPULSE_TABLE_STORE", "x"),
        ("CIPULSE_CLICKHOUSE_DATABASE", "a-b"),
        ("CIPULSE_CLICKHOUSE_DATABASE", "1db"),
        ("CIPULSE_TOPIC_PARTITIONS", "0"),
        ("CIPULSE_SINK_FLUSH_SECONDS", "0"),
        ("CIPULSE_LOG_LEVEL", "verbose"),
    ],
)
def test_invalid_values_from_the_environment_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        CipulseSettings()
    assert variable.removeprefix("CIPULSE_").lower() in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [{"web_port": 0}, {"table_store": "x"}, {"clickhouse_database": "a-b"}],
)
def test_invalid_values_passed_directly_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CipulseSettings(**overrides)  # type: ignore[arg-type]


def test_static_membership_is_off_by_default_and_then_has_no_instance_id() -> None:
    assert CipulseSettings().group_instance_id is None


@pytest.mark.parametrize(
    ("host", "port", "instance_id"),
    [
        ("cipulse-worker-0.cipulse.svc", 6066, "cipulse-cipulse-worker-0.cipulse.svc-6066"),
        ("10.0.3.7", 6067, "cipulse-10.0.3.7-6067"),
        ("fd00::7", 6066, "cipulse-fd00--7-6066"),  # ':' is not allowed in a group.instance.id
    ],
)
def test_the_static_member_id_is_made_from_the_api_url(host: str, port: int, instance_id: str) -> None:
    settings = CipulseSettings(static_membership=True, web_host=host, web_port=port)
    assert settings.group_instance_id == instance_id


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_static_membership_on_a_wildcard_address_is_refused_with_what_to_set(wildcard: str) -> None:
    with pytest.raises(ValidationError, match="CIPULSE_WEB_HOST to be this worker's own name"):
        CipulseSettings(static_membership=True, web_host=wildcard)
    assert CipulseSettings(web_host=wildcard).group_instance_id is None  # dynamic membership does not care
