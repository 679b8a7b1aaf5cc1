"""The ClickHouse sink of build-status: change sets -> ClickHouse, in a consumer thread of its own.

Not a Faust agent (see `streams.thread_consumer` for why): while the build-state agent had a
backlog, Faust's one delivery loop gave the sink agent almost nothing, and ClickHouse and the
dashboards fell up to ~570k change sets behind in the 1M-build run. Its consumer group is
`<app id>-clickhouse-sink`. A batch's undecodable records are dead-lettered (acknowledged by the
broker) and the rest written until ClickHouse accepts them before its offsets may be committed;
the tables' versioned keys make a re-written batch harmless.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from confluent_kafka import Message

from schemas import BuildStatusChange
from sinks.gateway import ClickHouseGateway
from streams import metrics
from streams.record_dead_letters import RecordDeadLetters
from streams.settings import CipulseSettings
from streams.sink_agent import SinkHealth, write_changes
from streams.thread_consumer import BatchHandler, ConsumerSettings, ThreadConsumer, consumer_group

PROCESSOR = "clickhouse-sink"


def sink_group(app_id: str) -> str:
    """The sink's consumer group: its commits are apart from the Faust agents' group."""
    return consumer_group(app_id, PROCESSOR)


def status_sink(
    settings: CipulseSettings, *, source_topic: str, dead_letter_topic: str, gateway: ClickHouseGateway,
    health: SinkHealth,
) -> ThreadConsumer:
    """The sink's consumer (not started); a crash of its loop shows as an unhealthy sink until it recovers."""

    @asynccontextmanager
    async def open_handler() -> AsyncIterator[BatchHandler]:
        dead_letters = RecordDeadLetters(settings.kafka_bootstrap, dead_letter_topic, PROCESSOR)
        try:
            yield lambda records: store(records, dead_letters)
        finally:
            dead_letters.close()

    async def store(records: list[Message], dead_letters: RecordDeadLetters) -> None:
        changes = [change for record in records
                   if (change := dead_letters.decode_or_reject(record, BuildStatusChange)) is not None]
        await dead_letters.confirm()
        if changes:
            await write_changes(gateway, health, settings.sink_retry_max_seconds, changes)

    def on_failure(exc: Exception) -> None:
        health.healthy = False
        health.last_error = f"sink consumer failed: {exc!r}"
        metrics.SINK_HEALTHY.set(0)

    metrics.SINK_HEALTHY.set(1 if health.healthy else 0)
    return ThreadConsumer(
        ConsumerSettings(
            bootstrap=settings.kafka_bootstrap, app_id=settings.app_id, processor=PROCESSOR, topic=source_topic,
            batch_size=settings.sink_batch_size, batch_wait_seconds=settings.sink_flush_seconds,
            legacy_group=settings.app_id,  # the Faust agent that wrote ClickHouse before this consumer
            session_timeout_seconds=settings.consumer_session_timeout,
            instance_id=settings.group_instance_id,
        ),
        open_handler,
        on_failure,
    )
