"""What the grouping agent does with each input, as pure functions over one group's table value.

A group's table value (`NotifierGroup`) is its grouping memory (`GroupState`) plus the flushes
handed to the sender and not yet settled by a receipt (`in_flight`). Keeping in-flight flushes in
the table is what makes a killed worker lose nothing: the flush left `pending` in the same table
write that put it in `in_flight`, so after a restart the flush is still there to be sent again,
under the same `flush_id` (the receiver's `Idempotency-Key`).

A group has at most one flush in flight, as Alertmanager sends a group's messages one after
the other: while one is unsettled, nothing new is flushed, and the receipt that settles it
makes the group due again at once if it still holds a full message (`next_look`). With
`max_per_message` and `max_pending` from the policy, this bounds the table value: at most
`max_pending` pending notifications, one message in flight and, under a `repeat_interval`,
the last message's content (`streams.notify_groups_table` sizes the changelog for it).

The notification log (`streams.notify_dedup.NotificationLog`) is consulted on the way in
(a request already acknowledged is never grouped again) and at flush time (a pending request
acknowledged meanwhile is dropped); it is written only by `settle`, for a DELIVERED receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from schemas import NotificationRequest
from streams.notify_dedup import NotificationLog, unsent
from streams.notify_grouping import (
    AddOutcome,
    GroupFlush,
    GroupState,
    add_notification,
    flush_due,
    is_expired,
    next_flush_at,
)
from streams.notify_subscriptions import GroupingPolicy


class NotifierGroup(BaseModel):
    """The `notify-groups` table value of one group key (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: GroupState
    in_flight: tuple[GroupFlush, ...] = ()


class RequestOutcome(StrEnum):
    GROUPED = "grouped"
    """New to the group: it goes out with the group's next flush."""
    PENDING_DUPLICATE = "pending_duplicate"
    """Already pending, in flight, or in the group's last flush (a redelivered request)."""
    ALREADY_SENT = "already_sent"
    """The notification log holds an acknowledged send of it."""
    GROUP_FULL = "group_full"
    """The group already holds `max_pending` notifications: refused; the agent dead-letters it."""


class FlushOutcome(StrEnum):
    FLUSHED = "flushed"
    NOT_DUE = "not_due"
    IN_FLIGHT = "in_flight"
    """Due, but the group's previous message is not settled yet; its receipt brings the next look."""
    RATE_LIMITED = "rate_limited"
    EXPIRED = "expired"
    """Nothing pending, nothing to repeat, nothing in flight: the group may be deleted."""


def accept_request(
    entry: NotifierGroup | None,
    request: NotificationRequest,
    policy: GroupingPolicy,
    log: NotificationLog,
    now: datetime,
) -> tuple[NotifierGroup | None, RequestOutcome]:
    """The entry after `request` arrived, and what became of it."""
    if log.was_sent(request.notification_id):
        return entry, RequestOutcome.ALREADY_SENT
    if entry is not None and any(
        n.notification_id == request.notification_id for f in entry.in_flight for n in f.notifications
    ):
        return entry, RequestOutcome.PENDING_DUPLICATE
    group, added = add_notification(entry.group if entry is not None else None, request, policy, now)
    if added is AddOutcome.DUPLICATE:
        return entry, RequestOutcome.PENDING_DUPLICATE
    if added is AddOutcome.GROUP_FULL:
        return entry, RequestOutcome.GROUP_FULL
    in_flight = entry.in_flight if entry is not None else ()
    return NotifierGroup(group=group, in_flight=in_flight), RequestOutcome.GROUPED


def flush_if_due(
    entry: NotifierGroup,
    policy: GroupingPolicy,
    log: NotificationLog,
    now: datetime,
    allow: Callable[[], bool],
) -> tuple[NotifierGroup | None, GroupFlush | None, FlushOutcome]:
    """The entry after a FLUSH_DUE tick at `now` (None: delete it), the flush to send, and why.

    `allow` is the subscription's rate limiter; it is asked only when a flush is due and none
    is in flight, and a refusal leaves everything pending (nothing is dropped: it goes out with
    a later flush).
    """
    group = _without_sent(entry.group, log)
    entry = entry.model_copy(update={"group": group})
    due = next_flush_at(group, policy)
    if due is None or now < due:
        if not entry.in_flight and is_expired(group, policy, now):
            return None, None, FlushOutcome.EXPIRED
        return entry, None, FlushOutcome.NOT_DUE
    if entry.in_flight:
        return entry, None, FlushOutcome.IN_FLIGHT
    if not allow():
        return entry, None, FlushOutcome.RATE_LIMITED
    group, flush = flush_due(group, policy, now)
    if flush is None:  # cannot happen when next_flush_at said due; keep the entry as it is
        return entry, None, FlushOutcome.NOT_DUE
    return NotifierGroup(group=group, in_flight=(*entry.in_flight, flush)), flush, FlushOutcome.FLUSHED


def settle(
    entry: NotifierGroup | None, flush_id: str, delivered: bool, log: NotificationLog, now: datetime, attempt: int
) -> tuple[NotifierGroup | None, GroupFlush | None]:
    """The entry after the sender's receipt for `flush_id`, and the flush it settled.

    The flush is None when it was not in flight (a redelivered receipt): nothing more to do.
    A delivered flush is written to the log under its own id and every member's id, so neither
    the message nor any of its notifications is sent again.
    """
    if delivered:
        log.record_sent(flush_id, now, attempt)
    if entry is None:
        return None, None
    flush = next((f for f in entry.in_flight if f.flush_id == flush_id), None)
    if flush is None:
        return entry, None
    if delivered:
        for notification in flush.notifications:
            log.record_sent(notification.notification_id, now, attempt)
    remaining = tuple(f for f in entry.in_flight if f.flush_id != flush_id)
    return entry.model_copy(update={"in_flight": remaining}), flush


def next_look(entry: NotifierGroup | None, policy: GroupingPolicy) -> datetime | None:
    """When the timer should send this group its next FLUSH_DUE: the next flush, or, for an
    idle group, the moment it expires (so the table forgets it). None while a flush is in
    flight: only its receipt can change the group, and the entry it leaves gets a new look
    (at once when a full message is waiting)."""
    if entry is None or entry.in_flight:
        return None
    due = next_flush_at(entry.group, policy)
    if due is not None:
        return due
    last = entry.group.last_flush_at
    return entry.group.created_at if last is None else last + policy.group_interval


def _without_sent(group: GroupState, log: NotificationLog) -> GroupState:
    """`group` without pending notifications the log already holds (acknowledged elsewhere)."""
    pending = tuple(unsent(group.pending, log))
    if len(pending) == len(group.pending):
        return group
    return group.model_copy(update={"pending": pending, "pending_since": group.pending_since if pending else None})
