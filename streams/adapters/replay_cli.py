"""`cipulse adapters replay`: ask the worker to translate stored CI deliveries again.

The worker owns the embedded ClickHouse (one process per engine path), so the command goes
through its API (POST /adapters/replay, admin token) instead of opening the store itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from typing import Any

from schemas.exceptions import CipulseError
from streams.settings import CipulseSettings


def add_adapters_command(commands: Any) -> None:
    adapters = commands.add_parser(
        "adapters",
        help="re-translate stored CI webhook deliveries (GitHub, GitLab, CDEvents) after a mapping fix",
        description="replay: the worker reads the deliveries it kept in ClickHouse (adapter_deliveries), translates "
        "them with the mapping it runs now and produces the events. Idempotent: events that were right before are "
        "ignored by the build and audit state. Needs CIPULSE_ADMIN_TOKEN. Exit 0 when everything selected maps, "
        "1 when some deliveries still cannot be mapped (listed) or the request failed.",
    )
    actions = adapters.add_subparsers(title="actions", metavar="ACTION")
    replay = actions.add_parser("replay", help="translate stored deliveries again and produce the events")
    replay.add_argument("adapter", choices=["github", "gitlab", "cdevents"], help="which adapter's deliveries")
    replay.add_argument("--since", default=None, help="received at or after, ISO 8601 with offset (2026-11-20T00:00Z)")
    replay.add_argument("--until", default=None, help="received before, ISO 8601 with offset")
    replay.add_argument("--source", default=None, help="only deliveries of this configured source")
    replay.add_argument("--event-type", default=None, help="only this event type (e.g. workflow_job, 'Job Hook')")
    replay.add_argument("--delivery", action="append", default=[], help="only this delivery key (repeatable)")
    replay.add_argument("--limit", type=int, default=10_000, help="at most this many deliveries (default 10000)")
    replay.add_argument("--dry-run", action="store_true", help="only show what they translate to; produce nothing")
    replay.add_argument("--api", default=None, help="API base URL (default: from CIPULSE_WEB_HOST/PORT)")
    replay.set_defaults(run=replay_command)


def replay_command(args: argparse.Namespace, settings: CipulseSettings) -> int:
    from streams.cli import _http_json

    if settings.admin_token is None:
        raise CipulseError("replays need CIPULSE_ADMIN_TOKEN (the worker's admin token) in the environment")
    payload = {
        key: value for key, value in {
            "adapter": args.adapter, "since": args.since, "until": args.until, "source": args.source,
            "event_type": args.event_type, "delivery_keys": args.delivery, "limit": args.limit,
            "dry_run": args.dry_run,
        }.items() if value not in (None, [])
    }
    base = (args.api or settings.api_url).rstrip("/")
    request = urllib.request.Request(
        f"{base}/adapters/replay", data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
    )
    status, body = _http_json(request)
    if status != 200:
        print(f"replay refused ({status}): {body.get('error', body)}", file=sys.stderr)
        return 1
    for delivery in body["deliveries"]:
        outcome = f"unmappable: {delivery['unmappable']}" if delivery["unmappable"] else (
            f"{delivery['events']} events of {', '.join(delivery['subjects']) or '-'}")
        print(f"{delivery['delivery']}  {delivery['event']}  {outcome}")
    verb = "would produce" if body["dry_run"] else "produced"
    print(f"{body['selected']} deliveries, {body['translated']} translated, {body['still_unmappable']} still "
          f"unmappable; {verb} {body['events']} events", file=sys.stderr)
    return 0 if body["still_unmappable"] == 0 else 1
