"""Read a table's TTL clause as ClickHouse prints it, without an engine.

ClickHouse stores a table TTL as an expression and prints it back normalised, whatever the DDL
said. Measured on the embedded engine (chDB 4.4.0, engine 26.9.2.1), `system.tables.engine_full`
and `create_table_query` show, for `CREATE TABLE ... TTL <x>` and `ALTER TABLE ... MODIFY TTL <x>`
alike (`c` stands for `toDateTime(first_seen_at)`):

    c + INTERVAL 28 DAY                 ->  c + toIntervalDay(28)
    c + INTERVAL 36 HOUR                ->  c + toIntervalHour(36)
    c + INTERVAL 90 MINUTE              ->  c + toIntervalMinute(90)
    c + INTERVAL 3600 SECOND            ->  c + toIntervalSecond(3600)
    c + INTERVAL 1 WEEK                 ->  c + toIntervalWeek(1)
    c + INTERVAL 1 QUARTER / 1 YEAR     ->  c + toIntervalQuarter(1) / c + toIntervalYear(1)
    c + INTERVAL '2 day'                ->  c + toIntervalDay(2)
    c + toIntervalDay(5)                ->  unchanged (toIntervalHour(12), toIntervalMonth(2) too)
    c + INTERVAL 1 DAY + INTERVAL 12 HOUR
                                        ->  (c + toIntervalDay(1)) + toIntervalHour(12)
    first_seen_at + INTERVAL 4 DAY      ->  first_seen_at + toIntervalDay(4)
    c + INTERVAL 4 DAY DELETE           ->  c + toIntervalDay(4)   (DELETE is the default)
    c + INTERVAL 4 DAY DELETE WHERE project = 'a'
                                        ->  c + toIntervalDay(4) WHERE project = 'a'
    c + INTERVAL 1 DAY TO DISK 'default', c + INTERVAL 30 DAY
                        ->  c + toIntervalDay(1) TO DISK 'default', c + toIntervalDay(30)
    toDate(first_seen_at) + 7           ->  unchanged
    ALTER TABLE ... REMOVE TTL          ->  no TTL clause at all

The clause sits between ` TTL ` and ` SETTINGS ` of `engine_full`; column TTLs are not part of
`engine_full`. Read the text with `client.query`: `client.command` returns the TSV rendering,
in which quotes inside the clause come back escaped (`TO DISK \\'default\\'`).

`parse_ttl` understands a single unconditional delete rule `<base> + <interval> [+ ...]` where
the base is a column or `toDateTime(<column>)` and each interval is `toInterval<Unit>(N)` (or
`INTERVAL N UNIT`, as typed); move and recompress rules are skipped, since they delete nothing.
Anything else is reported, never guessed: the caller gets `ttl=None` and a `problem` saying
what was found.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

_FIXED_UNITS: dict[str, timedelta] = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
_MONTHS_PER_UNIT: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}
_UNITS = "|".join([*_FIXED_UNITS, *_MONTHS_PER_UNIT])

_IDENTIFIER = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_BASE = re.compile(rf"^(?:toDateTime\(\s*(?P<wrapped>{_IDENTIFIER})\s*\)|(?P<bare>{_IDENTIFIER}))$")
_PRINTED_INTERVAL = re.compile(rf"^toInterval(?P<unit>{_UNITS})\(\s*(?P<amount>-?\d+)\s*\)$", re.I)
_TYPED_INTERVAL = re.compile(rf"^INTERVAL\s+(?P<amount>-?\d+)\s+(?P<unit>{_UNITS})S?$", re.I)
_ANY_INTERVAL_FUNCTION = re.compile(r"^toInterval(?P<unit>[A-Za-z]+)\(", re.I)

_TTL_START = re.compile(r"(?:^|\s)TTL\s")
_SETTINGS_START = re.compile(r"\sSETTINGS\s")
_RULE_TAIL = re.compile(r"\s(TO\s+DISK|TO\s+VOLUME|RECOMPRESS|GROUP\s+BY|WHERE|DELETE)(?=\W|$)")
_GREGORIAN_CYCLE_MONTHS = 400 * 12

NO_TTL = "the table has no TTL: its rows never expire"


@dataclass(frozen=True, slots=True)
class TtlInterval:
    """One `toInterval<Unit>(amount)` term. `unit` is lower-case: second, minute, hour, day,
    week, month, quarter or year."""

    amount: int
    unit: str

    @property
    def is_calendar(self) -> bool:
        """True for month, quarter and year: their length depends on the date they start at."""
        return self.unit in _MONTHS_PER_UNIT

    @property
    def shortest(self) -> timedelta:
        """The least time this interval can span. Exact for fixed units; for calendar units the
        shortest over every start date (1 month: 28 days, 1 year: 365 days), so a limit built
        on it never outlives the data."""
        if self.unit in _FIXED_UNITS:
            return self.amount * _FIXED_UNITS[self.unit]
        return timedelta(days=_shortest_month_span(self.amount * _MONTHS_PER_UNIT[self.unit]))

    def add_to(self, moment: datetime) -> datetime:
        """`moment + interval` as ClickHouse computes it: calendar units keep the day of month
        and clamp it to the target month's last day (Jan 31 + 1 month = Feb 28)."""
        if self.unit in _FIXED_UNITS:
            return moment + self.amount * _FIXED_UNITS[self.unit]
        return _add_months(moment, self.amount * _MONTHS_PER_UNIT[self.unit])


