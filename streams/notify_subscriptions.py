"""Who is notified about what: the subscription file, loaded and validated once at start.

A subscription picks builds (by project and pipeline), the transitions it cares about
(FAILED, RECOVERED, ...), one channel (signed HTTP webhook, Slack-compatible webhook, or the
log for development) and how its notifications are grouped, rate limited and delivered.
The file is YAML (or JSON, chosen by the `.json` suffix) with a top-level `subscriptions` list;
see `streams/notify_subscriptions.example.yaml`. `load_subscriptions` checks every entry and
raises one `NotificationConfigError` listing every problem as `file: subscription 'id': field:
message`, so a typo stops the worker at start instead of silently dropping notifications.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas import NotificationChannel, NotificationTransition
from streams.config_files import read_config_document
from streams.notify_errors import NotificationConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PYDANTIC_TIMEDELTA: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def parse_duration(value: object) -> object:
    """Accept Alertmanager-style durations ("30s", "5m", "4h", "1h30m", "500ms").

    A bare number is refused: "30" could be seconds or minutes, and a wrong guess delays
    notifications by a factor of 60. A `timedelta` and ISO 8601 ("PT30S", what pydantic writes
    when a policy is serialised) pass through unchanged.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or isinstance(value, int | float):
        raise ValueError(f"{value!r} has no unit; write a duration like '30s', '5m' or '4h'")
    if isinstance(value, str):
        text = value.strip()
        if text.upper().startswith("P"):
            return _PYDANTIC_TIMEDELTA.validate_python(text)
        if text and _DURATION_PART.sub("", text) == "":
            return timedelta(
                seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
            )
        raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m', '4h' or '1h30m'")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration written with a unit; parsed by `parse_duration`."""

SubscriptionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=128)]
"""Letters, digits and `_.:-`: it appears in group keys, logs and table keys."""

GroupLabel = Literal["project", "pipeline", "transition", "status", "subject_kind", "subject_id"]
"""Fields of a notification that `group_by` may name."""

RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "idempotency-key", "x-cipulse-signature-256", "host"}
)
"""Headers cipulse sets itself on every webhook; a subscription may not override them."""


def _transition(value: object) -> object:
    """`failed`, `audit_stuck`, `Audit-Stuck` all name `NotificationTransition.AUDIT_STUCK` etc."""
    if isinstance(value, str):
        return value.strip().upper().replace("-", "_")
    return value


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubscriptionMatch(_ConfigModel):
    """Which builds/alerts a subscription covers; an empty list means "all"."""

    projects: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ()

    def matches(self, project: str, pipeline: str | None) -> bool:
        """True when the subject's project and pipeline pass both filters.

        A subject without a pipeline (an audit alert about a project) passes only a
        subscription that does not filter by pipeline.
        """
        if self.projects and project not in self.projects:
            return False
        if self.pipelines and (pipeline is None or pipeline not in self.pipelines):
            return False
        return True


class WebhookChannel(_ConfigModel):
    """A JSON POST; with `hmac_secret`, the body is signed (`X-Cipulse-Signature-256`)."""

    type: Literal["webhook"]
    url: HttpUrl
    hmac_secret: SecretStr | None = None
    headers: dict[str, str] = {}

    @field_validator("hmac_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty; leave hmac_secret out to send unsigned")
        return value

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(name for name in value if name.lower() in RESERVED_HEADERS)
        if clash:
            raise ValueError(f"{', '.join(clash)} is set by cipulse and cannot be overridden")
        return value

    @property
    def kind(self) -> NotificationChannel:
        return NotificationChannel.WEBHOOK


class SlackChannel(_ConfigModel):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    type: Literal["slack"]
    url: HttpUrl

    @property
    def kind(self) -> NotificationChannel:
        return NotificationChannel.SLACK


class LogChannel(_ConfigModel):
    """Write the notification to the worker log; for development, always "delivered"."""

    type: Literal["log"]

    @property
    def kind(self) -> NotificationChannel:
        return NotificationChannel.LOG


Channel = Annotated[WebhookChannel | SlackChannel | LogChannel, Field(discriminator="type")]


MAX_PER_MESSAGE_LIMIT = 1_000
"""Largest `max_per_message` accepted: a message of 1,000 notifications is about 700 KB of JSON."""
MAX_PENDING_LIMIT = 8_000
"""Largest `max_pending` accepted: with `MAX_PER_MESSAGE_LIMIT` it keeps a group's table value
under the changelog's record limit (`streams.notify_groups_table`)."""


