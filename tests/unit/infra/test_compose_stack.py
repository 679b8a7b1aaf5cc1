"""docker-compose.yml describes the production-style stack, configured only by environment."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_stack_has_kafka_clickhouse_grafana_and_cipulse_services() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].endswith("apache/kafka:4.1.0}")
    assert "clickhouse/clickhouse-server" in services["clickhouse"]["image"]
    assert "grafana/grafana" in services["grafana"]["image"]
    worker = services["cipulse-worker"]
    assert worker["environment"]["CIPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert worker["environment"]["CIPULSE_CLICKHOUSE_DSN"].startswith("http://")
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in str(v).lower() for v in env.values())


def test_secrets_come_from_environment_variables() -> None:
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if re.search(r"PASSWORD:\s", line):
            assert "${" in line, f"hard-coded secret: {line.strip()}"


def test_every_mounted_host_path_exists() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian 1.29) not installed")
def test_docker_compose_config_validates_the_file() -> None:
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