@dataclass(frozen=True, slots=True)
class ParsedTtl:
    """What a TTL clause means for row expiry.

    `ttl` is how long after the value of `column` a row is deleted (the shortest span when
    calendar units are involved), None with `problem` set when the table has no TTL
    (`problem == NO_TTL`) or its TTL is not one `parse_ttl` can turn into a duration.
    `intervals` are the added terms in order, for exact per-row arithmetic.
    """

    ttl: timedelta | None
    column: str | None
    intervals: tuple[TtlInterval, ...]
    problem: str | None


class _Unreadable(Exception):
    """Internal: the clause is not in a shape `parse_ttl` understands; the message says why."""


def ttl_clause(engine_full: str) -> str | None:
    """The table TTL clause of a `system.tables.engine_full` value, or None if it has none."""
    masked = _mask(engine_full)
    start = _TTL_START.search(masked)
    if start is None:
        return None
    end = _SETTINGS_START.search(masked, start.end())
    clause = engine_full[start.end() : end.start() if end else len(engine_full)].strip()
    return clause or None


def parse_ttl(expression: str | None) -> ParsedTtl:
    """Turn a printed TTL clause (`ttl_clause`'s result) into a duration and its start column."""
    if expression is None or not expression.strip():
        return ParsedTtl(ttl=None, column=None, intervals=(), problem=NO_TTL)
    try:
        column, intervals = _parse_clause(expression.strip())
    except _Unreadable as exc:
        return ParsedTtl(
            ttl=None,
            column=None,
            intervals=(),
            problem=f"cannot derive a retention from TTL {expression!r}: {exc}",
        )
    ttl = sum((interval.shortest for interval in intervals), timedelta(0))
    return ParsedTtl(ttl=ttl, column=column, intervals=intervals, problem=None)


def add_intervals(moment: datetime, intervals: tuple[TtlInterval, ...]) -> datetime:
    """`moment` plus each interval in turn, left to right as ClickHouse evaluates the sum."""
    for interval in intervals:
        moment = interval.add_to(moment)
    return moment


def _parse_clause(clause: str) -> tuple[str, tuple[TtlInterval, ...]]:
    if not _scan(clause)[1]:
        raise _Unreadable("its parentheses or quotes do not balance")
    rules = [_delete_expression(rule) for rule in _split_top_level(clause, ",")]
    delete_rules = [rule for rule in rules if rule is not None]
    if not delete_rules:
        raise _Unreadable("it only moves or recompresses data and deletes nothing")
    if len(delete_rules) > 1:
        raise _Unreadable(f"it has {len(delete_rules)} delete rules; expected exactly one")
    column, intervals = _parse_sum(delete_rules[0])
    if not intervals:
        raise _Unreadable("nothing is added to the column, so rows expire at the column's time")
    return column, tuple(intervals)


