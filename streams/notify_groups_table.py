"""How large one `notify-groups` value may get, and the Kafka limits that let it through.

A group's table value (`streams.notify_flow.NotifierGroup`, JSON) is one changelog record. The
grouping policy bounds it: at most `max_pending` pending notifications, one message in flight
(at most `max_per_message` notifications), under a `repeat_interval` the last message's content
once more, and the last message's notification ids. A build notification is about 700 bytes
of JSON (670 with the requester's two links, 570 in `benchmarks/notification_latency.py`), so:

- the default policy (5,000 pending, 100 per message) peaks at about 3.6 MB;
- the largest policy validation accepts (8,000 pending, 1,000 per message) at about 7.1 MB.

Kafka's default limit for one record is 1 MB (the broker's `message.max.bytes`, Faust's
`producer_max_request_size`): a group holding more than about 1,500 notifications would stop
the worker with `MessageSizeTooLargeError` on the changelog write. So the changelog topic gets
`max.message.bytes` = `GROUP_RECORD_LIMIT_BYTES` (from `ensure_topics`, and from the table's
`extra_topic_configs` when Faust declares it), and the Faust app sends records up to that size
(`producer_max_request_size`). Consumers need no setting: a fetch returns a record larger than
its fetch size whole (KIP-74; checked with aiokafka 0.14 and a 3 MB record).

The ~700 bytes are typical, not a bound: a notification's body carries the build's error and
termination reasons, free text from the CI system. Notifications averaging more than about
830 bytes under the largest policy (1.6 KB under the default one) can still exceed the limit.
"""

from __future__ import annotations

NOTIFICATION_JSON_BYTES = 700
"""Typical size of one build notification in the table value (JSON)."""
NOTIFICATION_ID_JSON_BYTES = 67
"""One sha256 hex id in `last_flushed_ids`, quoted, with its comma."""
GROUP_VALUE_BUDGET_BYTES = 8 * 1024 * 1024
"""What the largest group value a valid policy allows must fit (tested with typical notifications)."""
GROUP_RECORD_LIMIT_BYTES = GROUP_VALUE_BUDGET_BYTES + 256 * 1024
"""`max.message.bytes` of the changelog and the producer's request limit: the value plus room
for the group key and Kafka's record and batch headers."""


def worst_case_value_bytes(
    max_pending: int, max_per_message: int, notification_bytes: int = NOTIFICATION_JSON_BYTES
) -> int:
    """Estimated size of a group value at its policy's bound (pending, in flight, repeat content, ids)."""
    notifications = max_pending + 2 * max_per_message
    return notifications * notification_bytes + max_per_message * NOTIFICATION_ID_JSON_BYTES


def changelog_configs() -> dict[str, str]:
    """Topic configs of the `notify-groups` changelog: compacted, records up to the group bound."""
    return {"cleanup.policy": "compact", "max.message.bytes": str(GROUP_RECORD_LIMIT_BYTES)}
