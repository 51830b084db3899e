"""What a question says about time, read from its words: whether it asks for the current state
("what do we use *now*", "is X *still*", "*latest*") and whether it names a period ("yesterday",
"last week", "a few days ago", "in March").

Both only steer the ranking (``ranking``): the current-state cue lets the newest of the
memories that match the question win; a named period favours memories written in it (a soft
window, wider than the calendar period, since people say "last week" for "eight days ago").
The words of the period are dropped from the keyword query: "week" or "yesterday" in a memory
says nothing about when it was written.

Every pattern is a set of literal alternatives anchored on word boundaries: linear in the
question's length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

_CURRENT = re.compile(
    r"\b(?:now|nowadays|currently|current|these days|latest|still|any ?more|at the moment"
    r"|at present|presently|right now|most recent|newest|up to date|today'?s setup"
    r"|as things stand|going forward|new(?:er)? (?:one|setup|way)|these days)\b",
    re.IGNORECASE)

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_NUMBER = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "couple of": 2, "a couple of": 2, "few": 3, "a few": 3}

_PERIOD = re.compile(
    r"\b(?P<today>earlier today|today|this morning|this afternoon|this evening|tonight)\b"
    r"|\b(?P<yesterday>yesterday|last night)\b"
    r"|\b(?P<this_week>this week|earlier this week)\b"
    r"|\b(?P<last_week>last week|past week|this past week|previous week|the other week"
    r"|a week ago|week before last)\b"
    r"|\b(?P<few_days>(?:a )?(?:few|couple of|couple) days (?:ago|back)|the other day"
    r"|past (?:few|couple of) days|recently|lately)\b"
    r"|\b(?P<n>\d{1,3}|a|an|one|two|three|four|five|six) (?P<unit>day|week|month)s? (?:ago|back)\b"
    r"|\b(?P<month_rel>this month|last month|past month|previous month)\b"
    r"|\b(?:in|back in|during|since) (?P<month>" + "|".join(_MONTHS) + r")\b",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Intent:
    current: bool  # asks for the current state
    since: datetime | None  # a period named in the question (soft: a preference, not a filter)
    until: datetime | None
    period_words: str  # the words that named it ("" if none)

    @property
    def has_period(self) -> bool:
        return self.since is not None


def _midnight(d: date, tz: tzinfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def _window(m: re.Match[str], now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    local = now.astimezone(tz)
    today = _midnight(local.date(), tz)
    day = timedelta(days=1)
    kind = m.lastgroup
    if kind == "today":  # at 2 am, "earlier today" still means the last few hours
        return min(today, now - timedelta(hours=12)), now
    if kind == "yesterday":
        return today - day - timedelta(hours=6), today + timedelta(hours=6)
    if kind == "this_week":
        return today - timedelta(days=local.weekday()) - day, now
    if kind == "last_week":
        monday = today - timedelta(days=local.weekday())
        return min(monday - 7 * day, now - 10 * day), max(monday, now - 3 * day)
    if kind == "few_days":
        return now - 8 * day, now - day / 4
    if kind == "unit":
        n = int(m["n"]) if m["n"].isdigit() else _NUMBER[m["n"].lower()]
        size = {"day": 1, "week": 7, "month": 30}[m["unit"].lower()]
        centre = now - n * size * day
        spread = max(day, size * day * 0.6) if n > 1 or size > 1 else day
        return centre - spread, centre + spread
    if kind == "month_rel":
        which = m["month_rel"].lower()
        if which == "this month":
            return _midnight(local.date().replace(day=1), tz), now
        if which == "past month":
            return now - 31 * day, now
        first = local.date().replace(day=1)
        prev = (first - day).replace(day=1)
        return _midnight(prev, tz) - 3 * day, _midnight(first, tz) + 3 * day
    # a month name: its most recent occurrence (this year's if it has begun, else last year's)
    month = _MONTHS.index(m["month"].lower()) + 1
    year = local.year if month <= local.month else local.year - 1
    start = date(year, month, 1)
    end = date(year + (month == 12), month % 12 + 1, 1)
    return _midnight(start, tz) - 3 * day, min(now, _midnight(end, tz) + 3 * day)


def read(question: str, now: datetime, tz: tzinfo) -> Intent:
    """The intent of ``question`` asked at ``now`` (aware) by a user in time zone ``tz``."""
    m = _PERIOD.search(question)
    if m is None:
        return Intent(bool(_CURRENT.search(question)), None, None, "")
    since, until = _window(m, now, tz)
    # "now" inside "a week ago now" is not a current-state cue; strip the period first. A bare
    # "today" ("how do we deploy today?") asks for the current state as well as for a period.
    rest = question[: m.start()] + " " + question[m.end():]
    current = bool(_CURRENT.search(rest)) or m.group().lower() == "today"
    return Intent(current, since, until, m.group())
