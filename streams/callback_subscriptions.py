"""REST callback subscriptions: the create request, and the versions a callback goes through.

A callback's life is a sequence of `callback_subscriptions` rows with increasing versions:
created (active), disabled (by the dispatcher, with the reason), re-enabled, deleted (a
tombstone). Every change reads the newest row and writes the next one; `next_version` makes the
version strictly increasing even when two writers' clocks disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from sinks.callback_rows import STATUS_ACTIVE, CallbackSubscriptionRow
from streams.callback_events import CallbackEventKind, CallbackTarget

_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,200}")
MIN_SECRET_LENGTH = 16


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError("use letters, digits, '_', '.', '-', '/' (1-200 characters)")
    return value


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value) or len(value) > 2000:
        raise ValueError("must be an absolute http:// or https:// URL of at most 2000 characters")
    return value


class CallbackCreate(BaseModel):
    """A new callback: where to POST, which project (and optionally pipeline), which events.

    `secret` (at least 16 characters) signs every body as `X-Cipulse-Signature-256:
    sha256=HMAC(secret, body)`; it is stored and never returned.
    """

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, AfterValidator(_http_url)]
    project: Annotated[str, AfterValidator(_name)]
    pipeline: Annotated[str, AfterValidator(_name)] | None = None
    events: list[CallbackEventKind] = Field(min_length=1, max_length=len(CallbackEventKind))
    secret: SecretStr | None = None

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[CallbackEventKind]) -> list[CallbackEventKind]:
        if len(set(events)) != len(events):
            raise ValueError("lists an event kind twice")
        return events

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters (it keys HMAC-SHA256)")
        return secret


def callback_id_for(idempotency_key: str | None) -> str:
    """Same `Idempotency-Key`, same id (a repeated POST is the same callback); none, a fresh id."""
    if not idempotency_key:
        return "cb-" + uuid.uuid4().hex[:16]
    canonical = json.dumps(["cipulse.callback-subscription.v1", idempotency_key], separators=(",", ":"))
    return "cb-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def version_at(now: datetime) -> int:
    """A version number from the clock (microseconds since the epoch)."""
    return int(now.timestamp() * 1_000_000)


def created(callback_id: str, ask: CallbackCreate, now: datetime) -> CallbackSubscriptionRow:
    return CallbackSubscriptionRow(
        callback_id=callback_id,
        project=ask.project,
        pipeline=ask.pipeline or "",
        url=ask.url,
        events=tuple(kind.value for kind in ask.events),
        secret=ask.secret.get_secret_value() if ask.secret is not None else "",
        status=STATUS_ACTIVE,
        status_reason="",
        status_changed_at=now,
        created_at=now,
        version=version_at(now),
    )


def next_version(current: CallbackSubscriptionRow, status: str, reason: str, now: datetime) -> CallbackSubscriptionRow:
    """`current` moved to `status`; its version is above `current`'s whatever the clock says."""
    return CallbackSubscriptionRow(
        callback_id=current.callback_id,
        project=current.project,
        pipeline=current.pipeline,
        url=current.url,
        events=current.events,
        secret=current.secret,
        status=status,
        status_reason=reason,
        status_changed_at=now,
        created_at=current.created_at,
        version=max(version_at(now), current.version + 1),
    )


def target_of(row: CallbackSubscriptionRow) -> CallbackTarget:
    """The dispatcher's view of a subscription; unknown event names (a newer writer) are ignored."""
    known = {kind.value for kind in CallbackEventKind}
    return CallbackTarget(
        callback_id=row.callback_id,
        project=row.project,
        pipeline=row.pipeline,
        url=row.url,
        events=frozenset(CallbackEventKind(name) for name in row.events if name in known),
        secret=row.secret,
        active=row.status == STATUS_ACTIVE,
        version=row.version,
        active_since=row.status_changed_at,
    )
