"""What every adapter needs to read a CI system's request: which source's secret applies, and
required / optional fields of a JSON payload, each failure an `Unmappable` (or `Refused`) whose
message names the missing piece.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from streams.adapters.contract import Refused, Unmappable


def choose_source_secret(
    secrets: Mapping[str, SecretStr], source: str | None, *, system: str, setting: str, secret: str
) -> tuple[str, SecretStr]:
    """The (source, secret) a request must be authenticated with: `?source=`, or the only configured one.

    `system` names the CI system in messages, `setting` the CIPULSE_* variable, `secret` what the
    CI system calls its credential ("webhook secret", "secret token", "token").
    """
    if not secrets:
        raise Refused(
            f"the {system} adapter is disabled on this worker: set {setting} to a JSON object "
            f"{{\"<source>\": \"<{secret}>\"}}"
        )
    if source is None:
        if len(secrets) != 1:
            raise Refused(f"several {system} sources are configured: add ?source=<name> to the URL")
        return next(iter(secrets.items()))
    if source not in secrets:
        raise Refused(f"no {system} {secret} is configured for source {source[:80]!r} ({setting})")
    return source, secrets[source]


def obj(payload: dict[str, Any], key: str, what: str = "the payload") -> dict[str, Any]:
    """A required nested object."""
    value = payload.get(key)
    if not isinstance(value, dict):
        raise Unmappable(f"{what} has no {key} object")
    return value


def optional_obj(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def field(obj: dict[str, Any], key: str, what: str) -> Any:
    """A required value (not None, not empty)."""
    value = obj.get(key)
    if value is None or value == "":
        raise Unmappable(f"{what}.{key} is missing")
    return value


def required_text(obj: dict[str, Any], key: str, what: str) -> str:
    """A required non-blank string (a number is taken as its decimal text)."""
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    found = text(value)
    if not found:
        raise Unmappable(f"{what}.{key} is missing")
    return found


def text(value: Any) -> str | None:
    """A non-blank string, stripped; None for anything else."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_json(body: bytes, what: str = "body") -> Any:
    """The decoded JSON of a request body; `Unmappable` says whether it is not UTF-8 or not JSON, and where."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unmappable(f"the {what} is not UTF-8 (invalid byte at position {exc.start})") from None
    try:
        return json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise Unmappable(f"the {what} is not JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise Unmappable(f"the {what} nests arrays/objects too deeply to read") from None
