"""Charts drawn on the server as inline SVG.

Why server-side SVG rather than a charting library shipped to the browser: the pages must be
readable without JavaScript, and an SVG chart is part of the HTML (it shows with scripts off,
in a screenshot, in a saved page); nothing is vendored that would need updating or auditing;
the Content-Security-Policy can forbid inline script and style everywhere; and every label
passes through one escaping function here. The data is small (at most a few hundred points), so
a chart costs well under a millisecond to draw. Colours and fonts come from classes styled in
``static/app.css``; nothing here sets a ``style`` attribute (the CSP forbids it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

PALETTE = 8  # colour classes c0..c7 in app.css


def _e(value: object) -> str:
    return str(escape(str(value)))


def _f(x: float) -> str:
    return f"{x:.1f}"


def _svg(width: int, height: int, title: str, body: list[str], cls: str = "chart") -> Markup:
    return Markup(
        f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{_e(title)}</title>{''.join(body)}</svg>")


def nice_max(value: float, ticks: int = 4) -> float:
    """A round axis maximum at or above ``value`` whose ``ticks`` steps are round too (1, 2,
    2.5 or 5 times a power of ten, at least 1: the charts count things)."""
    if value <= 0:
        return float(ticks)
    raw = value / ticks
    power = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if raw <= step * power:
            return max(1.0, step * power) * ticks
    return 10 * power * ticks


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:.2g}"


def _y_axis(left: int, top: int, width: int, height: int, top_value: float,
            right: bool = False) -> list[str]:
    out = []
    for i in range(5):
        v = top_value * i / 4
        y = top + height - height * i / 4
        if not right:
            out.append(f'<line class="grid" x1="{left}" x2="{left + width}" y1="{_f(y)}" '
                       f'y2="{_f(y)}"/>')
        x, anchor = (left + width + 4, "start") if right else (left - 4, "end")
        out.append(f'<text class="tick" x="{x}" y="{_f(y + 3)}" text-anchor="{anchor}">'
                   f"{_e(_fmt(v))}</text>")
    return out


def _x_labels(labels: Sequence[str], xs: Sequence[float], y: float, most: int = 8) -> list[str]:
    step = max(1, math.ceil(len(labels) / most))
    return [f'<text class="tick" x="{_f(x)}" y="{_f(y)}" text-anchor="middle">{_e(lab)}</text>'
            for i, (lab, x) in enumerate(zip(labels, xs, strict=True)) if i % step == 0
            or i == len(labels) - 1 and (len(labels) - 1) % step >= step / 2]


def bars(labels: Sequence[str], values: Sequence[float], *, title: str,
         running: Sequence[float] | None = None, width: int = 960, height: int = 220,
         unit: str = "memories") -> Markup:
    """Vertical bars (one per label), with an optional running total as a line on its own axis
    at the right."""
    left, right, top, bottom = 44, 52 if running is not None else 12, 12, 26
    w, h = width - left - right, height - top - bottom
    n = max(1, len(values))
    top_value = nice_max(max(values, default=0))
    slot = w / n
    body = _y_axis(left, top, w, h, top_value)
    xs = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        bh = h * v / top_value
        x = left + i * slot
        xs.append(x + slot / 2)
        body.append(f'<rect class="bar c0" x="{_f(x + slot * 0.12)}" y="{_f(top + h - bh)}" '
                    f'width="{_f(max(1.0, slot * 0.76))}" height="{_f(bh)}">'
                    f"<title>{_e(label)}: {_e(_fmt(v))} {_e(unit)}</title></rect>")
    if running is not None and len(running):
        run_max = nice_max(max(running))
        pts = " ".join(f"{_f(x)},{_f(top + h - h * r / run_max)}"
                       for x, r in zip(xs, running, strict=True))
        body.append(f'<polyline class="line c1" points="{pts}"/>')
        body += _y_axis(left, top, w, h, run_max, right=True)
    body += _x_labels(labels, xs, height - 8)
    return _svg(width, height, title, body)


@dataclass
class Series:
    name: str
    values: Sequence[float | None]  # None: no point there
    notes: Sequence[str] | None = None  # a tooltip per point


def lines(labels: Sequence[str], series: Sequence[Series], *, title: str,
          y_max: float | None = None, width: int = 960, height: int = 240,
          points: bool = False) -> Markup:
    """One line per series over shared x labels, a legend under the chart."""
    legend_rows = math.ceil(len(series) / 4) if len(series) > 1 else 0
    left, right, top, bottom = 44, 14, 12, 26 + 18 * legend_rows
    w, h = width - left - right, height - top - bottom
    n = len(labels)
    xs = [left + (w * i / (n - 1) if n > 1 else w / 2) for i in range(n)]
    known = [v for s in series for v in s.values if v is not None]
    top_value = y_max if y_max is not None else nice_max(max(known, default=0))
    body = _y_axis(left, top, w, h, top_value)
    for k, s in enumerate(series):
        c = f"c{k % PALETTE}"
        run: list[str] = []
        segments: list[list[str]] = [run]
        for x, v in zip(xs, s.values, strict=True):
            if v is None:
                run = []
                segments.append(run)
                continue
            run.append(f"{_f(x)},{_f(top + h - h * min(v, top_value) / top_value)}")
        for seg in segments:
            if len(seg) > 1:
                body.append(f'<polyline class="line {c}" points="{" ".join(seg)}"/>')
        if points or n == 1:
            for i, (x, v) in enumerate(zip(xs, s.values, strict=True)):
                if v is None:
                    continue
                note = s.notes[i] if s.notes else f"{labels[i]}: {_fmt(v)}"
                body.append(f'<circle class="dot {c}" cx="{_f(x)}" '
                            f'cy="{_f(top + h - h * min(v, top_value) / top_value)}" r="4">'
                            f"<title>{_e(s.name)} · {_e(note)}</title></circle>")
    body += _x_labels(labels, xs, top + h + 18)
    if legend_rows:
        for k, s in enumerate(series):
            x = left + (k % 4) * (w / 4)
            y = top + h + 34 + 18 * (k // 4)
            body.append(f'<rect class="swatch c{k % PALETTE}" x="{_f(x)}" y="{_f(y - 9)}" '
                        f'width="10" height="10"/><text class="legend" x="{_f(x + 14)}" '
                        f'y="{_f(y)}">{_e(_clip(s.name, 24))}</text>')
    return _svg(width, height, title, body)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def hbars(items: Sequence[tuple[str, float, str]], *, title: str, width: int = 420,
          unit: str = "memories") -> Markup:
    """Horizontal bars, one per (label, value, link) — the link may be empty."""
    row, label_w = 22, 150
    height = max(row, row * len(items)) + 8
    top_value = max((v for _, v, _ in items), default=1) or 1
    body = []
    for i, (label, v, href) in enumerate(items):
        y = 4 + i * row
        bw = (width - label_w - 60) * v / top_value
        bar = (f'<text class="legend" x="{label_w - 6}" y="{y + 14}" text-anchor="end">'
               f"{_e(_clip(label, 22))}</text>"
               f'<rect class="bar c0" x="{label_w}" y="{y + 3}" width="{_f(max(1.0, bw))}" '
               f'height="{row - 8}"><title>{_e(label)}: {_e(_fmt(v))} {_e(unit)}</title></rect>'
               f'<text class="tick" x="{_f(label_w + bw + 6)}" y="{y + 14}">{_e(_fmt(v))}</text>')
        body.append(f'<a href="{_e(href)}">{bar}</a>' if href else bar)
    return _svg(width, height, title, body)


def graph(nodes: Sequence[tuple[str, int, str]], edges: Sequence[tuple[str, str, str]], *,
          title: str, width: int = 560, height: int = 380, focus: str | None = None) -> Markup:
    """Projects on a circle (the ``focus`` one in the middle), arrows for their links; each
    node is (name, memories, link)."""
    if not nodes:
        return _svg(width, 60, title, [('<text class="legend" x="10" y="34">No linked '
                                       "projects yet (add_project_dependency).</text>")])
    cx, cy = width / 2, height / 2
    radius = min(width, height) / 2 - 60
    ring = [n for n in nodes if n[0] != focus]
    pos: dict[str, tuple[float, float]] = {}
    if focus is not None and len(ring) < len(nodes):
        pos[focus] = (cx, cy)
    for i, (name, _, _) in enumerate(ring):
        a = 2 * math.pi * i / max(1, len(ring)) - math.pi / 2
        pos[name] = (cx + radius * math.cos(a), cy + radius * math.sin(a))
    biggest = max((count for _, count, _ in nodes), default=1) or 1
    size = {name: 7 + 13 * math.sqrt(count / biggest) for name, count, _ in nodes}
    body = [('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path class="arrowhead" '
            'd="M 0 0 L 10 5 L 0 10 z"/></marker></defs>')]
    for src, dst, kind in edges:
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        d = math.hypot(x2 - x1, y2 - y1) or 1
        ux, uy = (x2 - x1) / d, (y2 - y1) / d
        sx, sy = x1 + ux * size[src], y1 + uy * size[src]
        ex, ey = x2 - ux * (size[dst] + 3), y2 - uy * (size[dst] + 3)
        body.append(f'<line class="edge" x1="{_f(sx)}" y1="{_f(sy)}" x2="{_f(ex)}" '
                    f'y2="{_f(ey)}" marker-end="url(#arrow)"><title>{_e(src)} {_e(kind)} '
                    f"{_e(dst)}</title></line>"
                    f'<text class="edge-label" x="{_f((sx + ex) / 2)}" y="{_f((sy + ey) / 2 - 4)}" '
                    f'text-anchor="middle">{_e(kind)}</text>')
    for k, (name, count, href) in enumerate(nodes):
        x, y = pos[name]
        node = (f'<circle class="node c{k % PALETTE}" cx="{_f(x)}" cy="{_f(y)}" '
                f'r="{_f(size[name])}"><title>{_e(name)}: {count:,} memories</title></circle>'
                f'<text class="node-label" x="{_f(x)}" y="{_f(y + size[name] + 13)}" '
                f'text-anchor="middle">{_e(_clip(name, 26))}</text>')
        body.append(f'<a href="{_e(href)}">{node}</a>' if href else node)
    return _svg(width, height, title, body)


@dataclass
class Span:
    lane: str
    start: datetime
    end: datetime
    label: str
    cls: str  # open | ended | abandoned | replaced
    href: str = ""


def timeline(lanes: Sequence[str], spans: Sequence[Span], *, title: str, t0: datetime,
             t1: datetime, width: int = 900) -> Markup:
    """One row per lane (project), a bar per span (session) on a shared time axis."""
    label_w, row, top = 150, 26, 8
    height = top + row * max(1, len(lanes)) + 28
    w = width - label_w - 16
    total = max(1.0, (t1 - t0).total_seconds())

    def x(t: datetime) -> float:
        return label_w + w * min(1.0, max(0.0, (t - t0).total_seconds() / total))

    body = []
    for i, lane in enumerate(lanes):
        y = top + i * row
        body.append(f'<line class="grid" x1="{label_w}" x2="{label_w + w}" y1="{y + row - 2}" '
                    f'y2="{y + row - 2}"/><text class="legend" x="{label_w - 8}" y="{y + 16}" '
                    f'text-anchor="end">{_e(_clip(lane, 22))}</text>')
    index = {lane: i for i, lane in enumerate(lanes)}
    for s in spans:
        y = top + index[s.lane] * row + 4
        x0, x1 = x(s.start), x(s.end)
        bar = (f'<rect class="span {_e(s.cls)}" x="{_f(x0)}" y="{y}" '
               f'width="{_f(max(3.0, x1 - x0))}" height="{row - 10}"><title>{_e(s.label)}</title>'
               "</rect>")
        body.append(f'<a href="{_e(s.href)}">{bar}</a>' if s.href else bar)
    ticks = 6
    for i in range(ticks + 1):
        t = t0 + (t1 - t0) * i / ticks
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        body.append(f'<text class="tick" x="{_f(label_w + w * i / ticks)}" '
                    f'y="{height - 8}" text-anchor="{anchor}">'
                    f'{_e(t.strftime("%m-%d %H:%M"))}</text>')
    return _svg(width, height, title, body)