class GroupingPolicy(_ConfigModel):
    """Alertmanager's grouping: see `streams.notify_grouping` for the exact semantics.

    `repeat_interval` defaults to None (never re-notify), unlike Alertmanager's 4h: a CI
    transition is an event that happened once, not an alert that is still firing.
    `max_per_message` caps one message (a fuller group sends several, one after the other);
    `max_pending` caps what a group holds while its receiver is behind or down: a notification
    beyond it is refused and dead-lettered, so a group's table value stays bounded.
    """

    group_by: tuple[GroupLabel, ...] = ("project", "pipeline", "transition")
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration | None = None
    max_per_message: StrictInt = 100
    max_pending: StrictInt = 5_000

    @field_validator("group_by")
    @classmethod
    def _unique_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a label twice: {list(value)}")
        return value

    @field_validator("group_wait")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"must not be negative, got {value}")
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError(f"must be a positive duration, got {value}")
        return value

    @field_validator("max_per_message")
    @classmethod
    def _message_size(cls, value: int) -> int:
        if not 1 <= value <= MAX_PER_MESSAGE_LIMIT:
            raise ValueError(f"must be between 1 and {MAX_PER_MESSAGE_LIMIT} notifications, got {value}")
        return value

    @field_validator("max_pending")
    @classmethod
    def _pending_size(cls, value: int) -> int:
        if not 1 <= value <= MAX_PENDING_LIMIT:
            raise ValueError(
                f"must be between 1 and {MAX_PENDING_LIMIT} notifications, got {value} "
                "(a group's pending notifications must fit one Kafka record)"
            )
        return value

    @model_validator(mode="after")
    def _pending_holds_a_message(self) -> GroupingPolicy:
        if self.max_pending < self.max_per_message:
            raise ValueError(
                f"max_pending ({self.max_pending}) is below max_per_message ({self.max_per_message}); "
                "a group must be able to hold one full message"
            )
        return self


class RateLimitPolicy(_ConfigModel):
    """At most `per_minute` sends on this subscription's channel (bursts up to `per_minute`)."""

    per_minute: int = Field(gt=0, le=100_000)


class DeliveryPolicy(_ConfigModel):
    """Retries of one send: exponential backoff with full jitter between `initial_backoff`
    and `max_backoff`, at most `max_attempts` attempts, each bounded by `timeout`."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    initial_backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=1)
    timeout: Duration = timedelta(seconds=10)

    @field_validator("initial_backoff", "max_backoff", "timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be a positive duration, got {value}")
        return value

    @model_validator(mode="after")
    def _initial_within_max(self) -> DeliveryPolicy:
        if self.initial_backoff > self.max_backoff:
            raise ValueError(
                f"initial_backoff ({self.initial_backoff}) exceeds max_backoff ({self.max_backoff})"
            )
        return self


class Subscription(_ConfigModel):
    """One subscriber: what it wants to hear about and how it is told."""

    id: SubscriptionId
    match: SubscriptionMatch = SubscriptionMatch()
    transitions: tuple[Annotated[NotificationTransition, BeforeValidator(_transition)], ...] = Field(min_length=1)
    channel: Channel
    grouping: GroupingPolicy = GroupingPolicy()
    rate_limit: RateLimitPolicy | None = None
    delivery: DeliveryPolicy = DeliveryPolicy()

    @field_validator("transitions")
    @classmethod
    def _unique_transitions(cls, value: tuple[NotificationTransition, ...]) -> tuple[NotificationTransition, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a transition twice: {[t.value for t in value]}")
        return value

    def wants(self, project: str, pipeline: str | None, transition: NotificationTransition) -> bool:
        return transition in self.transitions and self.match.matches(project, pipeline)


_CHANNEL_TAGS = {"webhook", "slack", "log"}


def parse_subscriptions(document: object, source: str) -> list[Subscription]:
    """Validate an already parsed subscription document; `source` names it in errors."""
    if isinstance(document, Mapping):
        unknown = sorted(str(k) for k in document if k != "subscriptions")
        if unknown:
            raise NotificationConfigError(
                f"{source}: unknown top-level key(s) {', '.join(unknown)}; only 'subscriptions' is allowed"
            )
        entries = document.get("subscriptions")
    else:
        entries = None
    if not isinstance(entries, list):
        raise NotificationConfigError(
            f"{source}: expected a mapping with a 'subscriptions' list at the top level"
        )
    problems: list[str] = []
    subscriptions: list[Subscription] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        label = _entry_label(entry, index)
        if not isinstance(entry, Mapping):
            problems.append(f"{source}: {label}: must be a mapping, got {type(entry).__name__}")
            continue
        try:
            subscription = Subscription.model_validate(entry)
        except ValidationError as exc:
            problems.extend(f"{source}: {label}: field {_field(e['loc'])}: {e['msg']}" for e in exc.errors())
            continue
        if subscription.id in first_index:
            problems.append(
                f"{source}: {label}: field id: duplicate id, already used by entry {first_index[subscription.id] + 1}"
            )
            continue
        first_index[subscription.id] = index
        subscriptions.append(subscription)
    if problems:
        raise NotificationConfigError("invalid notification subscriptions:\n" + "\n".join(problems))
    return subscriptions


def load_subscriptions(path: str | Path) -> list[Subscription]:
    """Read and validate the subscription file; called once at worker start."""
    path = Path(path)
    document = read_config_document(path, "the subscription file", NotificationConfigError)
    return parse_subscriptions(document, str(path))


def _entry_label(entry: object, index: int) -> str:
    if isinstance(entry, Mapping) and isinstance(entry.get("id"), str) and entry["id"].strip():
        return f"subscription {entry['id']!r} (entry {index + 1})"
    return f"subscription entry {index + 1} (no id)"


def _field(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "channel" and parts[1] in _CHANNEL_TAGS:
        del parts[1]
    return ".".join(parts) or "(entry)"
