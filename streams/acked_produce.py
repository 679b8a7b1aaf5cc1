"""Send records and wait for the broker's acknowledgement of each, within one deadline.

HTTP endpoints that turn a request into Kafka records (ingest, CI adapters) answer 2xx only
after every record was acknowledged, and a 503 that names exactly which were not. Delivery
futures are never cancelled: one still pending at the deadline is reported as not acknowledged
(it may yet arrive, which is harmless: consumers ignore a seq or an id they already have).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TopicT


@dataclass(frozen=True)
class Outgoing:
    """One record to send: where, with which key, and the id an answer names it by."""

    topic: TopicT
    key: bytes
    value: bytes
    record_id: str


@dataclass(frozen=True)
class Acknowledged:
    record_id: str
    topic: str
    partition: int
    offset: int


@dataclass
class AckedOutcome:
    acknowledged: list[Acknowledged] = field(default_factory=list)
    not_acknowledged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.not_acknowledged

    def explain(self) -> str:
        """Why some records were not acknowledged, once per distinct reason."""
        return "; ".join(dict.fromkeys(self.problems)) or "unknown"


async def produce_acknowledged(records: Sequence[Outgoing], timeout: float) -> AckedOutcome:
    """Send every record in order, then wait (at most `timeout` in all) for each acknowledgement."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    outcome = AckedOutcome()
    sent: list[tuple[Outgoing, asyncio.Future[Any]]] = []
    unsent: Sequence[Outgoing] = ()
    for index, record in enumerate(records):
        try:
            delivery: Awaitable[Any] = await asyncio.wait_for(
                record.topic.send(key=record.key, value=record.value), max(0.0, deadline - loop.time())
            )
            sent.append((record, asyncio.ensure_future(delivery)))
        except Exception as exc:  # TimeoutError (metadata or buffer wait) or the producer's refusal
            outcome.problems.append(describe_send_failure(exc, timeout))
            unsent = records[index:]
            break
    if sent:
        await asyncio.wait([future for _, future in sent], timeout=max(0.0, deadline - loop.time()))
    for record, future in sent:
        if not future.done():
            outcome.not_acknowledged.append(record.record_id)
            outcome.problems.append(f"the broker did not acknowledge within {timeout:g}s")
        elif future.exception() is not None:
            outcome.not_acknowledged.append(record.record_id)
            outcome.problems.append(f"{record.record_id}: {future.exception()!r}")
        else:
            metadata = future.result()
            outcome.acknowledged.append(Acknowledged(
                record_id=record.record_id, topic=record.topic.get_topic_name(),
                partition=metadata.partition, offset=metadata.offset,
            ))
    outcome.not_acknowledged.extend(record.record_id for record in unsent)
    return outcome


def describe_send_failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"the broker did not acknowledge within {timeout:g}s (no metadata or a full send buffer)"
    return f"the producer refused: {exc!r}"
