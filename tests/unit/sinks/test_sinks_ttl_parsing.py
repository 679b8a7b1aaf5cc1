"""Reading TTL clauses without an engine. Every `engine_full` and clause below was printed by the
real embedded engine (chDB 4.4.0, engine 26.9.2.1) for the DDL or ALTER named beside it; the
integration tests in tests/integration/sinks/test_sinks_retention.py check the same path
against the live engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.exceptions import SinkError
from sinks.retention import TableRetention, day_partition_start
from sinks.ttl_parsing import NO_TTL, TtlInterval, parse_ttl, ttl_clause

_PREFIX = (
    "ReplacingMergeTree(revision) PARTITION BY toYYYYMMDD(first_seen_at) "
    "ORDER BY (project, build_id) TTL "
)
_SUFFIX = " SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192"

# (what was written in CREATE TABLE ... TTL / ALTER TABLE ... MODIFY TTL, what engine_full showed)
OBSERVED = [
    ("toDateTime(first_seen_at) + INTERVAL 28 DAY",
     "toDateTime(first_seen_at) + toIntervalDay(28)"),
    ("toDateTime(first_seen_at) + INTERVAL 3 DAY",
     "toDateTime(first_seen_at) + toIntervalDay(3)"),
    ("toDateTime(first_seen_at) + INTERVAL 36 HOUR",
     "toDateTime(first_seen_at) + toIntervalHour(36)"),
    ("toDateTime(first_seen_at) + toIntervalDay(5)",
     "toDateTime(first_seen_at) + toIntervalDay(5)"),
    ("toDateTime(first_seen_at) + toIntervalHour(12)",
     "toDateTime(first_seen_at) + toIntervalHour(12)"),
    ("toDateTime(first_seen_at) + toIntervalMonth(2)",
     "toDateTime(first_seen_at) + toIntervalMonth(2)"),
    ("toDateTime(first_seen_at) + INTERVAL 1 WEEK",
     "toDateTime(first_seen_at) + toIntervalWeek(1)"),
    ("toDateTime(first_seen_at) + INTERVAL 1 YEAR",
     "toDateTime(first_seen_at) + toIntervalYear(1)"),
    ("toDateTime(first_seen_at) + INTERVAL 90 MINUTE",
     "toDateTime(first_seen_at) + toIntervalMinute(90)"),
    ("toDateTime(first_seen_at) + INTERVAL 3600 SECOND",
     "toDateTime(first_seen_at) + toIntervalSecond(3600)"),
    ("toDateTime(first_seen_at) + INTERVAL '2 day'",
     "toDateTime(first_seen_at) + toIntervalDay(2)"),
    ("toDateTime(first_seen_at) + INTERVAL 1 QUARTER",
     "toDateTime(first_seen_at) + toIntervalQuarter(1)"),
    ("first_seen_at + INTERVAL 4 DAY",
     "first_seen_at + toIntervalDay(4)"),
    ("toDateTime(first_seen_at) + INTERVAL 1 DAY + INTERVAL 12 HOUR",
     "(toDateTime(first_seen_at) + toIntervalDay(1)) + toIntervalHour(12)"),
    ("toDateTime(first_seen_at) + INTERVAL 4 DAY DELETE",
     "toDateTime(first_seen_at) + toIntervalDay(4)"),
]


@pytest.mark.parametrize(("written", "printed"), OBSERVED, ids=[w for w, _ in OBSERVED])
def test_the_clause_is_cut_out_of_engine_full_as_printed(written: str, printed: str) -> None:
    assert ttl_clause(_PREFIX + printed + _SUFFIX) == printed


@pytest.mark.parametrize(
    ("printed", "ttl", "column"),
    [
        ("toDateTime(first_seen_at) + toIntervalDay(28)", timedelta(days=28), "first_seen_at"),
        ("toDateTime(first_seen_at) + toIntervalDay(3)", timedelta(days=3), "first_seen_at"),
        ("toDateTime(first_seen_at) + toIntervalHour(36)", timedelta(hours=36), "first_seen_at"),
        ("toDateTime(first_seen_at) + toIntervalHour(12)", timedelta(hours=12), "first_seen_at"),
        ("toDateTime(first_seen_at) + toIntervalWeek(1)", timedelta(days=7), "first_seen_at"),
        (
            "toDateTime(first_seen_at) + toIntervalMinute(90)",
            timedelta(minutes=90),
            "first_seen_at",
        ),
        ("toDateTime(first_seen_at) + toIntervalSecond(3600)", timedelta(hours=1), "first_seen_at"),
        ("first_seen_at + toIntervalDay(4)", timedelta(days=4), "first_seen_at"),
        (
            "(toDateTime(first_seen_at) + toIntervalDay(1)) + toIntervalHour(12)",
            timedelta(days=1, hours=12),
            "first_seen_at",
        ),
        ("toDateTime(attempted_at) + toIntervalDay(30)", timedelta(days=30), "attempted_at"),
    ],
)
def test_fixed_intervals_are_exact(printed: str, ttl: timedelta, column: str) -> None:
    parsed = parse_ttl(printed)

    assert (parsed.ttl, parsed.column, parsed.problem) == (ttl, column, None)


@pytest.mark.parametrize(
    ("printed", "shortest"),
    [
        ("toDateTime(first_seen_at) + toIntervalMonth(1)", timedelta(days=28)),
        ("toDateTime(first_seen_at) + toIntervalMonth(2)", timedelta(days=59)),
        ("toDateTime(first_seen_at) + toIntervalQuarter(1)", timedelta(days=89)),
        ("toDateTime(first_seen_at) + toIntervalYear(1)", timedelta(days=365)),
    ],
)
def test_calendar_intervals_give_their_shortest_span(printed: str, shortest: timedelta) -> None:
    parsed = parse_ttl(printed)

    assert parsed.ttl == shortest
    assert parsed.problem is None
    assert all(interval.is_calendar for interval in parsed.intervals)


def test_typed_intervals_read_like_printed_ones() -> None:
    assert parse_ttl("toDateTime(first_seen_at) + INTERVAL 3 DAY DELETE") == parse_ttl(
        "toDateTime(first_seen_at) + toIntervalDay(3)"
    )


def test_a_table_without_ttl_says_so() -> None:
    removed = "ReplacingMergeTree(revision) PARTITION BY toYYYYMMDD(first_seen_at) " + (
        "ORDER BY (project, build_id)" + _SUFFIX
    )

    assert ttl_clause(removed) is None
    assert ttl_clause("Memory") is None
    parsed = parse_ttl(None)
    assert (parsed.ttl, parsed.column, parsed.problem) == (None, None, NO_TTL)


@pytest.mark.parametrize(
    ("engine_full", "problem"),
    [
        (  # ALTER ... MODIFY TTL ... DELETE WHERE project = 'a'
            _PREFIX + "toDateTime(first_seen_at) + toIntervalDay(4) WHERE project = 'a'" + _SUFFIX,
            "WHERE condition",
        ),
        (  # two rules, the second conditional
            _PREFIX
            + "toDateTime(first_seen_at) + toIntervalDay(4), "
            + "toDateTime(first_seen_at) + toIntervalDay(8) WHERE project = 'b'"
            + _SUFFIX,
            "WHERE condition",
        ),
        (
            "MergeTree PARTITION BY toYYYYMMDD(d) ORDER BY k TTL toDateTime(d) + toIntervalDay(30) "
            "GROUP BY k SET v = max(v) SETTINGS index_granularity = 8192",
            "GROUP BY",
        ),
        (  # MODIFY TTL toDate(first_seen_at) + 7
            _PREFIX + "toDate(first_seen_at) + 7" + _SUFFIX,
            "counts from 'toDate(first_seen_at)'",
        ),
        (  # MODIFY TTL toStartOfDay(first_seen_at) + INTERVAL 6 DAY
            _PREFIX + "toStartOfDay(first_seen_at) + toIntervalDay(6)" + _SUFFIX,
            "counts from 'toStartOfDay(first_seen_at)'",
        ),
    ],
)
def test_ttls_that_are_not_one_plain_delete_rule_are_reported_not_guessed(
    engine_full: str, problem: str
) -> None:
    parsed = parse_ttl(ttl_clause(engine_full))

    assert parsed.ttl is None
    assert parsed.column is None
    assert parsed.problem is not None and problem in parsed.problem
    assert parsed.problem.startswith("cannot derive a retention from TTL")


def test_a_quoted_ttl_or_settings_inside_a_condition_does_not_cut_the_clause() -> None:
    engine_full = (
        "MergeTree PARTITION BY toYYYYMMDD(d) ORDER BY k TTL toDateTime(d) + toIntervalDay(30) "
        "WHERE s = 'a TTL b SETTINGS c' SETTINGS index_granularity = 8192"
    )

    assert ttl_clause(engine_full) == (
        "toDateTime(d) + toIntervalDay(30) WHERE s = 'a TTL b SETTINGS c'"
    )


@pytest.mark.parametrize(
    "engine_full",
    [
        "MergeTree PARTITION BY toYYYYMMDD(d) ORDER BY k TTL toDateTime(d) + toIntervalDay(1) "
        "TO DISK 'default', toDateTime(d) + toIntervalDay(30) SETTINGS index_granularity = 8192",
        "MergeTree PARTITION BY toYYYYMMDD(d) ORDER BY k TTL toDateTime(d) + toIntervalDay(1) "
        "RECOMPRESS CODEC(ZSTD(3)), toDateTime(d) + toIntervalDay(30) "
        "SETTINGS index_granularity = 8192",
    ],
    ids=["move", "recompress"],
)
def test_move_and_recompress_rules_are_skipped_because_they_delete_nothing(
    engine_full: str,
) -> None:
    parsed = parse_ttl(ttl_clause(engine_full))

    assert (parsed.ttl, parsed.column, parsed.problem) == (timedelta(days=30), "d", None)


@pytest.mark.parametrize(
    ("clause", "problem"),
    [
        ("toDateTime(d) + toIntervalDay(1) TO DISK 'cold'", "deletes nothing"),
        ("toDateTime(d) + toIntervalMillisecond(5)", "unit 'Millisecond' is not supported"),
        ("toDateTime(d) + toIntervalDay(-1)", "negative"),
        ("toDateTime(d + toIntervalDay(1)", "do not balance"),
        ("toDateTime(d)", "nothing is added"),
        ("toDateTime(d) + toIntervalDay(1), toDateTime(d) + toIntervalDay(2)", "2 delete rules"),
    ],
)
def test_unreadable_clauses_name_the_reason(clause: str, problem: str) -> None:
    parsed = parse_ttl(clause)

    assert parsed.ttl is None
    assert parsed.problem is not None and problem in parsed.problem


@given(
    amount=st.integers(min_value=0, max_value=100_000),
    unit=st.sampled_from(["Second", "Minute", "Hour", "Day", "Week"]),
)
def test_any_fixed_interval_round_trips(amount: int, unit: str) -> None:
    parsed = parse_ttl(f"toDateTime(first_seen_at) + toInterval{unit}({amount})")

    assert parsed.ttl == timedelta(**{f"{unit.lower()}s": amount})


@pytest.mark.parametrize(
    ("start", "interval", "expected"),
    [
        # Each pair checked on the engine: SELECT toDateTime(start) + toInterval...(n)
        (datetime(2026, 1, 31, 10), TtlInterval(1, "month"), datetime(2026, 2, 28, 10)),
        (datetime(2024, 2, 29, 10), TtlInterval(1, "year"), datetime(2025, 2, 28, 10)),
        (datetime(2026, 11, 30, 10), TtlInterval(1, "quarter"), datetime(2027, 2, 28, 10)),
        (datetime(2026, 3, 31, 10), TtlInterval(3, "day"), datetime(2026, 4, 3, 10)),
    ],
)
def test_calendar_arithmetic_clamps_to_the_month_end_like_clickhouse(
    start: datetime, interval: TtlInterval, expected: datetime
) -> None:
    utc = timezone.utc
    assert interval.add_to(start.replace(tzinfo=utc)) == expected.replace(tzinfo=utc)


@given(
    months=st.integers(min_value=1, max_value=30),
    start=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_no_start_date_makes_a_calendar_interval_shorter_than_its_shortest(
    months: int, start: datetime
) -> None:
    interval = TtlInterval(months, "month")

    assert interval.add_to(start) - start >= interval.shortest


def _retention(**changes: object) -> TableRetention:
    parsed = parse_ttl("toDateTime(first_seen_at) + toIntervalMonth(1)")
    values: dict[str, object] = {
        "table": "build_context", "ttl_expression": "x", "ttl": parsed.ttl,
        "ttl_problem": None, "ttl_column": "first_seen_at", "oldest_partition": None,
        "oldest_partition_start": None, "active_parts": 0, "ttl_intervals": parsed.intervals,
    }
    values.update(changes)
    return TableRetention(**values)  # type: ignore[arg-type]


def test_expires_at_cuts_to_seconds_like_to_date_time_and_applies_calendar_units() -> None:
    first_seen = datetime(2026, 1, 31, 10, 0, 0, 999_000, tzinfo=timezone.utc)

    assert _retention().expires_at(first_seen) == datetime(2026, 2, 28, 10, tzinfo=timezone.utc)


def test_expires_at_works_from_ttl_alone_and_is_none_without_a_ttl() -> None:
    first_seen = datetime(2026, 1, 31, 10, tzinfo=timezone.utc)
    only_ttl = _retention(ttl=timedelta(days=3), ttl_intervals=())
    unknown = _retention(ttl=None, ttl_intervals=(), ttl_problem=NO_TTL)

    assert only_ttl.expires_at(first_seen) == datetime(2026, 2, 3, 10, tzinfo=timezone.utc)
    assert unknown.expires_at(first_seen) is None
    with pytest.raises(SinkError, match="timezone-aware"):
        only_ttl.expires_at(first_seen.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("partition_key", "partition_id", "start"),
    [
        ("toYYYYMMDD(first_seen_at)", "20261101", datetime(2026, 11, 1, tzinfo=timezone.utc)),
        ("toYYYYMMDD(first_seen_at)", None, None),
        ("toYYYYMMDD(first_seen_at)", "20261301", None),
        ("toYYYYMM(decided_at)", "202611", None),
        ("", "all", None),
    ],
)
def test_only_day_partitions_have_a_start(
    partition_key: str, partition_id: str | None, start: datetime | None
) -> None:
    assert day_partition_start(partition_key, partition_id) == start
