"""The documented age buckets of open audits, without an engine (the integration tests check
that the engine's buckets agree with `age_bucket` on every edge)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.audit_queries import AGE_BUCKETS, age_bucket

MS = timedelta(milliseconds=1)
LABELS = [label for label, _ in AGE_BUCKETS]


def test_buckets_are_the_documented_five_in_age_order() -> None:
    assert AGE_BUCKETS == (
        ("<1h", timedelta(0)),
        ("1-4h", timedelta(hours=1)),
        ("4-24h", timedelta(hours=4)),
        ("1-3d", timedelta(days=1)),
        (">3d", timedelta(days=3)),
    )


@pytest.mark.parametrize(
    ("age", "label"),
    [
        (-timedelta(seconds=5), "<1h"),
        (timedelta(0), "<1h"),
        (timedelta(hours=1) - MS, "<1h"),
        (timedelta(hours=1), "1-4h"),
        (timedelta(hours=4) - MS, "1-4h"),
        (timedelta(hours=4), "4-24h"),
        (timedelta(days=1) - MS, "4-24h"),
        (timedelta(days=1), "1-3d"),
        (timedelta(days=3) - MS, "1-3d"),
        (timedelta(days=3), ">3d"),
        (timedelta(days=400), ">3d"),
    ],
)
def test_lower_edges_are_inclusive(age: timedelta, label: str) -> None:
    assert age_bucket(age) == label


@given(
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_an_older_audit_is_never_in_a_younger_bucket(a: timedelta, b: timedelta) -> None:
    younger, older = sorted((a, b))

    assert LABELS.index(age_bucket(younger)) <= LABELS.index(age_bucket(older))


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_an_age_lies_between_its_bucket_edges(age: timedelta) -> None:
    index = LABELS.index(age_bucket(age))

    assert AGE_BUCKETS[index][1] <= age
    if index + 1 < len(AGE_BUCKETS):
        assert age < AGE_BUCKETS[index + 1][1]
