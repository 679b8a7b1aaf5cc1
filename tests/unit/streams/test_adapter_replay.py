"""Replay planning (pure): stored deliveries translate with the adapter code running now; pings are
skipped, unknown adapters and still-unmappable deliveries are reported with their reason, and
the same delivery always plans the same events (which is what makes a replay harmless)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sinks.adapter_delivery_rows import AdapterDeliveryRow
from streams.adapters.registry import BY_NAME
from streams.adapters.replay import plan_replay

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def kept(adapter: str, key: str, event_type: str, body: bytes, headers: dict[str, str] | None = None) -> AdapterDeliveryRow:
    default = {"x-github-event": event_type, "x-github-delivery": key} if adapter == "github" else {}
    return AdapterDeliveryRow(adapter=adapter, source="acme", delivery_key=key, event_type=event_type,
                              headers=headers if headers is not None else default, body=body, received_at=T0)


def test_stored_deliveries_translate_again_and_unmappable_ones_say_why() -> None:
    run = (FIXTURES / "github" / "workflow_run.completed.json").read_bytes()
    legacy = (FIXTURES / "github" / "workflow_job.completed.legacy.json").read_bytes()
    rows = [
        kept("github", "d-1", "workflow_run", run),
        kept("github", "ping-1", "ping", b"{}"),
        kept("github", "d-2", "workflow_job", legacy),
        kept("jenkins", "j-1", "build", b"{}"),
    ]
    plan = plan_replay(rows, BY_NAME)
    assert [d.delivery_key for d in plan.deliveries] == ["d-1", "d-2", "j-1"]  # the ping is not replayed
    [mapped] = plan.deliveries[0].events
    assert mapped.build_id == "gh-300029405-289782451-1" and mapped.status.value == "SUCCEEDED"  # type: ignore[union-attr]
    assert [d.delivery_key for d in plan.still_unmappable] == ["d-2", "j-1"]
    assert "no workflow_name" in (plan.deliveries[1].unmappable or "")
    assert plan.deliveries[2].unmappable == "no adapter named 'jenkins' on this worker"
    assert plan.events == [mapped]


def test_the_same_deliveries_always_plan_the_same_events() -> None:
    pipeline = (FIXTURES / "gitlab" / "pipeline.success.json").read_bytes()
    headers = {"x-gitlab-event": "Pipeline Hook", "x-gitlab-event-uuid": "u-1"}
    rows = [kept("gitlab", "u-1", "Pipeline Hook", pipeline, headers)]
    first, second = plan_replay(rows, BY_NAME), plan_replay(rows, BY_NAME)
    assert first.events and first.events == second.events
    assert {e.event_id for e in first.events} == {e.event_id for e in second.events}
