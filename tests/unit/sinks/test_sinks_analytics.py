"""The analytics registry: names, declared columns and parameters, and the two renderings of
the Grafana-dialect SQL (bound parameters for the CLI, literals for the docs)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from sinks.analytics import AnalyticsQuery, QueryParameter, find_query, interval_seconds, render_bound, render_literal, run_query
from sinks.analytics_catalog import CATALOG, DEPLOY_PIPELINES
from sinks.exceptions import SinkError


def test_names_are_unique_identifiers_and_every_query_is_documented() -> None:
    names = [q.name for q in CATALOG]
    assert len(names) == len(set(names))
    for query in CATALOG:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", query.name), query.name
        assert query.title and query.description.endswith(".") and query.columns
        assert len(query.columns) == len(set(query.columns)), query.name


def test_every_query_filters_by_project_and_reads_replacing_tables_with_final() -> None:
    for query in CATALOG:
        assert "project" in {p.name for p in query.parameters}, query.name
        for table in ("build_results", "audit_state", "audit_repairs", "audit_alerts",
                      "notification_deliveries", "callback_deliveries", "callback_subscriptions"):
            for match in re.finditer(rf"FROM {table}\b(\s+\w+)?", query.sql):
                assert (match.group(1) or "").strip() == "FINAL", f"{query.name}: {table} without FINAL"


def test_bound_rendering_leaves_no_grafana_syntax_and_binds_every_value() -> None:
    for query in CATALOG:
        sql = render_bound(query.sql)
        assert "$" not in sql, query.name
        assert set(re.findall(r"\{(\w+):", sql)) <= {"from", "to", "interval_s", *(p.name for p in query.parameters)}


def test_bound_rendering_of_each_macro() -> None:
    sql = render_bound("SELECT $__timeInterval(t) AS time FROM x WHERE $__timeFilter_ms(t) AND a > $__fromTime_ms"
                       " AND a < $__toTime_ms AND p = ${project:sqlstring}")
    assert sql == (
        "SELECT toStartOfInterval(toDateTime(t), INTERVAL {interval_s:UInt32} second) AS time FROM x WHERE"
        " t >= {from:DateTime64(3, 'UTC')} AND t <= {to:DateTime64(3, 'UTC')}"
        " AND a > {from:DateTime64(3, 'UTC')} AND a < {to:DateTime64(3, 'UTC')} AND p = {project:String}"
    )


def test_literal_rendering_uses_now_and_the_defaults_quoted() -> None:
    query = next(q for q in CATALOG if q.name == "dora_overview")
    sql = render_literal(query, timedelta(hours=2))
    assert "$" not in sql.replace(DEPLOY_PIPELINES.default, "")
    assert "(now64(3) - INTERVAL 7200 SECOND)" in sql
    assert f"match(pipeline, '{DEPLOY_PIPELINES.default}')" in sql
    odd = AnalyticsQuery("q", "Q", "d.", ("a",), "SELECT ${v:sqlstring} AS a",
                         (QueryParameter("v", "v", "it's \\ here"),))
    assert render_literal(odd) == "SELECT 'it''s \\\\ here' AS a"


@pytest.mark.parametrize("sql, problem", [
    ("SELECT 1 WHERE p = ${other:sqlstring}", "variables used"),
    ("SELECT 1 WHERE $__timeGroup(t, 1h)", "macro"),
    ("SELECT 1 WHERE p = '$project'", "variables must be written"),
    ("SELECT 1 WHERE p = ${project}", "variables must be written"),
])
def test_a_query_the_renderers_cannot_handle_is_refused_at_definition(sql: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AnalyticsQuery("q", "Q", "d.", ("a",), sql, ())


def test_interval_keeps_buckets_bounded() -> None:
    assert interval_seconds(timedelta(hours=1)) == 60
    assert interval_seconds(timedelta(hours=24)) == 900
    assert interval_seconds(timedelta(days=7)) == 6 * 3600
    assert interval_seconds(timedelta(days=400)) == 86400


def test_unknown_names_are_refused_with_the_alternatives() -> None:
    with pytest.raises(SinkError, match="cipulse analytics list.*success_rate"):
        find_query(CATALOG, "succes_rate")
    client: Any = None  # never reached: parameters are checked first
    with pytest.raises(SinkError, match="no parameter projekt .*takes: project"):
        run_query(client, find_query(CATALOG, "success_rate"), window=timedelta(hours=1), values={"projekt": "x"})
