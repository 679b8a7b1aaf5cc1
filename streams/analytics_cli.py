"""`cipulse analytics list|run`: the named queries of `sinks.analytics_catalog`, from a shell.

The command talks to ClickHouse directly through `CIPULSE_CLICKHOUSE_DSN`, not through a
worker: with a server DSN any number of processes may read. The embedded engine admits one
process per data path, so while a worker owns it the command stops with a message naming the
owner and the two ways out (stop the worker, or use a server DSN). Going through a worker's API
instead would need a query endpoint on the worker; not worth it for a tool that a server DSN
already serves.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from schemas.exceptions import CipulseError
from sinks.analytics import AnalyticsResult, find_query, run_query
from sinks.analytics_catalog import CATALOG
from sinks.exceptions import ClickHouseUnavailableError
from streams.query_params import parse_window
from streams.settings import CipulseSettings

FORMATS = ("table", "csv", "json")


def add_analytics_command(commands: Any) -> None:
    """Register `analytics` on the `cipulse` subparsers (`commands` is argparse's subparsers action)."""
    analytics = commands.add_parser(
        "analytics",
        help="run a named analytics query (the SQL behind the Grafana dashboards) and print a table",
        description="Named queries over ClickHouse: `list` shows them, `run NAME` prints one. Reads ClickHouse "
        "directly through CIPULSE_CLICKHOUSE_DSN; an embedded data path owned by a running worker cannot be "
        "read: stop the worker or use a server DSN. The SQL of every query is in dashboards/ANALYTICS.md.",
    )
    analytics.add_argument("action", choices=["list", "run"], help="list the queries, or run one")
    analytics.add_argument("name", nargs="?", default=None, help="query name (run only; see `list`)")
    analytics.add_argument("--window", default="24h", help="look-back window ending now, e.g. 15m, 1h, 7d (default 24h)")
    analytics.add_argument("--project", default=None, help="only this project (default: all)")
    analytics.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="set another query parameter, e.g. deploy_pipelines='-prod$' (repeatable)",
    )
    analytics.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    analytics.set_defaults(run=run_analytics)


def run_analytics(args: argparse.Namespace, settings: CipulseSettings) -> int:
    if args.action == "list":
        width = max(len(q.name) for q in CATALOG)
        for query in CATALOG:
            extra = "".join(f" [{p.name}]" for p in query.parameters if p.name != "project")
            print(f"{query.name:{width}}  {query.title}{extra}")
        return 0
    if not args.name:
        raise CipulseError("analytics run needs a query name; `cipulse analytics list` shows them")
    query = find_query(CATALOG, args.name)
    values = parse_params(args.param)
    if args.project is not None:
        values["project"] = args.project
    window = parse_window(args.window)
    from sinks.connection import open_client

    try:
        client = open_client(settings.clickhouse_dsn.get_secret_value(), settings.clickhouse_database)
    except ClickHouseUnavailableError as exc:
        raise CipulseError(
            f"{exc}. `cipulse analytics` reads ClickHouse itself: stop the worker that owns the embedded data "
            "path (Ctrl-C in infra/demo.sh), or set CIPULSE_CLICKHOUSE_DSN to a ClickHouse server"
        ) from exc
    try:
        result = run_query(client, query, window=window, values=values)
    finally:
        client.close()
    sys.stdout.write(format_result(result, args.format))
    return 0


def parse_params(raw: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` pairs from `--param`; the value may itself contain `=`."""
    values: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CipulseError(f"--param {item!r} is not NAME=VALUE")
        values[name] = value
    return values


def format_result(result: AnalyticsResult, output: str) -> str:
    """The result as an aligned text table, CSV (with header) or a JSON array of objects."""
    if output == "json":
        records = [dict(zip(result.columns, (_json_value(v) for v in row))) for row in result.rows]
        return json.dumps(records, indent=2) + "\n"
    cells = [[_text(v) for v in row] for row in result.rows]
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(cells)
        return buffer.getvalue()
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(result.columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(result.columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN: no JSON spelling
        return None
    if isinstance(value, tuple):
        return list(value)
    return value
