"""Natural time expressions."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from store_worker.search.timeexpr import parse

NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "since", "until"),
    [
        ("today", "2026-03-18", "2026-03-19"),
        ("  Today ", "2026-03-18", "2026-03-19"),
        ("yesterday", "2026-03-17", "2026-03-18"),
        ("this week", "2026-03-16", "2026-03-23"),
        ("last week", "2026-03-09", "2026-03-16"),
        ("this month", "2026-03-01", "2026-04-01"),
        ("last month", "2026-02-01", "2026-03-01"),
        ("last year", "2025-01-01", "2026-01-01"),
        ("past 3 days", "2026-03-15T15:30", "2026-03-18T15:30"),
        ("last 2 hours", "2026-03-18T13:30", "2026-03-18T15:30"),
        ("last hour", "2026-03-18T14:30", "2026-03-18T15:30"),
        ("past week", "2026-03-11T15:30", "2026-03-18T15:30"),
        ("past 1 month", "2026-02-18T15:30", "2026-03-18T15:30"),
        ("last 2 weeks", "2026-03-04T15:30", "2026-03-18T15:30"),
        ("2 weeks ago", "2026-03-02", "2026-03-09"),
        ("a week ago", "2026-03-09", "2026-03-16"),
        ("3 days ago", "2026-03-15", "2026-03-16"),
        ("2 hours ago", "2026-03-18T13:30", "2026-03-18T14:30"),
        ("monday", "2026-03-16", "2026-03-17"),
        ("last wednesday", "2026-03-11", "2026-03-12"),
        ("since 2026-01-01", "2026-01-01", "2026-03-18T15:30"),
        ("since yesterday", "2026-03-17", "2026-03-18T15:30"),
        ("2026-01-05", "2026-01-05", "2026-01-06"),
        ("2026-01", "2026-01-01", "2026-02-01"),
        ("2026", "2026-01-01", "2027-01-01"),
        ("2026-03-01T10:00:00Z", "2026-03-01T10:00", "2026-03-18T15:30"),
        ("2026-03-01 10:00+02:00", "2026-03-01T08:00", "2026-03-18T15:30"),
        ("between 2026-01-01 and 2026-01-31", "2026-01-01", "2026-02-01"),
        ("2026-01-05..2026-01-07", "2026-01-05", "2026-01-08"),
        ("from 2026-01 to 2026-02", "2026-01-01", "2026-03-01"),
    ],
)
def test_expressions(expr, since, until):
    assert parse(expr, now=NOW) == (d(since), d(until))


def test_before_has_no_start():
    assert parse("before 2026-02-01", now=NOW) == (None, d("2026-02-01"))


def test_calendar_periods_follow_the_given_time_zone():
    ny = ZoneInfo("America/New_York")
    assert parse("today", now=NOW, tz=ny) == (d("2026-03-18T04:00"), d("2026-03-19T04:00"))


def test_an_expression_of_200_characters_is_accepted():
    assert parse(" " * 150 + "last 2 days" + " " * 39, now=NOW)


def test_naive_now_is_utc():
    assert parse("today", now=NOW.replace(tzinfo=None)) == parse("today", now=NOW)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("someday", "unknown time expression 'someday'; try: today"),
        ("last 3 fortnights", "unknown time unit 'fortnights'"),
        ("2026-13-01", "invalid date"),
        ("", "empty time expression"),
        ("between 2026-02-01 and 2026-01-01", "empty range"),
        ("last 0 days", "count out of range"),
        ("last week" + " " * 192, r"time expression too long \(201 characters; at most 200\)"),
    ],
)
def test_unknown_expressions_raise_a_helpful_value_error(expr, message):
    with pytest.raises(ValueError, match=message):
        parse(expr, now=NOW)
