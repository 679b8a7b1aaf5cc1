"""REST query parameters: what is accepted, what is refused, and that refusals name the parameter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import CipulseError
from streams.exceptions import ApiRequestError
from streams.query_params import MAX_WINDOW, parse_limit, parse_name, parse_window, reject_unknown


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("400d", timedelta(days=400)),
        ("90s", timedelta(seconds=90)),
        ("9600h", timedelta(days=400)),
    ],
)
def test_parse_window_accepts_durations_up_to_400_days(raw: str, expected: timedelta) -> None:
    assert parse_window(raw) == expected


@pytest.mark.parametrize("raw", ["0h", "0s", "401d", "9601h", "abc", "1w", "-1h", " 1h", "1h ", "1.5h", "1", "h", "1H", "123456s"])
def test_parse_window_rejects_malformed_or_out_of_range_windows_naming_the_parameter(raw: str) -> None:
    with pytest.raises(ApiRequestError) as caught:
        parse_window(raw)
    assert str(caught.value).startswith(f"window={raw!r}")


def test_parse_window_uses_the_default_when_the_parameter_is_absent_or_empty() -> None:
    """`?window=` counts as absent (as for `limit` and names), not as an invalid window."""
    assert parse_window(None) == timedelta(hours=24)
    assert parse_window("") == timedelta(hours=24)
    assert parse_window(None, default="15m") == timedelta(minutes=15)


def test_parse_window_rejects_an_empty_default_naming_the_parameter() -> None:
    with pytest.raises(ApiRequestError, match=r"^window=''"):
        parse_window(None, default="")


def test_api_request_errors_are_cipulse_errors() -> None:
    assert issubclass(ApiRequestError, CipulseError)


@given(value=st.integers(1, 99_999), unit=st.sampled_from("smhd"))
def test_parse_window_accepts_a_well_formed_window_iff_it_is_at_most_400_days(value: int, unit: str) -> None:
    window = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: value})
    if window <= MAX_WINDOW:
        assert parse_window(f"{value}{unit}") == window
    else:
        with pytest.raises(ApiRequestError, match="at most 400d"):
            parse_window(f"{value}{unit}")


def test_parse_window_rejects_a_trailing_newline() -> None:
    with pytest.raises(ApiRequestError):
        parse_window("1h\n")


@pytest.mark.parametrize(("raw", "expected"), [(None, 1000), ("", 1000), ("1", 1), ("250", 250), ("10000", 10000)])
def test_parse_limit_accepts_1_to_the_maximum_and_defaults_when_absent(raw: str | None, expected: int) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "10001", "-1", "1.5", "ten", " 5", "5 ", "+5", "1e3"])
def test_parse_limit_rejects_out_of_range_or_non_integers_naming_the_parameter(raw: str) -> None:
    with pytest.raises(ApiRequestError) as caught:
        parse_limit(raw)
    assert str(caught.value) == f"limit={raw!r} must be an integer from 1 to 10000"


def test_parse_limit_honours_a_custom_maximum_and_default() -> None:
    assert parse_limit(None, default=7, maximum=50) == 7
    assert parse_limit("50", maximum=50) == 50
    with pytest.raises(ApiRequestError, match="from 1 to 50"):
        parse_limit("51", maximum=50)


def test_parse_limit_rejects_a_superscript_digit_as_a_bad_request() -> None:
    with pytest.raises(ApiRequestError, match=r"^limit="):
        parse_limit("²")


@pytest.mark.parametrize("value", ["payments", "web-2", "team/api_ci", "v1.2", "A", "x" * 200])
def test_parse_name_accepts_letters_digits_and_underscore_dot_dash_slash(value: str) -> None:
    assert parse_name({"project": value}, "project") == value


@pytest.mark.parametrize("query", [{}, {"project": ""}, {"pipeline": "x"}])
def test_parse_name_returns_none_when_the_parameter_is_absent_or_empty(query: dict[str, str]) -> None:
    assert parse_name(query, "project") is None


@pytest.mark.parametrize("value", ["a b", "a;b", "a'b", 'a"b', "a\\b", "a%b", "a*", "x" * 201, "a\tb", "a,b"])
def test_parse_name_rejects_other_characters_naming_the_parameter(value: str) -> None:
    with pytest.raises(ApiRequestError) as caught:
        parse_name({"pipeline": value}, "pipeline")
    assert str(caught.value).startswith(f"pipeline={value!r} is not a valid name")


def test_parse_name_rejects_a_trailing_newline() -> None:
    with pytest.raises(ApiRequestError):
        parse_name({"project": "web\n"}, "project")


def test_reject_unknown_accepts_known_parameters() -> None:
    reject_unknown({"window": "1h", "project": "web"}, {"window", "project", "pipeline"})
    reject_unknown({}, set())


def test_reject_unknown_names_every_unknown_parameter_sorted_and_the_allowed_ones() -> None:
    with pytest.raises(ApiRequestError) as caught:
        reject_unknown({"windw": "1h", "project": "web", "Limit": "5"}, {"window", "project"})
    assert str(caught.value) == "unknown query parameter(s) Limit, windw; allowed: project, window"


def test_reject_unknown_says_none_are_allowed_when_the_endpoint_takes_none() -> None:
    with pytest.raises(ApiRequestError, match="allowed: none"):
        reject_unknown({"x": "1"}, set())
