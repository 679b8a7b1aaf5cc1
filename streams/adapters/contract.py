"""What every CI adapter module provides, so one intake view and one replay command serve them all.

An adapter module (`streams.adapters.github`, `.gitlab`, `.cdevents`) is pure: no I/O, no
settings. It offers four things, collected in an `Adapter`:

- `authenticate(secrets, source, headers, body) -> source`: which configured source sent the
  request, or `Refused` (401) with a reason that names no secret;
- `identify(headers, body) -> Delivery`: the idempotency key and event type, or `BadDelivery` (400)
  when the request lacks what the CI system always sends;
- `translate(headers, body) -> list[BuildEvent | AuditEvent]`: the cipulse events, or `Unmappable`
  with the reason (the intake dead-letters the payload with it);
- `kept_headers`: the (lower-case) headers `identify`/`translate` read, stored with the raw payload
  so a replay translates exactly what arrived. Never a header that carries a secret.

Headers are passed as a mapping with lower-case names. `translate` must be deterministic: the
same request always maps to the same event ids and seqs, which is what makes redelivery and
replay change nothing downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from schemas import AuditEvent, BuildEvent

Translated = BuildEvent | AuditEvent
Headers = Mapping[str, str]


class Unmappable(Exception):
    """A well-authenticated request that cannot become cipulse events; the message is the reason."""


class Refused(Exception):
    """401: unauthenticated, or no secret for the source. The message never carries a secret."""


class BadDelivery(Exception):
    """400: the request lacks a header or field its CI system always sends; the message says which."""


@dataclass(frozen=True)
class Delivery:
    """One webhook/event delivery: `key` is its idempotency key, `event_type` what it reports."""

    key: str
    event_type: str


@dataclass(frozen=True)
class Adapter:
    """One CI system's intake: its name (the URL is /adapters/<name>) and its pure functions."""

    name: str
    secrets_setting: str
    """The environment variable holding {"<source>": "<secret>"} for this adapter."""
    kept_headers: tuple[str, ...]
    authenticate: Callable[[Mapping[str, SecretStr], str | None, Headers, bytes], str]
    identify: Callable[[Headers, bytes], Delivery]
    translate: Callable[[Headers, bytes], list[Translated]]
    pings: frozenset[str] = frozenset()
    """Event types that only test the hook (GitHub's `ping`): answered 200, neither kept nor translated."""


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased (HTTP names are case-insensitive; adapters read lower-case)."""
    return {name.lower(): value for name, value in headers.items()}
