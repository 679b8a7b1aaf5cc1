"""Grouping and rate limiting of notifications, with Alertmanager's semantics; pure, clock-injected.

A group is one subscription's notifications that share the values of its `group_by` labels.
For each group:
- the first flush happens `group_wait` after the group's first notification, so companions
  arriving meanwhile (20 failures of one outage) go out as one message;
- after that, notifications that arrive are flushed at most every `group_interval`, and never
  less than `group_wait` after the first of them arrived (Alertmanager flushes them at the
  group's next fixed tick instead; both keep flushes `group_interval` apart);
- a flush carries at most `max_per_message` notifications, oldest first; the rest stay pending.
  A group holding `max_per_message` or more is due at once: a full message does not wait for
  `group_wait` or `group_interval` (the subscription's rate limit still paces it, and the agent
  sends a group's messages one after the other, see `streams.notify_flow`). Everything above
  applies to partial messages, the only kind a group of normal size ever sends. Notifications
  left pending by a full message count as arrived at that flush;
- a group holds at most `max_pending` notifications: `add_notification` refuses more
  (`AddOutcome.GROUP_FULL`) and the agent dead-letters them, so nothing is dropped silently
  and a group's table value stays bounded while its receiver is behind or down;
- every notification added appears in exactly one flush. A group that got nothing new is
  re-sent (`is_repeat`) only after `repeat_interval`, never when it is None; a
  `repeat_interval` shorter than `group_interval` acts as `group_interval` (as in Alertmanager,
  where repeats happen on the group's ticks). A repeat re-sends the group's last message.
- a group with nothing pending and no repeat to make is forgotten once `group_interval` has
  passed since its last flush (`is_expired`), so a later notification starts a new group that
  again waits `group_wait`, and flushes stay `group_interval` apart.

Adding a notification whose `notification_id` (its dedup key) is already pending or in the
group's last flush is a no-op (`AddOutcome.DUPLICATE`), so a change set redelivered while its
notification waits or is being sent does not produce a second message. Older duplicates are
caught by the notification log (`streams.notify_dedup.unsent`) at send time.

All state is pydantic and round-trips through JSON, so `GroupState` (keyed by `group_key`) and
`RateLimiter` (keyed by subscription id) can be Faust table values. Group-level functions are
pure and return new states; `GroupScheduler` and `RateLimiter` are small mutable wrappers: store
them back into the table after each call.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import NotificationRequest
from streams.notify_subscriptions import GroupingPolicy, GroupLabel, Subscription

_EPSILON = 1e-9


class GroupState(BaseModel):
    """One group's memory; a Faust table value keyed by `group_key`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: str
    group_key: str
    labels: dict[str, str]
    created_at: datetime
    pending: tuple[NotificationRequest, ...] = ()
    """At most the policy's `max_pending`, oldest first."""
    pending_since: datetime | None = None
    """When the oldest pending notification was added (or the full flush that left it pending)."""
    last_flush_at: datetime | None = None
    last_flushed_ids: tuple[str, ...] = ()
    """Notification ids of the last flush: the redelivery guard while it is being sent."""
    repeat_content: tuple[NotificationRequest, ...] = ()
    """What the last flush carried, kept only under a `repeat_interval`: the content of a repeat."""
    flush_seq: int = 0
    """Number of flushes so far (repeats included); part of each flush id."""

    @model_validator(mode="before")
    @classmethod
    def _from_full_last_flushed(cls, data: Any) -> Any:
        """Values written before the ids/content split hold `last_flushed` (whole notifications):
        they load as its ids plus, as repeat content, the notifications themselves (the next
        flush keeps the content only if the policy repeats)."""
        if not isinstance(data, dict) or "last_flushed" not in data:
            return data
        data = dict(data)
        old = tuple(data.pop("last_flushed") or ())
        data.setdefault("last_flushed_ids", tuple(_notification_id(n) for n in old))
        data.setdefault("repeat_content", old)
        return data


class AddOutcome(StrEnum):
    """What `add_notification` did with a notification."""

    ADDED = "added"
    DUPLICATE = "duplicate"
    """Already pending or in the group's last flush: nothing changed."""
    GROUP_FULL = "group_full"
    """The group already holds `max_pending` notifications: refused, nothing changed."""