def _delete_expression(rule: str) -> str | None:
    """The expression of an unconditional delete rule; None for a rule that deletes nothing."""
    tail = _RULE_TAIL.search(_mask(rule))
    if tail is None:
        return rule
    keyword = " ".join(tail.group(1).split())
    rest = rule[tail.start() :].strip()
    if keyword in ("TO DISK", "TO VOLUME", "RECOMPRESS"):
        return None
    if keyword == "GROUP BY":
        raise _Unreadable("it rolls rows up (GROUP BY) instead of deleting them")
    if keyword == "WHERE" or re.search(r"\bWHERE\b", _mask(rest)):
        raise _Unreadable("it deletes only rows matching a WHERE condition")
    if rest != "DELETE":
        raise _Unreadable(f"unexpected text after the expression: {rest!r}")
    return rule[: tail.start()]


def _parse_sum(expression: str) -> tuple[str, list[TtlInterval]]:
    """`base + i1 + i2` (printed as `(base + i1) + i2`) -> (base column, [i1, i2])."""
    expression = _strip_enclosing_parentheses(expression.strip())
    plus = _mask(expression).rfind("+")
    if plus < 0:
        match = _BASE.match(expression)
        if match is None:
            raise _Unreadable(
                f"it counts from {expression!r}, not from a column or toDateTime(column)"
            )
        return (match["wrapped"] or match["bare"]).strip("`"), []
    column, intervals = _parse_sum(expression[:plus])
    return column, [*intervals, _parse_interval(expression[plus + 1 :].strip())]


def _parse_interval(term: str) -> TtlInterval:
    match = _PRINTED_INTERVAL.match(term) or _TYPED_INTERVAL.match(term)
    if match is None:
        other = _ANY_INTERVAL_FUNCTION.match(term)
        if other is not None:
            raise _Unreadable(f"interval unit {other['unit']!r} is not supported")
        raise _Unreadable(f"{term!r} is not an interval (toInterval<Unit>(N))")
    amount = int(match["amount"])
    if amount < 0:
        raise _Unreadable(f"interval {term!r} is negative")
    return TtlInterval(amount=amount, unit=match["unit"].lower())


def _split_top_level(text: str, separator: str) -> list[str]:
    masked = _mask(text)
    parts: list[str] = []
    start = 0
    for index, char in enumerate(masked):
        if char == separator:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return parts


def _strip_enclosing_parentheses(expression: str) -> str:
    while expression.startswith("(") and expression.endswith(")"):
        inner = expression[1:-1]
        if not _scan(inner)[1]:
            break  # `(a) + (b)`: the first ')' closes the first '(', not the last
        expression = inner.strip()
    return expression


def _mask(text: str) -> str:
    return _scan(text)[0]


def _scan(text: str) -> tuple[str, bool]:
    """`text` with everything inside parentheses and quotes (brackets and quotes included)
    replaced by '_', so searches see only the top level; and whether it balanced."""
    masked: list[str] = []
    depth = 0
    quote: str | None = None
    escaped = False
    balanced = True
    for char in text:
        if quote is not None:
            masked.append("_")
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
            masked.append("_")
        elif char == "(":
            depth += 1
            masked.append("_")
        elif char == ")":
            if depth == 0:
                balanced = False
            else:
                depth -= 1
            masked.append("_")
        else:
            masked.append("_" if depth else char)
    return "".join(masked), balanced and depth == 0 and quote is None


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@lru_cache(maxsize=64)
def _shortest_month_span(months: int) -> int:
    """Fewest days `months` calendar months can span under ClickHouse's clamping.

    Starting on day k of a month M, the span is the days from the 1st of M to the 1st of M+months
    (`whole`), shortened when k is past the last day of the target month; the worst start is
    M's last day. The Gregorian calendar repeats every 400 years, so one cycle covers all cases.
    """
    if months == 0:
        return 0
    best: int | None = None
    for index in range(2000 * 12, 2000 * 12 + _GREGORIAN_CYCLE_MONTHS):
        start_year, start_month = divmod(index, 12)
        end_year, end_month = divmod(index + months, 12)
        start_length = calendar.monthrange(start_year, start_month + 1)[1]
        end_length = calendar.monthrange(end_year, end_month + 1)[1]
        whole = (
            datetime(end_year, end_month + 1, 1) - datetime(start_year, start_month + 1, 1)
        ).days
        span = whole + min(0, end_length - start_length)
        best = span if best is None else min(best, span)
    assert best is not None
    return best
