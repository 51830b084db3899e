"""Templates and the small formatting helpers the pages share.

Jinja2 with autoescape on for every template: whatever a memory, a tag, a project name or a
handoff holds is shown as text. The only markup that goes out unescaped is what this package
builds itself: the charts (``charts``, which escape every label) and markdown rendered with raw
HTML turned off (``markdown``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown(text: str) -> Markup:
    """``text`` as HTML: raw HTML in it is shown as text, and links other than http(s),
    mailto and relative ones are dropped by markdown-it's link check."""
    return Markup(_MARKDOWN.render(text))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def age(value: str | None, now: datetime | None = None) -> str:
    """How long ago: "40 s", "12 min", "5 h", "3 d", "7 wk", "4 mo", "2.1 y"."""
    t = parse_time(value)
    if t is None:
        return "?"
    s = ((now or datetime.now(UTC)) - t).total_seconds()
    if s < 0:
        return "in the future"
    for limit, unit, size in ((90, "s", 1), (5400, "min", 60), (129_600, "h", 3600),
                              (1_209_600, "d", 86_400), (5_256_000, "wk", 604_800),
                              (31_536_000, "mo", 2_628_000)):
        if s < limit:
            return f"{s / size:.0f} {unit}"
    return f"{s / 31_536_000:.1f} y"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def size(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def first_line(text: str | None, limit: int = 140) -> str:
    line = (text or "").strip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def project_href(name: str) -> str:
    return "/projects/" + quote(name, safe="")


def memories_href(**params: str) -> str:
    return "/memories?" + urlencode(params)


def make_env(tz: tzinfo) -> Environment:
    env = Environment(loader=PackageLoader("webui", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def local(value: str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        t = parse_time(value)
        return t.astimezone(tz).strftime(fmt) if t else "–"

    env.filters.update(age=age, local=local, duration=duration, size=size, num=number,
                       first_line=first_line, pretty_json=pretty_json, markdown=markdown)
    env.globals.update(project_href=project_href, memories_href=memories_href)
    return env