class GroupFlush(BaseModel):
    """One message to deliver: the group's new notifications, or a repeat of the last ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flush_id: str
    """Stable id of this flush: the `Idempotency-Key` and the notification-log key of the send."""
    subscription_id: str
    group_key: str
    labels: dict[str, str]
    notifications: tuple[NotificationRequest, ...]
    is_repeat: bool
    seq: int
    flushed_at: datetime


def _notification_id(notification: object) -> object:
    """The id of a notification given as a model or as its JSON object (None: let validation say so)."""
    if isinstance(notification, NotificationRequest):
        return notification.notification_id
    if isinstance(notification, Mapping):
        return notification.get("notification_id")
    return None


def group_labels(notification: NotificationRequest, group_by: Iterable[GroupLabel]) -> dict[str, str]:
    """The values of the `group_by` labels; a missing pipeline groups as ""."""
    values: dict[str, str] = {}
    for label in group_by:
        value = getattr(notification, label)
        values[label] = "" if value is None else str(value)
    return values


def group_key(subscription_id: str, labels: Mapping[str, str]) -> str:
    """`sub{project="payments",transition="FAILED"}`; readable in logs, stable as a table key."""
    inner = ",".join(f"{name}={json.dumps(labels[name], ensure_ascii=False)}" for name in sorted(labels))
    return f"{subscription_id}{{{inner}}}"


def flush_id(group: str, seq: int, notifications: Iterable[NotificationRequest]) -> str:
    """sha256 of the group, the flush's sequence number and its members' ids."""
    members = sorted(n.notification_id for n in notifications)
    canonical = json.dumps(["cipulse.flush.v1", group, seq, members], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def add_notification(
    group: GroupState | None, notification: NotificationRequest, policy: GroupingPolicy, now: datetime
) -> tuple[GroupState, AddOutcome]:
    """The group after adding `notification`, and what became of it.

    `group` is None when the table holds no group for this key yet (or it expired). A
    duplicate is recognised before the `max_pending` check, so redelivering a notification
    the group already holds is never refused.
    """
    labels = group_labels(notification, policy.group_by)
    key = group_key(notification.subscription_id, labels)
    if group is None:
        group = GroupState(subscription_id=notification.subscription_id, group_key=key, labels=labels, created_at=now)
    elif group.group_key != key:
        raise ValueError(f"notification {notification.notification_id} belongs to group {key}, not {group.group_key}")
    if notification.notification_id in group.last_flushed_ids or any(
        n.notification_id == notification.notification_id for n in group.pending
    ):
        return group, AddOutcome.DUPLICATE
    if len(group.pending) >= policy.max_pending:
        return group, AddOutcome.GROUP_FULL
    return (
        group.model_copy(
            update={
                "pending": (*group.pending, notification),
                "pending_since": group.pending_since or now,
            }
        ),
        AddOutcome.ADDED,
    )


def next_flush_at(group: GroupState, policy: GroupingPolicy) -> datetime | None:
    """When `flush_due` next returns a flush for this group; None while it never will."""
    if group.pending:
        since = group.pending_since or group.created_at
        if len(group.pending) >= policy.max_per_message:
            return since  # a full message: due since before now
        if group.last_flush_at is None:
            return group.created_at + policy.group_wait
        return max(group.last_flush_at + policy.group_interval, since + policy.group_wait)
    if policy.repeat_interval is not None and group.repeat_content and group.last_flush_at is not None:
        return group.last_flush_at + max(policy.repeat_interval, policy.group_interval)
    return None


def flush_due(group: GroupState, policy: GroupingPolicy, now: datetime) -> tuple[GroupState, GroupFlush | None]:
    """The group after a flush due at `now`, and the flush (None when nothing is due).

    Store the returned state before (or atomically with) publishing the flush: re-running
    `flush_due` on the old state produces the same flush with the same `flush_id`. The flush
    takes the oldest `max_per_message` pending notifications; the rest stay pending.
    """
    due = next_flush_at(group, policy)
    if due is None or now < due:
        return group, None
    members = group.pending[: policy.max_per_message] if group.pending else group.repeat_content
    rest = group.pending[len(members):] if group.pending else ()
    seq = group.flush_seq + 1
    flush = GroupFlush(
        flush_id=flush_id(group.group_key, seq, members),
        subscription_id=group.subscription_id,
        group_key=group.group_key,
        labels=group.labels,
        notifications=members,
        is_repeat=not group.pending,
        seq=seq,
        flushed_at=now,
    )
    updated = group.model_copy(
        update={
            "pending": rest,
            "pending_since": now if rest else None,
            "last_flush_at": now,
            "last_flushed_ids": tuple(n.notification_id for n in members),
            "repeat_content": members if policy.repeat_interval is not None else (),
            "flush_seq": seq,
        }
    )
    return updated, flush


def is_expired(group: GroupState, policy: GroupingPolicy, now: datetime) -> bool:
    """True when the group may be deleted: nothing pending, no repeat to make, and
    `group_interval` passed since its last flush (so a new group cannot flush too early)."""
    if group.pending or next_flush_at(group, policy) is not None:
        return False
    return group.last_flush_at is None or now >= group.last_flush_at + policy.group_interval


class SchedulerState(BaseModel):
    """All groups of a `GroupScheduler`, keyed by `group_key`."""

    model_config = ConfigDict(extra="forbid")

    groups: dict[str, GroupState] = Field(default_factory=dict)


class GroupScheduler:
    """Groups of many subscriptions in one object: the in-memory form of the grouping table.

    `add` takes notifications as the agent produces them; a timer calls `due(now)` and sends
    what it returns. `state` / `from_state` move the whole memory through JSON. It knows
    nothing about sending: a group holding several full messages gives them all at once (the
    agent, `streams.notify_flow`, keeps one message per group in flight instead).
    """

    def __init__(self, policies: Mapping[str, GroupingPolicy], state: SchedulerState | None = None) -> None:
        self._policies = dict(policies)
        self._groups: dict[str, GroupState] = dict(state.groups) if state is not None else {}

    @classmethod
    def for_subscriptions(cls, subscriptions: Iterable[Subscription], state: SchedulerState | None = None) -> GroupScheduler:
        return cls({s.id: s.grouping for s in subscriptions}, state)

    @property
    def state(self) -> SchedulerState:
        return SchedulerState(groups=dict(self._groups))

    def policy(self, subscription_id: str) -> GroupingPolicy:
        try:
            return self._policies[subscription_id]
        except KeyError:
            raise KeyError(f"no grouping policy for subscription {subscription_id!r}") from None

    def add(self, notification: NotificationRequest, now: datetime) -> AddOutcome:
        """Add to its group: ADDED, DUPLICATE (the group holds this id) or GROUP_FULL (refused)."""
        policy = self.policy(notification.subscription_id)
        key = group_key(notification.subscription_id, group_labels(notification, policy.group_by))
        group, outcome = add_notification(self._groups.get(key), notification, policy, now)
        self._groups[key] = group
        return outcome

    def due(self, now: datetime) -> list[GroupFlush]:
        """Every flush due at `now`, oldest due first; forgets expired groups."""
        flushes: list[GroupFlush] = []
        for key in sorted(self._groups, key=self._sort_key):
            group = self._groups[key]
            policy = self.policy(group.subscription_id)
            while True:  # one flush per full message, then the partial rest if it is due
                group, flush = flush_due(group, policy, now)
                if flush is None:
                    break
                flushes.append(flush)
            if is_expired(group, policy, now):
                del self._groups[key]
            else:
                self._groups[key] = group
        return flushes

    def next_due(self) -> datetime | None:
        """When `due` next returns something; a timer may sleep until then."""
        times = [
            t
            for g in self._groups.values()
            if (t := next_flush_at(g, self.policy(g.subscription_id))) is not None
        ]
        return min(times, default=None)

    def _sort_key(self, key: str) -> tuple[datetime, str]:
        group = self._groups[key]
        due = next_flush_at(group, self.policy(group.subscription_id))
        return (due or datetime.max.replace(tzinfo=group.created_at.tzinfo), key)


class RateLimiter(BaseModel):
    """Token bucket of one channel: bursts up to `per_minute`, refilled at `per_minute`/60 s.

    Check `allow(now)` only when a flush is due and about to be sent; when it says no, leave
    the group unflushed and look again at `next_allowed(now)`: the notifications keep
    collecting in the group and go out together, nothing is dropped.
    """

    model_config = ConfigDict(extra="forbid")

    per_minute: int = Field(gt=0)
    tokens: float | None = None
    """None: a full bucket (a limiter that never sent)."""
    updated_at: datetime | None = None

    def _level(self, now: datetime) -> float:
        if self.tokens is None or self.updated_at is None:
            return float(self.per_minute)
        elapsed = max(0.0, (now - self.updated_at).total_seconds())
        return min(float(self.per_minute), self.tokens + elapsed * self.per_minute / 60.0)

    def allow(self, now: datetime) -> bool:
        """Take a token if one is available at `now`."""
        level = self._level(now)
        if self.updated_at is not None and now < self.updated_at:
            now = self.updated_at  # a clock step back must not refill the bucket twice
        if level + _EPSILON < 1.0:
            self.tokens, self.updated_at = level, now
            return False
        self.tokens, self.updated_at = max(0.0, level - 1.0), now
        return True

    def next_allowed(self, now: datetime) -> datetime:
        """The earliest time at which `allow` will say yes (`now` when it would now)."""
        level = self._level(now)
        if level + _EPSILON >= 1.0:
            return now
        start = max(now, self.updated_at) if self.updated_at is not None else now
        wait = (1.0 - level) * 60.0 / self.per_minute
        return start + timedelta(microseconds=math.ceil(wait * 1_000_000))
