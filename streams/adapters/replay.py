"""Re-translate stored adapter deliveries with the current mapping (after a mapping bug is fixed).

Pure: given the stored rows and the adapters, it says what each delivery maps to now, or why it
still cannot be mapped. The API (`streams.adapters.replay_api`) reads the rows and produces the
events. Translation is deterministic, so events of deliveries that were mapped right before are
the same events with the same ids and seqs: the build and audit state ignore them, and only what
the fix changed (a delivery that was dead-lettered, a field mapped wrongly into a later seq) has
an effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sinks.adapter_delivery_rows import AdapterDeliveryRow
from streams.adapters.contract import Adapter, Translated, Unmappable


@dataclass(frozen=True)
class ReplayedDelivery:
    delivery_key: str
    event_type: str
    events: tuple[Translated, ...] = ()
    unmappable: str | None = None


@dataclass
class ReplayPlan:
    deliveries: list[ReplayedDelivery] = field(default_factory=list)

    @property
    def events(self) -> list[Translated]:
        return [event for delivery in self.deliveries for event in delivery.events]

    @property
    def still_unmappable(self) -> list[ReplayedDelivery]:
        return [delivery for delivery in self.deliveries if delivery.unmappable is not None]


def plan_replay(rows: Sequence[AdapterDeliveryRow], adapters: Mapping[str, Adapter]) -> ReplayPlan:
    """What each stored delivery translates to with the code running now (pings are skipped)."""
    plan = ReplayPlan()
    for row in rows:
        adapter = adapters.get(row.adapter)
        if adapter is not None and row.event_type in adapter.pings:
            continue
        if adapter is None:
            plan.deliveries.append(ReplayedDelivery(row.delivery_key, row.event_type, unmappable=(
                f"no adapter named {row.adapter!r} on this worker"
            )))
            continue
        try:
            events = adapter.translate(row.headers, row.body)
        except Unmappable as exc:
            plan.deliveries.append(ReplayedDelivery(row.delivery_key, row.event_type, unmappable=str(exc)))
            continue
        plan.deliveries.append(ReplayedDelivery(row.delivery_key, row.event_type, events=tuple(events)))
    return plan
