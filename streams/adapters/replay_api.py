"""POST /adapters/replay: re-translate stored adapter deliveries and produce what they map to now.

Admin only (CIPULSE_ADMIN_TOKEN). Reads `adapter_deliveries` on this worker's ClickHouse (with
the embedded engine, the deliveries of the partitions this worker's sink consumed; with a shared
server, all of them), translates each with the adapter code running now (`streams.adapters.replay`)
and produces the events like the intake does. Still-unmappable deliveries are listed with their
reason and not dead-lettered again (they are in the dead-letter topic from their first arrival).
"""

from __future__ import annotations

import logging

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from sinks.adapter_delivery_rows import DeliverySelection, stored_deliveries
from sinks.gateway import ClickHouseGateway
from streams.acked_produce import produce_acknowledged
from streams.adapters.contract import Adapter
from streams.adapters.intake import IntakeTopics, answered_records, outgoing_records, subject_of
from streams.adapters.replay import plan_replay
from streams.adapters.replay_openapi import ReplayAnswer, ReplayedDeliveryBody, ReplayRequestBody
from streams.api_responses import admin_problem, answer, error, json_body
from streams.exceptions import RequestBodyRefused
from streams.settings import CipulseSettings

log = logging.getLogger(__name__)

ENDPOINT = "adapter_replay"
LISTED_DELIVERIES = 1_000


def register_replay_api(
    app: faust.App, *, adapters: dict[str, Adapter], topics: IntakeTopics, gateway: ClickHouseGateway,
    settings: CipulseSettings,
) -> None:
    """Attach POST /adapters/replay (described in `streams.adapters.replay_openapi`)."""

    @app.page("/adapters/replay", name=ENDPOINT)
    class ReplayView(View):
        async def post(self, request: Request) -> Response:
            refusal = admin_problem(request, settings, "replays")
            if refusal:
                return error(self, ENDPOINT, 401, refusal)
            try:
                ask = ReplayRequestBody.model_validate(await json_body(request, {}))
            except RequestBodyRefused as exc:
                return error(self, ENDPOINT, exc.status, str(exc))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
                return error(self, ENDPOINT, 422, f"invalid replay request: {problems}")
            if ask.adapter not in adapters:
                return error(self, ENDPOINT, 422, f"adapter: unknown {ask.adapter!r}; known: {', '.join(sorted(adapters))}")
            selection = DeliverySelection(
                adapter=ask.adapter, since=ask.since, until=ask.until, source=ask.source, event_type=ask.event_type,
                delivery_keys=tuple(ask.delivery_keys), limit=ask.limit,
            )
            try:
                rows = await gateway.call(stored_deliveries, selection)
            except Exception as exc:
                return error(self, ENDPOINT, 503, f"could not read stored deliveries from ClickHouse: {exc}")
            plan = plan_replay(rows, adapters)
            events = plan.events
            produced = []
            if not ask.dry_run and events:
                outcome = await produce_acknowledged(outgoing_records(events, topics), settings.ingest_ack_timeout_seconds)
                if not outcome.complete:
                    return error(self, ENDPOINT, 503, (
                        f"Kafka acknowledged {len(outcome.acknowledged)} of {len(events)} events ({outcome.explain()}); "
                        "replay again, it is idempotent"
                    ))
                produced = answered_records(events, outcome)
            unmappable = plan.still_unmappable
            log.info("adapter replay (%s%s): %d deliveries, %d events%s, %d still unmappable", ask.adapter,
                     ", dry run" if ask.dry_run else "", len(plan.deliveries), len(events),
                     "" if ask.dry_run else " produced", len(unmappable))
            body = ReplayAnswer(
                adapter=ask.adapter, dry_run=ask.dry_run, selected=len(plan.deliveries),
                translated=len(plan.deliveries) - len(unmappable), still_unmappable=len(unmappable), events=len(events),
                produced=produced,
                deliveries=[
                    ReplayedDeliveryBody(
                        delivery=d.delivery_key, event=d.event_type, events=len(d.events), unmappable=d.unmappable,
                        subjects=sorted({subject_of(e) for e in d.events}),
                    )
                    for d in plan.deliveries[:LISTED_DELIVERIES]
                ],
                received_from=rows[0].received_at if rows else None,
                received_to=rows[-1].received_at if rows else None,
                detail=("dry run: nothing produced" if ask.dry_run else
                        "events produced; the build and audit state ignore those they already have"),
            )
            return answer(self, ENDPOINT, 200, body.model_dump(mode="json"))
