"""Natural time expressions -> ``(since, until)`` as aware UTC datetimes.

``since`` is inclusive and ``until`` exclusive; either may be ``None`` for an open end ("before X"
has no ``since``). Calendar periods (days, weeks starting Monday, months, years) are taken in
``tz`` (UTC unless given) and converted to UTC.

Accepted (case-insensitive, surrounding whitespace ignored)::

    today | yesterday | this week | last week | this month | last month | this year | last year
    past|last [N] minute(s)|hour(s)|day(s)|week(s)|month(s)|year(s)    (sliding, up to now;
                                       "last week|month|year" without N is the calendar period)
    N <unit>(s) ago            calendar day/week/month/year N periods back;
                               for seconds/minutes/hours the window [now-N, now-N+1)
    monday .. sunday, last monday      the most recent such day before today
    2026-01-05 | 2026-01 | 2026 | 2026-01-05T10:00[:00][+02:00|Z]
                               a date, month or year is that period; a datetime starts a window to now
    since X | after X          (start of X, now)       X any expression above
    before X | until X         (None, start of X)
    between X and Y | from X to Y | X to Y | X..Y     (start of X, end of Y)
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta, tzinfo

from shared.limits import MAX_TIME_EXPRESSION_LEN

Range = tuple[datetime | None, datetime | None]

MAX_EXPRESSION_LEN = MAX_TIME_EXPRESSION_LEN  # the longest accepted form is far shorter

_UNITS = {
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "m": "minute", "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "d": "day", "day": "day", "days": "day",
    "w": "week", "wk": "week", "wks": "week", "week": "week", "weeks": "week",
    "month": "month", "months": "month", "mo": "month",
    "y": "year", "yr": "year", "yrs": "year", "year": "year", "years": "year",
}
_SUB_DAY = {"second": 1, "minute": 60, "hour": 3600}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
          "seven": 7, "eight": 8, "nine": 9, "ten": 10}

_NUM = r"(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten)"
_UNIT = r"([a-z]+)"
_RE_SLIDING = re.compile(rf"^(?:past|last|previous|the last|the past)\s+(?:{_NUM}\s+)?{_UNIT}$")
_RE_AGO = re.compile(rf"^{_NUM}\s*{_UNIT}\s+ago$")
_RE_CAL = re.compile(r"^(this|last|previous|current)\s+(day|week|month|year)$")
_RE_RANGE = re.compile(r"^(?:between\s+(.+?)\s+and\s+(.+)|from\s+(.+?)\s+to\s+(.+)|(.+?)\s+to\s+(.+)"
                       r"|(.+?)\s*\.\.\s*(.+))$")

HELP = (
    "try: today, yesterday, this week, last week, this month, last month, past 3 days, "
    "last 2 hours, 2 weeks ago, monday, since 2026-01-01, before 2026-02-01, "
    "between 2026-01-01 and 2026-01-31, or an ISO date/datetime"
)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _midnight(d: date, tz: tzinfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def _add_months(d: date, months: int) -> date:
    total = d.year * 12 + (d.month - 1) + months
    return date(total // 12, total % 12 + 1, 1)


def _period(unit: str, back: int, local_now: datetime, tz: tzinfo) -> Range:
    """The calendar ``unit`` that is ``back`` periods before the one containing ``local_now``."""
    today = local_now.date()
    if unit == "day":
        start = today - timedelta(days=back)
        end = start + timedelta(days=1)
    elif unit == "week":
        start = today - timedelta(days=today.weekday() + 7 * back)
        end = start + timedelta(days=7)
    elif unit == "month":
        start = _add_months(today.replace(day=1), -back)
        end = _add_months(start, 1)
    else:  # year
        start = date(today.year - back, 1, 1)
        end = date(today.year - back + 1, 1, 1)
    return _midnight(start, tz), _midnight(end, tz)


def _count(word: str | None) -> int:
    if word is None:
        return 1
    n = int(word) if word.isdigit() else _WORDS[word]
    if n < 1 or n > 100_000:
        raise ValueError(f"count out of range: {n}")
    return n


def _unit(word: str, expr: str) -> str:
    unit = _UNITS.get(word)
    if unit is None:
        raise ValueError(f"unknown time unit {word!r} in {expr!r}; {HELP}")
    return unit


def _sliding(unit: str, n: int, now: datetime, tz: tzinfo) -> datetime:
    if unit in _SUB_DAY:
        return now - timedelta(seconds=n * _SUB_DAY[unit])
    if unit == "day":
        return now - timedelta(days=n)
    if unit == "week":
        return now - timedelta(weeks=n)
    local = now.astimezone(tz)
    months = n if unit == "month" else 12 * n
    total = local.year * 12 + (local.month - 1) - months
    year, month = total // 12, total % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(UTC)


def _iso(expr: str, now: datetime, tz: tzinfo) -> Range | None:
    if re.fullmatch(r"\d{4}", expr):
        y = int(expr)
        return _midnight(date(y, 1, 1), tz), _midnight(date(y + 1, 1, 1), tz)
    if re.fullmatch(r"\d{4}-\d{2}", expr):
        start = date(int(expr[:4]), int(expr[5:]), 1)
        return _midnight(start, tz), _midnight(_add_months(start, 1), tz)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", expr):
        d = date.fromisoformat(expr)
        return _midnight(d, tz), _midnight(d + timedelta(days=1), tz)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(z|[+-]\d{2}:?\d{2})?", expr):
        dt = datetime.fromisoformat(expr.upper())
        dt = dt.replace(tzinfo=tz) if dt.tzinfo is None else dt
        return dt.astimezone(UTC), now
    return None


def _single(expr: str, now: datetime, tz: tzinfo) -> Range:
    local_now = now.astimezone(tz)
    if expr in ("today", "this day"):
        return _period("day", 0, local_now, tz)
    if expr == "yesterday":
        return _period("day", 1, local_now, tz)
    if m := _RE_CAL.match(expr):
        which, unit = m.groups()
        if not (unit == "day" and which in ("last", "previous")):
            return _period(unit, 0 if which in ("this", "current") else 1, local_now, tz)
    day_name = expr.removeprefix("last ").removeprefix("on ")
    if day_name in _WEEKDAYS:
        back = (local_now.weekday() - _WEEKDAYS.index(day_name)) % 7 or 7
        return _period("day", back, local_now, tz)
    if m := _RE_SLIDING.match(expr):
        n, unit = _count(m.group(1)), _unit(m.group(2), expr)
        return _sliding(unit, n, now, tz), now
    if m := _RE_AGO.match(expr):
        n, unit = _count(m.group(1)), _unit(m.group(2), expr)
        if unit in _SUB_DAY:
            end = now - timedelta(seconds=(n - 1) * _SUB_DAY[unit])
            return end - timedelta(seconds=_SUB_DAY[unit]), end
        return _period(unit, n, local_now, tz)
    try:
        iso = _iso(expr, now, tz)
    except ValueError as exc:
        raise ValueError(f"invalid date in {expr!r}: {exc}") from None
    if iso is not None:
        return iso
    raise ValueError(f"unknown time expression {expr!r}; {HELP}")


def parse(expr: str, now: datetime | None = None, tz: tzinfo | None = None) -> Range:
    """Parse ``expr`` relative to ``now`` (default: the current time). See the module doc."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"empty time expression; {HELP}")
    if len(expr) > MAX_EXPRESSION_LEN:
        raise ValueError(f"time expression too long ({len(expr)} characters; at most "
                         f"{MAX_EXPRESSION_LEN}); {HELP}")
    now = _utc(now) if now is not None else datetime.now(UTC)
    tz = tz or UTC
    text = " ".join(expr.strip().lower().split())
    if (m := re.match(r"^(since|after|from)\s+(.+)$", text)) and not _RE_RANGE.match(text):
        return _single(m.group(2), now, tz)[0], now
    if m := re.match(r"^(before|until|till|up to)\s+(.+)$", text):
        return None, _single(m.group(2), now, tz)[0]
    if (m := _RE_RANGE.match(text)) and not _RE_CAL.match(text):
        parts = [g for g in m.groups() if g is not None]
        since = _single(parts[0], now, tz)[0]
        end = _single(parts[1], now, tz)
        until = end[1] if end[1] is not None else end[0]
        if since is not None and until is not None and until <= since:
            raise ValueError(f"empty range {expr!r}: the end is not after the start")
        return since, until
    return _single(text, now, tz)
