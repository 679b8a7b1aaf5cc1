"""Every Grafana panel's SQL runs on the real embedded engine with demo data and returns the
columns the panel expects; every named analytics query does too, in the CLI's bound form and the
docs' literal form.

Panels are discovered from the dashboard JSON files (every target of every panel, and every
query variable), so a new panel is tested without touching this file. A panel declares its
columns on the last line of its description (`Columns: a, b, c`); a panel without that line
fails. Grafana is not installable here, so the plugin's macro expansion is imitated by
`expand_grafana_sql` below, which covers exactly the macros and variable forms the dashboards
use and refuses anything else (an unknown `$...` fails the test instead of reaching the engine
half expanded).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from sinks.analytics import render_literal, run_query
from sinks.analytics_catalog import CATALOG
from sinks.migrations import apply_migrations
from sinks_analytics_testkit import load_demo_data, utc_now
from sinks_testkit import EngineHolder

pytestmark = pytest.mark.integration

DASHBOARDS = Path(__file__).resolve().parents[3] / "dashboards" / "grafana" / "dashboards"
RANGE = timedelta(hours=24)
INTERVAL_SECONDS = 300
_COLUMNS_LINE = re.compile(r"^Columns: (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    sql: str
    columns: tuple[str, ...] | None  # None for a variable query (any one column)
    variables: dict[str, dict[str, Any]]

    @property
    def label(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"


def expand_grafana_sql(sql: str, *, start: datetime, end: datetime, interval_s: int,
                       variables: dict[str, dict[str, Any]], values: dict[str, str | None]) -> str:
    """What Grafana + grafana-clickhouse-datasource v4 send for `sql`.

    Grafana's frontend first interpolates `${name:sqlstring}`: the value quoted with single
    quotes doubled, or, for "All" (value None here), the variable's custom `allValue` verbatim,
    unformatted. The plugin then expands (pkg/macros/macros.go):
    `$__timeFilter_ms(c)` -> `c >= fromUnixTimestamp64Milli(<from ms>) AND c <= fromUnixTimestamp64Milli(<to ms>)`,
    `$__fromTime_ms` / `$__toTime_ms` -> `fromUnixTimestamp64Milli(<ms>)`,
    `$__timeInterval(c)` -> `toStartOfInterval(toDateTime(c), INTERVAL <interval> second)`.
    """

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in variables, f"${{{name}}} is not a variable of this dashboard"
        value = values.get(name, variables[name].get("current", {}).get("value"))
        if value is None or value == "$__all":
            all_value = variables[name].get("allValue")
            assert all_value is not None, f"${{{name}}} has no custom allValue"
            return str(all_value)
        return "'" + str(value).replace("'", "''") + "'"

    from_ms, to_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    sql = re.sub(
        r"\$__timeFilter_ms\(([^()]+)\)",
        lambda m: f"{m.group(1)} >= fromUnixTimestamp64Milli({from_ms}) AND {m.group(1)} <= fromUnixTimestamp64Milli({to_ms})",
        sql,
    )
    sql = re.sub(r"\$__timeInterval\(([^()]+)\)",
                 lambda m: f"toStartOfInterval(toDateTime({m.group(1)}), INTERVAL {interval_s} second)", sql)
    sql = sql.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({from_ms})")
    sql = sql.replace("$__toTime_ms", f"fromUnixTimestamp64Milli({to_ms})")
    leftover = re.search(r"\$\S*", re.sub(r"\$\{\w+:sqlstring\}", "", sql))
    assert leftover is None, f"unsupported macro or variable form left in panel SQL: {leftover.group(0)}"
    # Grafana interpolates variables before the plugin sees the macros; no value here contains
    # a macro, so doing it last gives the same text and lets a '$' inside a value through.
    return re.sub(r"\$\{(\w+):sqlstring\}", variable, sql)


def discover_panel_queries() -> list[PanelQuery]:
    found: list[PanelQuery] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
        for variable in variables.values():
            if variable["type"] == "query":
                query = variable["query"]
                sql = query if isinstance(query, str) else query.get("rawSql", query.get("query", ""))
                found.append(PanelQuery(path.stem, f"variable {variable['name']}", "-", sql, None, variables))
        panels = list(dashboard.get("panels", []))
        for panel in panels:
            panels.extend(panel.get("panels", []))  # panels inside collapsed rows
            if panel.get("type") == "row":
                continue
            match = _COLUMNS_LINE.search(panel.get("description", ""))
            columns = tuple(c.strip() for c in match.group(1).split(",")) if match else ()
            for target in panel.get("targets", []):
                found.append(PanelQuery(path.stem, panel["title"], target["refId"], target["rawSql"], columns, variables))
    return found


PANEL_QUERIES = discover_panel_queries()


@pytest.fixture(scope="module")
def demo(engine: EngineHolder) -> Iterator[tuple[Client, str, datetime]]:
    """A database of this module's own with the migrations and demo data; the shared client
    reads it as its default database (the panels' SQL names tables unqualified, like Grafana's
    data source with its default database)."""
    client = engine.client
    database = f"cipulse_dash_{uuid.uuid4().hex[:12]}"
    client.command(f"CREATE DATABASE {database}")
    previous = client.database
    try:
        apply_migrations(client, database)
        now = utc_now()
        load_demo_data(client, database, now)
        client.database = database
        yield client, database, now
    finally:
        client.database = previous
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_the_dashboards_hold_panels() -> None:
    titles = {q.dashboard for q in PANEL_QUERIES}
    assert {"cipulse-pipelines", "cipulse-audits", "cipulse-notifications", "cipulse-retries",
            "cipulse-delivery"} <= titles
    assert sum(1 for q in PANEL_QUERIES if q.columns is not None) >= 20


@pytest.mark.parametrize("panel", PANEL_QUERIES, ids=lambda q: q.label)
def test_panel_sql_returns_the_declared_columns_and_demo_rows(
    panel: PanelQuery, demo: tuple[Client, str, datetime]
) -> None:
    client, _, now = demo
    if panel.columns is not None:
        assert panel.columns, f"{panel.label}: description must end with 'Columns: a, b, c'"
    sql = expand_grafana_sql(panel.sql, start=now - RANGE, end=now, interval_s=INTERVAL_SECONDS,
                             variables=panel.variables, values={})
    result = client.query(sql)
    if panel.columns is not None:
        assert tuple(result.column_names) == panel.columns, panel.label
    assert result.result_rows, f"{panel.label}: no rows from the demo data"


@pytest.mark.parametrize("panel", [q for q in PANEL_QUERIES if "project" in q.variables and q.columns],
                         ids=lambda q: q.label)
def test_panel_sql_runs_for_one_project(panel: PanelQuery, demo: tuple[Client, str, datetime]) -> None:
    """One project picked: the demo's `payments` has rows for every panel. A value with a quote
    must still run (Grafana's sqlstring doubles it); it matches nothing. (An empty result
    carries no column names through this client, so only non-empty results are compared.)"""
    client, _, now = demo
    for value, expect_rows in (("payments", True), ("pay'ments", False)):
        sql = expand_grafana_sql(panel.sql, start=now - RANGE, end=now, interval_s=INTERVAL_SECONDS,
                                 variables=panel.variables, values={"project": value})
        result = client.query(sql)
        if expect_rows:
            assert result.result_rows, f"{panel.label}: no rows for project {value!r}"
            assert tuple(result.column_names) == panel.columns


@pytest.mark.parametrize("query", CATALOG, ids=lambda q: q.name)
def test_named_query_runs_bound_and_as_documented(query: Any, demo: tuple[Client, str, datetime]) -> None:
    client, _, now = demo
    bound = run_query(client, query, window=RANGE, now=now)
    assert bound.columns == query.columns
    assert bound.rows, f"{query.name}: no rows from the demo data"
    literal = client.query(render_literal(query))
    assert tuple(literal.column_names) == query.columns


def test_delivery_metrics_follow_their_definitions(demo: tuple[Client, str, datetime]) -> None:
    """Change failure rate and time to restore recomputed in Python from the same rows."""
    client, database, now = demo
    rows = client.query(
        f"SELECT status, finished_at FROM {database}.build_results FINAL WHERE pipeline = 'deploy-prod'"
        " AND is_final = 1 AND status IN ('SUCCEEDED', 'FAILED') ORDER BY finished_at", tz_mode="aware"
    ).result_rows
    succeeded = sum(1 for status, _ in rows if status == "SUCCEEDED")
    failed = len(rows) - succeeded
    restores, episode_start = [], None
    for status, finished in rows:
        if status == "FAILED" and episode_start is None:
            episode_start = finished
        elif status == "SUCCEEDED" and episode_start is not None:
            restores.append((finished - episode_start).total_seconds() / 60)
            episode_start = None
    by_name = {q.name: q for q in CATALOG}
    overview = run_query(client, by_name["dora_overview"], window=timedelta(days=2), now=now)
    assert overview.rows[0][0] == succeeded and overview.rows[0][1] == failed
    assert overview.rows[0][3] == round(failed / (succeeded + failed), 4)
    restore = run_query(client, by_name["time_to_restore"], window=timedelta(days=2), now=now)
    assert restore.rows[0][2] == len(restores)
    assert restore.rows[0][4] == pytest.approx(max(restores), abs=0.1)
    assert bool(restore.rows[0][5]) == (episode_start is not None)
