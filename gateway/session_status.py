"""``status``: this window's session, its project (score, git state), every open session in the
store, and the stack's status under ``stack``.

It must answer fast (the bar: 100 ms on a 5,000-file repository) and while parts of the stack
are down or still starting (tests poll it until every worker is ready): the score is the last
one measured (no assessment is run), and the session and git parts are asked without retrying,
with a short deadline; what could not be read is a note, never the tool's error. Only the
stack's part is required, as before sessions existed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastmcp import Context
from fastmcp.exceptions import ToolError

from gateway import session_results as res
from gateway.project_dir import detect
from gateway.system_tools import stack_status
from shared import protocol as p
from shared.errors import ServiceError

if TYPE_CHECKING:
    from gateway.sessions import Sessions

PART_TIMEOUT_S = 2.0
OPEN_LISTED = 50


async def status(sessions: Sessions, ctx: Context, working_directory: str | None,
                 ) -> res.SessionStatus:
    gw, cur, notes = sessions.gw, sessions.current, []
    root: Path | None = None
    detected = ""
    if working_directory is not None or cur is None:
        try:
            where = await detect(sessions.cfg, ctx, working_directory)
            root, detected = where.root, where.detected_from
        except ToolError as exc:
            if working_directory is not None:
                raise
            notes.append(f"no project: {exc}")
    else:
        root, detected = cur.root, "session"
    mine = cur if cur is not None and (root is None or cur.root == root) else None

    async def part(service: str, body: p.RequestBody) -> Any:
        try:
            return await gw.client.request(service, body, timeout_s=PART_TIMEOUT_S,
                                           idempotent=True)
        except ServiceError as exc:
            notes.append(f"{type(body).__name__}: {service} {exc.code}: {exc.message}")
            return None

    jobs = [stack_status(gw), part(p.SERVICE_STORE, p.SessionQuery(open_only=True,
                                                                  limit=OPEN_LISTED))]
    if root is not None:
        jobs.append(part(p.SERVICE_QUALITY, p.GitStatus(path=str(root))))
        if mine is None:
            jobs.append(part(p.SERVICE_STORE, p.SessionQuery(root=str(root), limit=1)))
    stack, open_list, *rest = await asyncio.gather(*jobs)
    git = rest[0] if rest else None
    last = rest[1] if len(rest) > 1 and rest[1] is not None and rest[1].items else None
    opened = [res.session_view(s, sessions.pid) for s in open_list.items] if open_list else []
    view = next((s for s in opened if mine is not None and s.id == mine.id), None)
    if mine is not None and view is None:  # the store did not answer: what this window knows
        view = res.SessionView(
            id=mine.id, project=mine.project, root=str(mine.root), gateway_pid=sessions.pid,
            this_window=True, started_at=mine.started_at, ended_at=None, end_reason=None,
            start_score=mine.start_score, last_score=mine.last_score, end_score=None,
            start_head=mine.start_head, branch=mine.branch, checkpoint_count=mine.checkpoints,
            memories=0, handoff_path="", last_active_at=mine.started_at)
    if mine is not None:
        score, source = mine.last_score, ("the last checkpoint" if mine.checkpoints
                                          else "the session's start")
    elif last is not None:
        s = last.items[0]
        score = s.end_score if s.end_score is not None else s.last_score
        source = f"session {s.id} ({'ended' if s.ended_at else 'open'})"
    else:
        score, source = None, "never measured"
    return res.SessionStatus(
        session=view, project=root.name if root else None, root=str(root) if root else None,
        detected_from=detected, score=score, score_from=source, git=res.git_view(git),
        open_sessions=opened, notes=notes, stack=stack)
