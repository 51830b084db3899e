"""``sessiond status`` in a terminal: the status tool's result as a few readable lines (``--json``
prints it whole)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _age(iso: str | None) -> str:
    if not iso:
        return "?"
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _score(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def _git(g: dict[str, Any]) -> str:
    where = f"{g['branch'] or 'detached'} @ {(g['head'] or 'no commits')[:12]}"
    if g["operation"]:
        where += f" ({g['operation']} in progress)"
    counts = ", ".join(f"{g[k]} {k}" for k in ("staged", "unstaged", "untracked", "conflicted")
                       if g[k]) or "clean"
    line = f"{where}; {counts}"
    if g["upstream"]:
        line += f"; {g['ahead']} ahead, {g['behind']} behind {g['upstream']}"
    if g["last_commit_subject"]:
        line += f"; last commit {g['last_commit_age_days']} days ago: {g['last_commit_subject']}"
    return line


def _session(s: dict[str, Any]) -> str:
    window = "this window" if s["this_window"] else f"gateway {s['gateway_pid']}"
    return (f"{s['id'][:12]}  {s['project']}  {s['root']}  started {_age(s['started_at'])} "
            f"ago  quality {_score(s['start_score'])} -> {_score(s['last_score'])}  "
            f"{s['checkpoint_count']} checkpoint(s)  {s['memories']} memories  ({window})")


def render(st: dict[str, Any]) -> str:
    stack = st["stack"]
    head = (f"sessiond {stack['version']}: stack pid {stack['stack_pid']}, up "
            f"{stack['uptime_s'] / 60:.1f} min, {stack['transport']}, data dir "
            f"{stack['data_dir']}")
    lines = [head]
    if st["project"]:
        lines.append(f"project: {st['project']} ({st['root']}, from {st['detected_from']})")
        lines.append(f"  quality: {_score(st['score'])}/100 ({st['score_from']})")
        if st["git"]:
            lines.append(f"  git: {_git(st['git'])}")
    lines.append("this window's session: " + (_session(st["session"]) if st["session"]
                                              else "none"))
    lines.append(f"open sessions ({len(st['open_sessions'])}):")
    lines += [f"  {_session(s)}" for s in st["open_sessions"]] or ["  none"]
    lines.append("workers:")
    for w in stack["workers"]:
        beat = w["last_heartbeat_age_s"]
        lines.append(f"  {w['name']:<10} {w['state']:<10} pid {w['pid']}  restarts "
                     f"{w['restarts']}  heartbeat {'?' if beat is None else f'{beat:.1f} s'}  "
                     f"in hand {w['inflight']}")
    lines.append(f"requests: {stack['requests_total']} total, {stack['requests_failed']} "
                 f"failed, {stack['requests_timed_out']} timed out, {stack['queued']} queued; "
                 f"{stack['gateways']} gateway(s)")
    if stack.get("auth_refused"):
        lines.append(f"refused by CURVE/ZAP: {stack['auth_refused']} peer(s) (see the hub's log)")
    lines += [f"note: {n}" for n in st["notes"]]
    return "\n".join(lines)
