"""The memory list's view: what the address says to show (query, filters, page), checked, and
turned into the store's ``Search`` fields and back into addresses for links."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from shared.limits import (
    MAX_ID_LEN,
    MAX_KIND_LEN,
    MAX_PROJECT_LEN,
    MAX_QUERY_CHARS,
    MAX_SESSION_ID_LEN,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_TIME_EXPRESSION_LEN,
)

PER_PAGE = (10, 25, 50, 100)
DEFAULT_PER_PAGE = 25
MAX_PAGE = 1_000_000
ID_RE = re.compile(rf"[0-9A-Za-z_-]{{1,{MAX_ID_LEN}}}")


@dataclass(frozen=True)
class MemoryView:
    q: str = ""
    project: str = ""
    kind: str = ""
    tags: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None  # inclusive: memories of that day count
    period: str = ""  # a time expression: "last week", "past 3 days"
    session: str = ""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    errors: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_params(cls, params: QueryParams) -> MemoryView:
        errors: list[str] = []

        def text(name: str, limit: int) -> str:
            value = (params.get(name) or "").strip()
            if len(value) > limit:
                errors.append(f"{name} is longer than {limit} characters")
                return ""
            return value

        def day(name: str) -> date | None:
            value = text(name, 10)
            if not value:
                return None
            try:
                return date.fromisoformat(value)
            except ValueError:
                errors.append(f"{name} is not a date (YYYY-MM-DD): {value!r}")
                return None

        def integer(name: str, default: int, low: int, high: int) -> int:
            value = (params.get(name) or "").strip()
            if not value:
                return default
            if not value.isdigit() or not low <= int(value) <= high:
                errors.append(f"{name} must be a whole number in {low}..{high}")
                return default
            return int(value)

        tags = tuple(dict.fromkeys(t.strip() for t in text("tags", 4000).split(",") if t.strip()))
        if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LEN for t in tags):
            errors.append(f"at most {MAX_TAGS} tags of at most {MAX_TAG_LEN} characters")
            tags = ()
        per_page = integer("per_page", DEFAULT_PER_PAGE, 1, max(PER_PAGE))
        if per_page not in PER_PAGE:
            per_page = DEFAULT_PER_PAGE
        view = cls(q=text("q", MAX_QUERY_CHARS), project=text("project", MAX_PROJECT_LEN),
                   kind=text("kind", MAX_KIND_LEN), tags=tags, since=day("since"),
                   until=day("until"), period=text("period", MAX_TIME_EXPRESSION_LEN),
                   session=text("session", MAX_SESSION_ID_LEN),
                   page=integer("page", 1, 1, MAX_PAGE), per_page=per_page)
        if view.since and view.until and view.until < view.since:
            errors.append("until is before since")
        if view.period and (view.since or view.until):
            errors.append("give either dates (since, until) or a period, not both")
        return replace(view, errors=tuple(errors))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def filtered(self) -> bool:
        return bool(self.project or self.kind or self.tags or self.since or self.until
                    or self.period or self.session)

    def search_fields(self, tz: tzinfo) -> dict[str, Any]:
        """The ``Search`` fields of this view (dates are days in the configured time zone)."""
        fields: dict[str, Any] = {}
        if self.project:
            fields["projects"] = [self.project]
        if self.kind:
            fields["kinds"] = [self.kind]
        if self.tags:
            fields["tags_any"] = list(self.tags)
        if self.since:
            fields["since"] = datetime.combine(self.since, time(0), tz).isoformat()
        if self.until:
            fields["until"] = datetime.combine(self.until + timedelta(days=1), time(0),
                                               tz).isoformat()
        if self.period:
            fields["time_expression"] = self.period
        if self.session:
            fields["session_id"] = self.session
        return fields

    def params(self, **changes: Any) -> str:
        """This view's query string (defaults left out), with ``changes``."""
        view = replace(self, **changes)
        pairs = [("q", view.q), ("project", view.project), ("kind", view.kind),
                 ("tags", ",".join(view.tags)),
                 ("since", view.since.isoformat() if view.since else ""),
                 ("until", view.until.isoformat() if view.until else ""),
                 ("period", view.period), ("session", view.session),
                 ("page", str(view.page) if view.page != 1 else ""),
                 ("per_page", str(view.per_page) if view.per_page != DEFAULT_PER_PAGE else "")]
        return urlencode([(k, v) for k, v in pairs if v])


def pages(view: MemoryView, total: int) -> list[int | None]:
    """Page numbers to link: the first, the last, and two around the current (None: a gap)."""
    last = max(1, -(-total // view.per_page))
    shown = sorted({1, last, *range(max(1, view.page - 2), min(last, view.page + 2) + 1)})
    out: list[int | None] = []
    for n in shown:
        if out and n - (out[-1] or 0) > 1:
            out.append(None)
        out.append(n)
    return out


def safe_next(value: Any, default: str = "/memories") -> str:
    """A place to go back to after a form: a path of this dashboard, never another site."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 32 for c in value) or len(value) > 6000:
        return default
    return value


def with_notice(path: str, **notice: int | str) -> str:
    """``path`` with a notice for the page it leads to (``deleted=3``)."""
    sep = "&" if "?" in path else "?"
    return path + sep + urlencode(notice)
