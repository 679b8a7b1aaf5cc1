"""The Grafana dashboards are provisioned by the compose stack, use the provisioned ClickHouse
data source, and are exactly what dashboards/grafana/generate.py makes from the analytics
catalog (their SQL is executed in tests/integration/sinks/test_dashboards_sql.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "dashboards" / "grafana"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def test_generated_files_are_up_to_date() -> None:
    for path, text in generator().rendered_files().items():
        assert path.exists() and path.read_text() == text, (
            f"{path.relative_to(REPO)} is out of date: run .venv/bin/python dashboards/grafana/generate.py"
        )


def test_compose_mounts_the_provider_and_the_dashboards_where_the_provider_looks() -> None:
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./dashboards/grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "cipulse.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./dashboards/grafana/dashboards"] == path
    assert grafana["environment"]["GF_INSTALL_PLUGINS"].startswith("grafana-clickhouse-datasource")


def test_every_panel_uses_the_provisioned_clickhouse_datasource() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())["datasources"][0]
    expected = {"type": source["type"], "uid": source["uid"]}
    uids = set()
    for name, dashboard in dashboards().items():
        uids.add(dashboard["uid"])
        for panel in dashboard["panels"]:
            assert panel["datasource"] == expected, (name, panel["title"])
            assert "\nColumns: " in panel["description"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == expected and target["editorType"] == "sql" and target["rawSql"]
    assert len(uids) == len(dashboards()) == 5


def test_panels_do_not_overlap() -> None:
    for name, dashboard in dashboards().items():
        taken: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
            assert not cells & taken, (name, panel["title"])
            taken |= cells
