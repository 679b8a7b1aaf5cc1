"""`cipulse` command line: broker, topics, worker, demo feed, build queries and retries.

Every command has `--help`; settings come from CIPULSE_* environment variables and
the flags shown there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.exceptions import CipulseError
from streams.settings import REPO_ROOT, CipulseSettings
from streams.topics import CATALOG, topic_name

KAFKA_SCRIPT = REPO_ROOT / "infra" / "kafka.sh"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    settings = CipulseSettings()
    logging.basicConfig(
        level=_python_level(settings.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.run(args, settings)
        return code
    except CipulseError as exc:
        print(f"cipulse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cipulse",
        description="Real-time pipeline for CI/CD build events (Kafka + Avro + Faust + ClickHouse). "
        "Settings come from CIPULSE_* environment variables (see README).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    broker = commands.add_parser("broker", help="start, stop or check the local Kafka broker (infra/kafka.sh)")
    broker.add_argument("action", choices=["start", "stop", "status", "fetch"], help="what to do")
    broker.set_defaults(run=_broker)

    topics = commands.add_parser("topics", help="create the topics cipulse needs, or list the catalog")
    topics.add_argument("action", choices=["create", "list"], help="create missing topics / print the catalog")
    topics.set_defaults(run=_topics)

    worker = commands.add_parser(
        "worker", help="run a stream worker: build-state agent, ClickHouse sink, audits, notifications and REST API"
    )
    worker.add_argument(
        "--subscriptions", default=None, metavar="FILE",
        help="notification subscriptions, YAML or JSON (default: CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE; "
        "unset = no notifications). Checked at start; see streams/notify_subscriptions.example.yaml",
    )
    worker.add_argument(
        "--check-subscriptions", action="store_true",
        help="only validate the subscription file, print what it subscribes to, and exit",
    )
    worker.add_argument(
        "--gates", default=None, metavar="FILE",
        help="quality gates, YAML or JSON (default: CIPULSE_GATES_FILE; unset = no gates). "
        "Checked at start; see streams/gates.example.yaml",
    )
    worker.add_argument(
        "--check-gates", action="store_true", help="only validate the gates file, print each gate's rules, and exit",
    )
    worker.set_defaults(run=_worker)

    feed = commands.add_parser("demo-feed", help="produce a realistic stream of builds to Kafka")
    feed.add_argument("--builds", type=int, default=None, help="number of builds (default: run until Ctrl-C)")
    feed.add_argument("--rate", type=float, default=2.0, help="builds started per second (default 2)")
    feed.add_argument("--speed", type=float, default=20.0, help="play builds this many times faster than real")
    feed.add_argument("--burst", action="store_true", help="send everything at once with simulated times")
    feed.add_argument("--seed", type=int, default=7, help="random seed (same seed, same builds)")
    feed.add_argument(
        "--no-audits", dest="audits", action="store_false",
        help="do not send deployment reviews (some stuck, some losing their record sync)",
    )
    feed.set_defaults(run=_demo_feed)

    build = commands.add_parser("build", help="query a build through the REST API")
    build.add_argument("action", choices=["status", "history"], help="current state, or accepted events")
    build.add_argument("build_id", help="the build id")
    build.add_argument("--api", default=None, help="API base URL (default: from CIPULSE_WEB_HOST/PORT)")
    build.set_defaults(run=_build)

    retry = commands.add_parser(
        "retry",
        help="check whether a build may be retried (from the retention ClickHouse reports), or request a retry",
        description="check: eligibility, reason, retention and deadline (exit 0 when eligible, 1 when not). "
        "request: publish a retry of an eligible build (needs CIPULSE_ADMIN_TOKEN); refused with the reason otherwise.",
    )
    retry.add_argument("action", choices=["check", "request"], help="only check, or request the retry")
    retry.add_argument("build_id", help="the build id")
    retry.add_argument("--reason", default="", help="why (request only; stored with the retry)")
    retry.add_argument("--by", default=None, help="who asks (request only; default: $USER)")
    retry.add_argument(
        "--idempotency-key", default=None, help="the same key always gives the same retry (safe to repeat)"
    )
    retry.add_argument("--api", default=None, help="API base URL (default: from CIPULSE_WEB_HOST/PORT)")
    retry.set_defaults(run=_retry)

    stats = commands.add_parser("stats", help="success rate and duration percentiles per pipeline")
    stats.add_argument("--window", default="24h", help="look-back window, e.g. 15m, 1h, 7d (default 24h)")
    stats.add_argument("--project", default=None, help="only this project")
    stats.add_argument("--api", default=None, help="API base URL")
    stats.set_defaults(run=_stats)

    from streams.analytics_cli import add_analytics_command

    add_analytics_command(commands)
    from streams.adapters.replay_cli import add_adapters_command

    add_adapters_command(commands)
    return parser


def _python_level(level: str) -> int:
    return {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING, "debug": logging.DEBUG}.get(
        level, logging.INFO
    )


def _broker(args: argparse.Namespace, settings: CipulseSettings) -> int:
    return subprocess.call(["bash", str(KAFKA_SCRIPT), args.action], env=os.environ.copy())


def _topics(args: argparse.Namespace, settings: CipulseSettings) -> int:
    if args.action == "list":
        for spec in CATALOG:
            print(f"{topic_name(settings, spec):32} key={spec.key:14} schema={spec.schema}")
            print(f"{'':32} produced by: {spec.producers}; consumed by: {spec.consumers}")
        return 0
    from streams.topics import ensure_topics

    created = ensure_topics(settings)
    print("created: " + ", ".join(created) if created else "all topics already exist")
    return 0


def _worker(args: argparse.Namespace, settings: CipulseSettings) -> int:
    from streams.gate_config import describe, load_gates
    from streams.notify_subscriptions import load_subscriptions

    if args.gates is not None:
        settings = settings.model_copy(update={"gates_file": Path(args.gates)})
    gates = load_gates(settings.gates_file) if settings.gates_file is not None else []  # a bad file stops here
    if args.check_gates:
        if not gates:
            print("no gates file given (--gates or CIPULSE_GATES_FILE)")
            return 2
        for gate in gates:
            print(describe(gate))
        return 0
    if args.subscriptions is not None:
        settings = settings.model_copy(update={"notify_subscriptions_file": Path(args.subscriptions)})
    path = settings.notify_subscriptions_file
    subscriptions = load_subscriptions(path) if path is not None else []  # a bad file stops here, before anything starts
    if args.check_subscriptions:
        if not subscriptions:
            print("no subscription file given (--subscriptions or CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE)")
            return 2
        for subscription in subscriptions:
            transitions = ", ".join(t.value.lower() for t in subscription.transitions)
            grouping = subscription.grouping
            print(
                f"{subscription.id}: {transitions} -> {subscription.channel.kind.value.lower()}"
                f" (group by {', '.join(grouping.group_by) or 'nothing'}, wait {grouping.group_wait},"
                f" interval {grouping.group_interval})"
            )
        return 0
    from sinks.engine_launch import launch_engine_process, uses_engine_process

    # The engine process imports and opens ClickHouse while this process imports Faust and the agents.
    dsn = settings.clickhouse_dsn.get_secret_value()
    engine = launch_engine_process() if uses_engine_process(settings.clickhouse_engine_process, dsn) else None

    from streams.worker import run_worker

    run_worker(settings, engine)
    return 0


def _demo_feed(args: argparse.Namespace, settings: CipulseSettings) -> int:
    from streams.demo_runner import run_burst, run_paced
    from streams.producer import BuildEventProducer
    from streams.topics import AUDIT_EVENTS, BUILD_EVENTS, ensure_topics

    ensure_topics(settings)
    producer = BuildEventProducer(settings.kafka_bootstrap, topic_name(settings, BUILD_EVENTS))
    audits = BuildEventProducer(settings.kafka_bootstrap, topic_name(settings, AUDIT_EVENTS)) if args.audits else None
    if args.burst:
        sent = run_burst(producer, args.builds or 100, args.seed, audit_producer=audits)
    else:
        sent = run_paced(producer, args.rate, args.speed, args.seed, args.builds, audit_producer=audits)
    print(f"demo feed done: {sent} events delivered to {topic_name(settings, BUILD_EVENTS)}", file=sys.stderr)
    return 0


def _get_json(url: str) -> tuple[int, Any]:
    return _http_json(urllib.request.Request(url))


def _http_json(request: urllib.request.Request) -> tuple[int, Any]:
    url = request.full_url
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except urllib.error.URLError as exc:
        raise CipulseError(f"cannot reach the cipulse API at {url}: {exc.reason}. Is `cipulse worker` running?") from exc


def _build(args: argparse.Namespace, settings: CipulseSettings) -> int:
    base = (args.api or settings.api_url).rstrip("/")
    suffix = "/history" if args.action == "history" else ""
    status, body = _get_json(f"{base}/builds/{urllib.parse.quote(args.build_id, safe='')}{suffix}")
    print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def _retry(args: argparse.Namespace, settings: CipulseSettings) -> int:
    base = (args.api or settings.api_url).rstrip("/")
    build = urllib.parse.quote(args.build_id, safe="")
    if args.action == "check":
        status, body = _get_json(f"{base}/builds/{build}/retry-eligibility")
        if status != 200:
            print(body.get("error", body), file=sys.stderr)
            return 1
        print(json.dumps(body, indent=2))
        print(("eligible: " if body["eligible"] else f"not eligible ({body['reason']}): ") + body["message"],
              file=sys.stderr)
        return 0 if body["eligible"] else 1
    if settings.admin_token is None:
        raise CipulseError("retry requests need CIPULSE_ADMIN_TOKEN (the worker's admin token) in the environment")
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {settings.admin_token.get_secret_value()}",
    }
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    payload = {"reason": args.reason, "requested_by": args.by or os.environ.get("USER") or "cli"}
    request = urllib.request.Request(
        f"{base}/builds/{build}/retry", data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    status, body = _http_json(request)
    if status != 202:
        print(body.get("error", body), file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


def _stats(args: argparse.Namespace, settings: CipulseSettings) -> int:
    base = (args.api or settings.api_url).rstrip("/")
    query = urllib.parse.urlencode({k: v for k, v in {"window": args.window, "project": args.project}.items() if v})
    status, body = _get_json(f"{base}/stats/pipelines?{query}")
    if status != 200:
        print(body.get("error", body), file=sys.stderr)
        return 1
    print(f"{'project':12} {'pipeline':14} {'done':>5} {'ok%':>6} {'p50 s':>7} {'p95 s':>7}")
    for row in body["rows"]:
        rate = "-" if row["success_rate"] is None else f"{100 * row['success_rate']:.1f}"
        p50 = "-" if row["duration_p50_ms"] is None else f"{row['duration_p50_ms'] / 1000:.1f}"
        p95 = "-" if row["duration_p95_ms"] is None else f"{row['duration_p95_ms'] / 1000:.1f}"
        print(f"{row['project']:12} {row['pipeline']:14} {row['finished']:>5} {rate:>6} {p50:>7} {p95:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
