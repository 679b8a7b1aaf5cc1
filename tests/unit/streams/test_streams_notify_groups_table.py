"""A group's `notify-groups` value at the largest bound a valid policy allows (pending, one message in
flight, the repeat content) fits the changelog's record limit, with notifications of typical size;
the default policy stays far below it."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import NotificationChannel, NotificationRequest, NotificationTransition
from streams.notifier import dump_group, load_group
from streams.notify_dedup import dedup_key
from streams.notify_flow import NotifierGroup
from streams.notify_grouping import GroupFlush, GroupState, flush_id, group_key, group_labels
from streams.notify_groups_table import (
    GROUP_RECORD_LIMIT_BYTES,
    GROUP_VALUE_BUDGET_BYTES,
    NOTIFICATION_JSON_BYTES,
    changelog_configs,
    worst_case_value_bytes,
)
from streams.notify_subscriptions import MAX_PENDING_LIMIT, MAX_PER_MESSAGE_LIMIT, GroupingPolicy

T0 = datetime(2026, 11, 25, 22, 16, tzinfo=UTC)
API = "http://cipulse.example.internal:8080"


def typical(i: int) -> NotificationRequest:
    """A failed build as the requester writes it (id, title, body and links of a real run)."""
    build_id = f"build-7f3a9c2e-{i:06d}"
    return NotificationRequest(
        notification_id=dedup_key("payments-oncall", "BUILD", build_id, NotificationTransition.FAILED, 7),
        subscription_id="payments-oncall", subject_kind="BUILD", subject_id=build_id, project="payments",
        pipeline="deploy-prod", transition=NotificationTransition.FAILED, status="FAILED", version=7,
        channel=NotificationChannel.WEBHOOK, title=f"payments/deploy-prod build {build_id} failed",
        body="status FAILED on branch main\ntook 4m12s\ntriggered by push (alice)\nerror: exit code 1",
        links={"build": f"{API}/builds/{build_id}", "history": f"{API}/builds/{build_id}/history"},
        created_at=T0,
    )


def value_at_bound(policy: GroupingPolicy) -> NotifierGroup:
    """`max_pending` pending, a full message in flight and, as the group repeats, its content again."""
    notes = [typical(i) for i in range(policy.max_pending + policy.max_per_message)]
    sent, pending = tuple(notes[: policy.max_per_message]), tuple(notes[policy.max_per_message:])
    labels = group_labels(notes[0], policy.group_by)
    key = group_key("payments-oncall", labels)
    group = GroupState(
        subscription_id="payments-oncall", group_key=key, labels=labels, created_at=T0, pending=pending,
        pending_since=T0, last_flush_at=T0, last_flushed_ids=tuple(n.notification_id for n in sent),
        repeat_content=sent, flush_seq=41,
    )
    flush = GroupFlush(flush_id=flush_id(key, 41, sent), subscription_id="payments-oncall", group_key=key,
                       labels=labels, notifications=sent, is_repeat=False, seq=41, flushed_at=T0)
    return NotifierGroup(group=group, in_flight=(flush,))


def test_a_typical_notification_is_within_the_size_the_bound_assumes() -> None:
    assert len(typical(0).model_dump_json()) <= NOTIFICATION_JSON_BYTES


def test_the_largest_group_a_valid_policy_allows_fits_one_changelog_record() -> None:
    policy = GroupingPolicy.model_validate({
        "max_per_message": MAX_PER_MESSAGE_LIMIT, "max_pending": MAX_PENDING_LIMIT, "repeat_interval": "4h",
    })
    entry = value_at_bound(policy)
    size = len(dump_group(entry))
    assert size <= worst_case_value_bytes(MAX_PENDING_LIMIT, MAX_PER_MESSAGE_LIMIT) <= GROUP_VALUE_BUDGET_BYTES
    assert size + len(entry.group.group_key) < GROUP_RECORD_LIMIT_BYTES
    assert load_group(dump_group(entry)) == entry


def test_the_default_policy_stays_far_below_the_limit_but_above_kafkas_default() -> None:
    policy = GroupingPolicy.model_validate({"repeat_interval": "4h"})
    size = len(dump_group(value_at_bound(policy)))
    assert 1_000_000 < size < GROUP_VALUE_BUDGET_BYTES // 2  # why the changelog needs its own limit


def test_the_changelog_is_compacted_and_takes_records_up_to_the_limit() -> None:
    assert changelog_configs() == {"cleanup.policy": "compact", "max.message.bytes": str(GROUP_RECORD_LIMIT_BYTES)}
    assert GROUP_RECORD_LIMIT_BYTES > GROUP_VALUE_BUDGET_BYTES
