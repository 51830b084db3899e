"""The session pages: the timeline of sessions per project, and one session with its quality
scores over its checkpoints and its handoff file rendered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from gateway.handoff import MAX_READ_BYTES
from shared import protocol as p
from shared.limits import MAX_PROJECT_LEN, MAX_SESSION_ID_LEN
from shared.protocol_sessions import MAX_SESSIONS_LISTED
from webui import charts
from webui.render import parse_time


def _span(s: p.SessionRecord, now: datetime, tz) -> charts.Span:
    start = parse_time(s.started_at) or now
    end = parse_time(s.ended_at) or (now if s.ended_at is None else start)
    state = "open" if s.ended_at is None else (s.end_reason or "ended")
    scores = " → ".join(f"{v:.0f}" for v in (s.start_score, s.last_score, s.end_score)
                        if v is not None)
    label = (f"{s.project} · {start.astimezone(tz):%Y-%m-%d %H:%M} · {state} · "
             f"{s.checkpoint_count} checkpoints" + (f" · quality {scores}" if scores else ""))
    return charts.Span(lane=s.project, start=start.astimezone(tz), end=end.astimezone(tz),
                       label=label, cls=state, href=f"/sessions/{s.id}")


async def listing(request: Request) -> Response:
    ui = request.app.state.ui
    project = (request.query_params.get("project") or "").strip()[:MAX_PROJECT_LEN]
    found = await ui.store(p.SessionQuery(project=project or None, limit=MAX_SESSIONS_LISTED))
    now = datetime.now(UTC)
    spans = [_span(s, now, ui.tz) for s in found.items]
    lanes = list(dict.fromkeys(s.lane for s in spans))
    timeline = None
    if spans:
        t0 = min(s.start for s in spans)
        t1 = max(max(s.end for s in spans), t0 + timedelta(minutes=10))
        pad = (t1 - t0) * 0.02
        timeline = charts.timeline(lanes, spans, t0=t0 - pad, t1=t1 + pad,
                                   title="Sessions per project over time")
    return ui.render(request, "sessions.html", title="Sessions", active="sessions",
                     sessions=found.items, project=project, timeline=timeline,
                     durations={r.id: (sp.end - sp.start).total_seconds()
                                for r, sp in zip(found.items, spans, strict=True)},
                     memory_counts=found.memory_counts, now=now)


async def detail(request: Request) -> Response:
    ui = request.app.state.ui
    sid = request.path_params["session_id"]
    if not 0 < len(sid) <= MAX_SESSION_ID_LEN:
        return ui.render(request, "error.html", status=404, title="No such session",
                         message="A session id is 1-200 characters.", active="sessions")
    found = await ui.store(p.SessionQuery(session_id=sid, checkpoints=True, limit=1))
    if not found.items:
        return ui.render(request, "error.html", status=404, title="No such session",
                         message=f"There is no session {sid}.", active="sessions")
    s = found.items[0]
    labels, values, notes = ["start"], [s.start_score], [f"start {s.started_at[:19]}"]
    for i, c in enumerate(s.checkpoints, 1):
        labels.append(f"#{i}")
        values.append(c.score)
        delta = f" ({c.delta:+.1f})" if c.delta is not None else ""
        notes.append(f"checkpoint {i}{delta} {c.note}".strip())
    if s.ended_at is not None:
        labels.append("end")
        values.append(s.end_score)
        notes.append(f"end {s.ended_at[:19]}")
    chart = charts.lines(labels, [charts.Series("quality", values, notes)], y_max=100,
                         points=True, title="Quality score (0-100) at the start, each "
                                            "checkpoint and the end")
    handoff, why = read_handoff(ui.cfg.home, s.handoff_path)
    return ui.render(request, "session.html", title=f"Session {sid}", active="sessions",
                     s=s, chart=chart, handoff=handoff, handoff_note=why)


def read_handoff(home: str, path: str) -> tuple[str | None, str]:
    """The handoff file's text, if it lies under ``<data dir>/handoffs`` (where sessions write
    them; the path comes from the store, and nothing else is read), else None and why."""
    if not path:
        return None, "no handoff file (the session is open, or ended without one)"
    root = (Path(home) / "handoffs").resolve()
    try:
        target = Path(path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        return None, f"cannot read {path}: {exc}"
    if not target.is_relative_to(root) or not target.is_file():
        return None, f"{path} is not a handoff file under {root}"
    with target.open("rb") as f:
        data = f.read(MAX_READ_BYTES + 1)
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    return text, (f"shown up to {MAX_READ_BYTES // 1024} KB" if len(data) > MAX_READ_BYTES
                  else "")
