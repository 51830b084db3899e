"""What memory knows about a project when a session starts: its sessions (the last one and its
memories, those open in other windows), its memories by kind, the newest ones, and the ones
closest in meaning to where the work stands."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway import handoff
from gateway import session_results as res
from gateway.project_dir import ProjectDir
from shared import protocol as p

if TYPE_CHECKING:
    from gateway.sessions import Sessions

RECENT, RELEVANT, LAST_SESSION = 5, 5, 10
SESSIONS_READ = 20
MIN_RELEVANCE = 0.05
MAX_QUERY_CHARS = 1000


async def known(sessions: Sessions, where: ProjectDir,
                ) -> tuple[p.SessionList, res.ProjectMemory]:
    """The project's sessions (newest first) and what its memory holds, but the relevant ones
    (``relevant`` fills them in once the assessment has said where the work stands)."""
    gw = sessions.gw
    listed = await sessions.list_sessions(root=str(where.root), project=where.name,
                                          limit=SESSIONS_READ)
    last = next((s for s in listed.items if s.ended_at is not None), None)
    recent_q = gw.search("", projects=[where.name], order="newest", limit=RECENT)
    if last is not None:
        (recent, _), (in_last, _) = await asyncio.gather(recent_q, gw.search(
            "", session_id=last.id, order="newest", limit=LAST_SESSION))
    else:
        (recent, _), in_last = await recent_q, None
    return listed, res.ProjectMemory(
        memories=sum(listed.memory_counts.values()), by_kind=listed.memory_counts,
        last_session=res.session_view(last, sessions.pid) if last else None,
        last_session_memories=[res.memory_brief(h) for h in in_last.hits] if in_last else [],
        recent=[res.memory_brief(h) for h in recent.hits], relevant=[], relevant_query="")


async def relevant(sessions: Sessions, where: ProjectDir, latest: handoff.Handoff | None,
                   report: p.QualityReport | None, memory: res.ProjectMemory) -> None:
    """Fill in the project's memories closest in meaning to the last handoff's summary (else
    to the project's name, branch and last commit's subject), leaving out those shown
    already."""
    if latest is not None and latest.summary:
        query = latest.summary
    else:
        git = report.git if report else None
        query = " ".join(x for x in (where.name, git and git.branch,
                                     git and git.last_commit_subject) if x)
    query = query[:MAX_QUERY_CHARS]
    hits, _ = await sessions.gw.search(query, projects=[where.name], limit=RELEVANT * 3,
                                       min_score=MIN_RELEVANCE)
    shown = {m.id for m in memory.recent + memory.last_session_memories}
    memory.relevant_query = query
    memory.relevant = [res.memory_brief(h, scored=True) for h in hits.hits
                       if h.memory.id not in shown][:RELEVANT]
