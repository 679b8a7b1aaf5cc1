"""Parse and validate REST query parameters; every failure says which parameter and why."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

from streams.exceptions import ApiRequestError

_WINDOW = re.compile(r"([0-9]{1,5})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_WINDOW = timedelta(days=400)
_DIGITS = re.compile(r"[0-9]{1,6}")
_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,200}")


def parse_window(raw: str | None, default: str = "24h", name: str = "window") -> timedelta:
    """`15m`, `1h`, `7d` ... up to 400 days; `name` is the parameter the message names."""
    text = default if raw is None or raw == "" else raw
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ApiRequestError(
            f"{name}={text!r} is not a duration: use a number and a unit s, m, h or d, e.g. 15m, 1h, 7d"
        )
    value, unit = int(match.group(1)), match.group(2)
    window = timedelta(**{_UNITS[unit]: value})
    if window <= timedelta(0) or window > MAX_WINDOW:
        raise ApiRequestError(f"{name}={text!r} must be greater than 0 and at most 400d")
    return window


def parse_limit(raw: str | None, default: int = 1000, maximum: int = 10000) -> int:
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise ApiRequestError(f"limit={raw!r} must be an integer from 1 to {maximum}")
    return int(raw)


def parse_name(query: Mapping[str, str], name: str) -> str | None:
    """Optional project/pipeline filter: letters, digits, `_ . - /`, at most 200 characters."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not _NAME.fullmatch(raw):
        raise ApiRequestError(
            f"{name}={raw!r} is not a valid name: use letters, digits, '_', '.', '-', '/' (max 200)"
        )
    return raw


def reject_unknown(query: Mapping[str, str], allowed: set[str]) -> None:
    """Typos in parameter names would otherwise silently widen a query."""
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ApiRequestError(
            f"unknown query parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
