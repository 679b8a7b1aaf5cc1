"""Delivery policy of one send: what to do after each attempt, and what goes on the wire.

Pure: the sender performs the HTTP request and asks `next_action` what to do with its outcome.
- 2xx is the acknowledgement: `Delivered`; only then is the notification log written.
- 429 and 503 honour `Retry-After` (seconds or HTTP-date); other 5xx, 408, 425 and transport
  errors (refused, reset, timeout) retry after `backoff` (exponential, full jitter).
- Other statuses (400, 401, 404, 410, 413, ...) will not get better by retrying: `GiveUp`.
- After `max_attempts` attempts it is `GiveUp` with the last error, for the dead-letter topic.
A `Retry` is a time to try again, not a sleep: the sender schedules it per channel, so a slow
receiver never holds up another channel.

The webhook body is canonical JSON (sorted keys, no spaces) and the signature covers exactly
those bytes; a receiver recomputes `sha256=HMAC(secret, body)` and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import SecretStr

from schemas import NotificationRequest, NotificationTransition
from streams.notify_grouping import GroupFlush
from streams.notify_subscriptions import DeliveryPolicy

SIGNATURE_HEADER = "X-Cipulse-Signature-256"
USER_AGENT = "cipulse-notifier/1"
RETRY_AFTER_STATUSES = frozenset({429, 503})
RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
SLACK_MAX_LISTED = 10
"""Notifications listed one by one in a Slack message; the rest are counted (Slack caps
a message at 50 blocks and a section at 3000 characters)."""
_SLACK_SECTION_LIMIT = 3000


@dataclass(frozen=True)
class Delivered:
    """The receiver acknowledged (2xx): write the notification log now."""

    attempt: int


@dataclass(frozen=True)
class Retry:
    """Try again `after` seconds from now."""

    after: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    """Stop: dead-letter the notification with `reason` (the last error)."""

    reason: str
    attempts: int


DeliveryAction = Delivered | Retry | GiveUp


def backoff(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): uniform in
    [0, min(maximum, initial * 2**(attempt-1))] ("full jitter"), so many senders retrying
    the same receiver spread out instead of arriving together."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    cap = min(maximum, initial * 2.0 ** min(attempt - 1, 1023))
    return rng.uniform(0.0, cap)


def retry_after(header_value: str | None, now: datetime) -> float | None:
    """Seconds the receiver asked us to wait, from a `Retry-After` value; None when absent or
    unreadable. A date in the past means "now" (0.0)."""
    if header_value is None:
        return None
    text = header_value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_action(
    attempt: int,
    status_or_error: int | BaseException,
    headers: Mapping[str, str],
    policy: DeliveryPolicy,
    *,
    now: datetime,
    rng: random.Random,
) -> DeliveryAction:
    """What to do after attempt `attempt` (1-based) ended with an HTTP status or an exception."""
    if isinstance(status_or_error, BaseException):
        error = f"{type(status_or_error).__name__}: {status_or_error}".rstrip(": ")
        retryable = True
        status: int | None = None
    else:
        status = status_or_error
        if 200 <= status < 300:
            return Delivered(attempt)
        error = f"HTTP {status}"
        retryable = status in RETRYABLE_STATUSES
    if not retryable:
        return GiveUp(f"{error}: the receiver refused the notification; retrying cannot help", attempt)
    if attempt >= policy.max_attempts:
        return GiveUp(f"{error} on attempt {attempt} of {policy.max_attempts}", attempt)
    if status in RETRY_AFTER_STATUSES:
        asked = retry_after(_header(headers, "Retry-After"), now)
        if asked is not None:
            return Retry(asked, f"{error}, Retry-After {asked:g}s")
    wait = backoff(attempt, policy.initial_backoff.total_seconds(), policy.max_backoff.total_seconds(), rng)
    return Retry(wait, f"{error}, backoff {wait:.3f}s")


def sign(body: bytes, secret: SecretStr | str | bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, body)."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_headers(
    notification_id: str, signature: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers of a webhook POST. `Idempotency-Key` is the flush id: the same on every retry
    and re-send, so the receiver can de-duplicate. The subscription's `extra` headers cannot
    override cipulse's (the subscription model refuses them)."""
    headers = dict(extra or {})
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": notification_id,
        }
    )
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return headers


def webhook_payload(flush: GroupFlush) -> dict[str, Any]:
    """The JSON document a webhook receives for one flush."""
    return {
        "notification_id": flush.flush_id,
        "subscription_id": flush.subscription_id,
        "group_key": flush.group_key,
        "labels": dict(flush.labels),
        "is_repeat": flush.is_repeat,
        "flushed_at": flush.flushed_at.isoformat(),
        "notifications": [n.model_dump(mode="json") for n in flush.notifications],
    }


def webhook_body(flush: GroupFlush) -> bytes:
    """Canonical JSON bytes of `webhook_payload`: sign these exact bytes and send them."""
    return json.dumps(webhook_payload(flush), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


_ICONS = {
    NotificationTransition.FAILED: ":x:",
    NotificationTransition.RECOVERED: ":white_check_mark:",
    NotificationTransition.SUCCEEDED: ":heavy_check_mark:",
    NotificationTransition.CANCELED: ":no_entry_sign:",
    NotificationTransition.AUDIT_STUCK: ":hourglass:",
    NotificationTransition.GATE_FAILED: ":construction:",
}


def slack_body(notification: NotificationRequest | GroupFlush) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: `text` (the fallback shown in notifications)
    plus `blocks`. A flush of many notifications lists the first `SLACK_MAX_LISTED`."""
    if isinstance(notification, NotificationRequest):
        members: tuple[NotificationRequest, ...] = (notification,)
        repeat = False
    else:
        members = notification.notifications
        repeat = notification.is_repeat
    prefix = "[repeat] " if repeat else ""
    if len(members) == 1:
        only = members[0]
        text = f"{prefix}{_ICONS.get(only.transition, '')} {only.title}".strip()
    else:
        transitions = sorted({m.transition.value.lower().replace("_", " ") for m in members})
        projects = sorted({m.project for m in members})
        text = f"{prefix}{len(members)} notifications ({', '.join(transitions)}) in {', '.join(projects)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _truncate(text, 150), "emoji": True}}
    ]
    for member in members[:SLACK_MAX_LISTED]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_section(member)}})
    hidden = len(members) - SLACK_MAX_LISTED
    if hidden > 0:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"...and {hidden} more not listed here"}]}
        )
    return {"text": _escape(text), "blocks": blocks}


def _slack_section(member: NotificationRequest) -> str:
    icon = _ICONS.get(member.transition, "")
    line = f"{icon} *{_escape(member.title)}*".strip()
    parts = [line]
    if member.body:
        parts.append(_escape(member.body))
    if member.links:
        parts.append(" | ".join(f"<{url}|{_escape(name)}>" for name, url in sorted(member.links.items())))
    return _truncate("\n".join(parts), _SLACK_SECTION_LIMIT)


def _escape(text: str) -> str:
    """Slack mrkdwn control characters: &, <, >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)
