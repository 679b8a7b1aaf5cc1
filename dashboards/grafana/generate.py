"""Write the Grafana dashboards and dashboards/ANALYTICS.md from `sinks.analytics_catalog`.

    .venv/bin/python dashboards/grafana/generate.py          # rewrite the files
    .venv/bin/python dashboards/grafana/generate.py --check  # exit 1 if they are out of date

The catalog holds each query's SQL once; this file only decides which dashboard shows which
query, as what kind of panel, and how big. Each panel's `rawSql` is the catalog SQL verbatim and
its description ends with `Columns: a, b, c`: the columns the panel expects, which the test
suite checks against what the engine returns (tests/integration/sinks/test_dashboards_sql.py).
The dashboards are provisioned read-only (provisioning/dashboards/cipulse.yaml): edit them here,
not in the Grafana UI.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from sinks.analytics import AnalyticsQuery, render_literal  # noqa: E402
from sinks.analytics_catalog import CATALOG, DELIVERY_DEFINITIONS, DEPLOY_PIPELINES, PROJECT  # noqa: E402

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
ANALYTICS_DOC = REPO / "dashboards" / "ANALYTICS.md"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "cipulse-clickhouse"}
"""The data source provisioned by provisioning/datasources/clickhouse.yaml."""

FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1
"""`format` of a grafana-clickhouse-datasource (v4) SQL target."""


@dataclass(frozen=True)
class Panel:
    query: str
    kind: str  # stat | table | timeseries | barchart
    width: int
    height: int = 8
    unit: str | None = None
    stat_field: str | None = None


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    deploy_variable: bool = False


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard("cipulse-pipelines", "cipulse / Pipeline health", (
        Panel("success_rate", "stat", 6, 6, unit="percentunit", stat_field="success_rate"),
        Panel("build_outcomes_over_time", "timeseries", 18, 6),
        Panel("duration_over_time", "timeseries", 12, unit="s"),
        Panel("queue_time_over_time", "timeseries", 12, unit="s"),
        Panel("pipeline_stats", "table", 24),
        Panel("top_failing_pipelines", "table", 12),
        Panel("top_failure_reasons", "table", 12),
    )),
    Dashboard("cipulse-audits", "cipulse / Audits", (
        Panel("open_audits_by_age", "barchart", 12),
        Panel("time_in_review", "table", 12),
        Panel("oldest_open_audits", "table", 24, 10),
        Panel("audit_repairs_per_day", "barchart", 12),
        Panel("audit_alerts", "table", 12),
    )),
    Dashboard("cipulse-notifications", "cipulse / Notifications and callbacks", (
        Panel("notification_health", "table", 24),
        Panel("notifications_over_time", "timeseries", 12),
        Panel("notification_failures", "table", 12),
        Panel("callback_health", "table", 24),
        Panel("callback_attempts_over_time", "timeseries", 24),
    )),
    Dashboard("cipulse-retries", "cipulse / Retries", (
        Panel("retry_rejections", "table", 12),
        Panel("retry_decisions_over_time", "timeseries", 12),
    )),
    Dashboard("cipulse-delivery", "cipulse / Delivery (DORA)", (
        Panel("dora_overview", "stat", 12, 5),
        Panel("deployment_frequency", "barchart", 12, 5),
        Panel("change_failure_rate", "table", 12),
        Panel("time_to_restore", "table", 12),
        Panel("restore_episodes", "table", 24, 10),
    ), deploy_variable=True),
)


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    queries = {q.name: q for q in CATALOG}
    panels, x, y, row_height = [], 0, 0, 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel_json(number, panel, queries[panel.query], {"x": x, "y": y, "w": panel.width, "h": panel.height}))
        x, row_height = x + panel.width, max(row_height, panel.height)
    variables = [_project_variable()] + ([_deploy_variable()] if dashboard.deploy_variable else [])
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "tags": ["cipulse"],
        "timezone": "utc",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": variables},
        "panels": panels,
    }


def _panel_json(number: int, panel: Panel, query: AnalyticsQuery, grid: dict[str, int]) -> dict[str, Any]:
    time_series = panel.kind == "timeseries"
    defaults: dict[str, Any] = {"unit": panel.unit} if panel.unit else {}
    options: dict[str, Any] = {}
    if panel.kind == "stat":
        fields = f"/^{panel.stat_field}$/" if panel.stat_field else ""
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False}}
    elif panel.kind == "table":
        options = {"showHeader": True, "cellHeight": "sm"}
    return {
        "id": number,
        "type": panel.kind,
        "title": query.title,
        "description": f"{query.description}\n\nColumns: {', '.join(query.columns)}",
        "datasource": DATASOURCE,
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [{
            "refId": "A",
            "datasource": DATASOURCE,
            "editorType": "sql",
            "queryType": "timeseries" if time_series else "table",
            "format": FORMAT_TIME_SERIES if time_series else FORMAT_TABLE,
            "rawSql": query.sql,
        }],
    }


def _project_variable() -> dict[str, Any]:
    """A single-valued project picker; "All" sends the custom all-value `''` unformatted, which
    the queries read as "every project" (`${project:sqlstring} = ''`)."""
    return {
        "name": PROJECT.name,
        "label": "Project",
        "type": "query",
        "datasource": DATASOURCE,
        "definition": "SELECT DISTINCT project FROM build_results ORDER BY project",
        "query": "SELECT DISTINCT project FROM build_results ORDER BY project",
        "refresh": 2,
        "includeAll": True,
        "allValue": "''",
        "multi": False,
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def _deploy_variable() -> dict[str, Any]:
    return {
        "name": DEPLOY_PIPELINES.name,
        "label": "Production deploy pipelines (regex)",
        "type": "textbox",
        "query": DEPLOY_PIPELINES.default,
        "current": {"text": DEPLOY_PIPELINES.default, "value": DEPLOY_PIPELINES.default},
        "description": DEPLOY_PIPELINES.description,
    }


def analytics_markdown() -> str:
    lines = [
        "# cipulse analytics queries",
        "",
        "<!-- generated by dashboards/grafana/generate.py from sinks/analytics_catalog.py; do not edit -->",
        "",
        "The same queries feed the Grafana dashboards (`dashboards/grafana/dashboards/`) and",
        "`cipulse analytics run <name> [--window 24h] [--project X] [--param deploy_pipelines=REGEX]",
        "[--format table|csv|json]`. `cipulse analytics list` names them.",
        "",
        "Below, each one as plain SQL for any ClickHouse client (clickhouse-client, the HTTP",
        "interface, DBeaver...), run in the cipulse database (`USE cipulse`): the window is the last",
        "24 hours (`now64(3) - INTERVAL 86400 SECOND`), `''` for the project means all projects. Edit",
        "those literals to change them. Tables with a ReplacingMergeTree engine are read with FINAL,",
        "so redelivered rows never count twice.",
        "",
        "`cipulse analytics run` talks to ClickHouse directly through `CIPULSE_CLICKHOUSE_DSN`. The",
        "embedded engine (`chdb://...`) admits one process per data path: while a worker runs on it,",
        "the command refuses with the owner's PID; stop the worker first, or use a ClickHouse server",
        "DSN (as the docker-compose stack does).",
        "",
        "## Delivery (DORA-style) definitions",
        "",
        DELIVERY_DEFINITIONS.strip(),
        "",
    ]
    for query in CATALOG:
        lines += [f"## `{query.name}`: {query.title}", "", query.description, "",
                  f"Columns: {', '.join(f'`{c}`' for c in query.columns)}.", ""]
        for parameter in query.parameters:
            lines.append(f"- `{parameter.name}`: {parameter.description} (default `{parameter.default!r}`)")
        lines += ["", "```sql", render_literal(query), "```", ""]
    return "\n".join(lines)


def rendered_files() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        DASHBOARD_DIR / f"{d.uid}.json": json.dumps(dashboard_json(d), indent=2) + "\n" for d in DASHBOARDS
    }
    files[ANALYTICS_DOC] = analytics_markdown()
    return files


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered_files().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)} (run dashboards/grafana/generate.py)")
        return 1 if stale else 0
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in rendered_files().items():
        path.write_text(text)
    print(f"wrote {len(rendered_files())} files ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
