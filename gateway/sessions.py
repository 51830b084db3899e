"""The session manager: what ``start``, ``checkpoint`` and ``end`` do (``status`` is in
``session_status``). Each gateway (one per Claude window) runs at most one session; every
session lives in the store, so other windows and a terminal see it, and a gateway that restarts
takes its open session back (it is *adopted* by the next checkpoint or end in that project).

The work itself is done elsewhere: the quality worker assesses the project, reads git and makes
the checkpoint commit; the store keeps sessions, checkpoints and memories; ``events`` handlers
write the handoff file (``session.ended``) and the quality reflections (``quality.threshold``,
or ``checkpoint.created`` when asked). A checkpoint asks for the ``git_commit`` permission
before it changes anything: on a 2026-07-28 connection the question is the call's result and
the client calls again, so nothing may be stored before that.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastmcp import Context
from fastmcp.exceptions import ToolError

from gateway import events as ev
from gateway import handoff, project_memory, reflections, session_commit
from gateway import session_results as res
from gateway import session_texts as texts
from gateway.consent import can_ask
from gateway.project_dir import detect
from shared import protocol as p
from shared.errors import BadRequest

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("sessiond.gateway.sessions")

ASSESS_BUDGET_S = 5.0  # an assessment inside a session tool
GIT_TIMEOUT_S = 10.0
MEMORIES_LISTED = 20  # a session's memories in the end's summary and the handoff


@dataclass
class Current:
    """This gateway's open session."""
    id: str
    project: str
    root: Path
    started_at: str
    start_head: str
    branch: str
    start_score: float | None
    last_score: float | None
    report: p.QualityReport | None  # the last assessment (None after an adoption)
    checkpoints: int


def gateway_alive(pid: int | None) -> bool:
    """Whether the gateway process ``pid`` still runs (a reused pid looks alive)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Sessions:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.cfg = gw.cfg
        self.pid = os.getpid()
        self.current: Current | None = None
        self._lock = asyncio.Lock()  # one session step at a time in this gateway
        self.events = ev.Events()
        self.events.on(ev.SESSION_ENDED, self.write_handoff)
        reflections.register(self.events, self)

    def resolve_id(self, session_id: str | None) -> str | None:
        """A session filter as given; "current" is this window's open session."""
        if session_id is None or session_id.strip() != "current":
            return session_id
        if self.current is None:
            raise ToolError('session_id="current" needs an open session in this window; call '
                            "start first, or give a session's id")
        return self.current.id

    # ------------------------------------------------------------- requests
    async def ask(self, service: str, body: p.RequestBody, timeout_s: float = 10.0,
                  idempotent: bool = True) -> Any:
        return await self.gw.call(service, body, timeout_s=timeout_s, idempotent=idempotent)

    async def remember(self, kind: str, content: str, project: str, session_id: str,
                       tags: list[str], metadata: dict[str, Any]) -> p.Stored:
        return await self.ask(p.SERVICE_STORE, p.Remember(
            kind=kind, content=content, project=project, tags=tags, session_id=session_id,
            metadata=metadata))

    async def assess(self, root: Path, perms: dict, notes: list[str], *,
                     strict: bool) -> p.QualityReport | None:
        """The project's assessment; if it cannot be made, None and a note (``strict``: a bad
        directory is the tool's error)."""
        try:
            return await self.ask(p.SERVICE_QUALITY, p.AssessQuality(
                path=str(root), permissions=perms, budget_s=ASSESS_BUDGET_S),
                timeout_s=ASSESS_BUDGET_S + 5.0)
        except ToolError as exc:
            if strict and isinstance(exc.__cause__, BadRequest):
                raise ToolError(f"cannot assess {root}: {exc.__cause__.message}") from None
            notes.append(f"quality not measured: {exc}")
            return None

    async def permission_summary(self, ctx: Context | None) -> dict[str, Any]:
        """The git_commit permission as the quality score's permissions signal reads it."""
        if not self.cfg.checkpoint_commit:
            return {"git_commit": "disabled"}
        try:
            state = await self.gw.permissions.status("git_commit", limit=0)
        except ToolError as exc:
            log.warning("permission state unknown: %s", exc)
            return {}
        if state.grants:
            return {"git_commit": "granted", "expires_at": state.grants[0].expires_at}
        return {"git_commit": "ask" if can_ask(ctx) else "refused"}

    async def list_sessions(self, **query: Any) -> p.SessionList:
        return await self.ask(p.SERVICE_STORE, p.SessionQuery(**query))

    # ---------------------------------------------------------------- start
    async def start(self, ctx: Context, working_directory: str | None) -> res.StartResult:
        where = await detect(self.cfg, ctx, working_directory)
        async with self._lock:
            notes: list[str] = []
            previous_ended = ""
            cur = self.current
            if cur is not None and cur.root != where.root:
                ended = await self._end(ctx, cur, "replaced")
                previous_ended = ended.session_id
                notes.append(f"this window's session of {cur.project} ({cur.root}) was ended "
                             f"first; its handoff: {ended.handoff_path or 'not written'}")
            resumed = self.current is not None
            latest = await asyncio.to_thread(handoff.latest, self.cfg, str(where.root),
                                             where.name)
            perms = await self.permission_summary(ctx)
            report, (listed, memory) = await _both(
                self.assess(where.root, perms, notes, strict=True),
                project_memory.known(self, where))
            await project_memory.relevant(self, where, latest, report, memory)
            open_here = [s for s in listed.items
                         if s.ended_at is None and s.gateway_pid != self.pid]
            gone = [s.id for s in open_here if not gateway_alive(s.gateway_pid)]
            git = report.git if report is not None else None
            if resumed:
                cur = self.current
                message = f"continuing this window's session of {cur.project}"
            else:
                opened = await self.ask(p.SERVICE_STORE, p.OpenSession(
                    project=where.name, root=str(where.root), gateway_pid=self.pid,
                    start_head=(git.head or "") if git else "",
                    branch=(git.branch or "") if git else "",
                    score=report.score if report else None, detected_from=where.detected_from,
                    abandon=gone), idempotent=False)
                rec = opened.items[0]
                score = report.score if report else None
                cur = self.current = Current(
                    id=rec.id, project=where.name, root=where.root, started_at=rec.started_at,
                    start_head=rec.start_head, branch=rec.branch, start_score=score,
                    last_score=score, report=report, checkpoints=0)
                started = await self.events.emit(ev.SESSION_STARTED, session=cur, report=report)
                notes += started.errors
                message = f"session started on {where.name}"
            others = [res.session_view(s, self.pid) for s in open_here if s.id not in gone]
            if others:
                notes.append(f"{len(others)} other window(s) have a session open on this "
                             "project")
            return res.StartResult(
                session_id=cur.id, project=cur.project, root=str(cur.root),
                detected_from=where.detected_from, resumed=resumed, started_at=cur.started_at,
                quality=res.quality(report) if report else None, git=res.git_view(git),
                handoff=latest, memory=memory, other_windows=others, abandoned=gone,
                previous_ended=previous_ended, notes=notes,
                message=message + (f"; quality {report.score:.1f}/100" if report else ""))

    # ------------------------------------------------------------ the session
    async def session_for(self, ctx: Context, working_directory: str | None) -> Current:
        """The open session a checkpoint or end is about: this window's, or an open one of that
        project whose window is gone (adopted), else ``ToolError``."""
        cur = self.current
        if working_directory is None and cur is not None:
            return cur
        try:
            where = await detect(self.cfg, ctx, working_directory)
        except ToolError:
            if working_directory is not None:
                raise
            raise ToolError("no session is open in this window; call start first") from None
        if cur is not None and cur.root == where.root:
            return cur
        found = await self.list_sessions(root=str(where.root), open_only=True)
        for s in found.items:
            if s.gateway_pid == self.pid or not gateway_alive(s.gateway_pid):
                log.info("adopting session %s of %s (its gateway %s is gone)", s.id,
                         s.root, s.gateway_pid)
                if cur is not None:
                    raise ToolError(f"this window's session is on {cur.root}; end it before "
                                    f"taking over the open session of {where.root}")
                self.current = Current(
                    id=s.id, project=s.project, root=where.root, started_at=s.started_at,
                    start_head=s.start_head, branch=s.branch, start_score=s.start_score,
                    last_score=s.last_score, report=None, checkpoints=s.checkpoint_count)
                return self.current
        where_now = f" (this window's session is on {cur.root})" if cur else ""
        raise ToolError(f"no session is open for {where.root} in this window{where_now}; "
                        "call start first")

    # ----------------------------------------------------------- checkpoint
    async def checkpoint(self, ctx: Context, working_directory: str | None, message: str,
                         reflect: bool) -> res.CheckpointResult:
        async with self._lock:
            cur = await self.session_for(ctx, working_directory)
            notes: list[str] = []
            perms = await self.permission_summary(ctx)
            result, view = await session_commit.commit(self, ctx, cur, message, perms, notes)
            report = result.report if result is not None else None
            if report is None:
                report = await self.assess(cur.root, perms, notes, strict=False)
            score = report.score if report else None
            previous, before = cur.last_score, cur.report
            delta = None if score is None or previous is None else round(score - previous, 1)
            number = cur.checkpoints + 1
            content = texts.checkpoint_memory(cur.project, cur.id, number, score, delta,
                                              texts.commit_words(view), message, report)
            state = "committed" if view.committed else view.skipped or "none"
            stored = await self.remember("checkpoint", content, cur.project, cur.id,
                                         ["checkpoint", "session"], {
                                             "score": score, "delta": delta, "number": number,
                                             "commit": state, "sha": view.sha})
            await self.ask(p.SERVICE_STORE, p.RecordCheckpoint(
                session_id=cur.id, score=score, delta=delta, commit=state, sha=view.sha,
                memory_id=stored.id, note=message, gateway_pid=self.pid), idempotent=False)
            cur.checkpoints, cur.report = number, report or cur.report
            cur.last_score = score if score is not None else previous
            crossed = delta is not None and abs(delta) >= self.cfg.quality_threshold
            data = {"session": cur, "number": number, "score": score, "previous": previous,
                    "delta": delta, "report": report, "before": before, "note": message,
                    "reflect": reflect, "crossed": crossed}
            made: dict[str, Any] = {}
            for name in ((ev.QUALITY_THRESHOLD,) if crossed else ()) + (ev.CHECKPOINT_CREATED,):
                event = await self.events.emit(name, **data)
                made.update(event.results)
                notes += event.errors
            return res.CheckpointResult(
                session_id=cur.id, project=cur.project, number=number, score=score,
                previous_score=previous, delta=delta,
                quality=res.quality(report) if report else None, commit=view,
                memory_id=stored.id, reflection_id=made.get("reflection_id"),
                reflection=made.get("reflection", ""), notes=notes,
                message=texts.checkpoint_message(number, score, delta, view))

    # ------------------------------------------------------------------ end
    async def end(self, ctx: Context, working_directory: str | None) -> res.EndResult:
        async with self._lock:
            return await self._end(ctx, await self.session_for(ctx, working_directory), "ended")

    async def _end(self, ctx: Context, cur: Current, reason: p.EndReason) -> res.EndResult:
        notes: list[str] = []
        perms = await self.permission_summary(ctx)
        since = (self.ask(p.SERVICE_QUALITY, p.GitStatus(path=str(cur.root),
                                                         since=cur.start_head),
                          timeout_s=GIT_TIMEOUT_S) if cur.start_head else _none())
        report, git, (found, _), listed = await asyncio.gather(
            self.assess(cur.root, perms, notes, strict=False), _soft(since, notes),
            self.gw.search("", session_id=cur.id, order="newest", limit=MEMORIES_LISTED),
            self.list_sessions(session_id=cur.id, checkpoints=True))
        record = listed.items[0] if listed.items else None
        ended = datetime.now(UTC)
        score = report.score if report else None
        started = datetime.fromisoformat(cur.started_at)
        if git is not None:
            notes += git.notes
        summary = handoff.SessionSummary(
            session_id=cur.id, project=cur.project, root=str(cur.root), branch=cur.branch,
            started_at=cur.started_at, ended_at=ended.isoformat(),
            duration_s=round((ended - started).total_seconds(), 1),
            start_score=cur.start_score, end_score=score,
            trend=texts.trend(cur.started_at, cur.start_score,
                              record.checkpoints if record else [], ended.isoformat(), score),
            memories_total=found.total_candidates,
            memories=[handoff.MemoryLine(h.memory.id, h.memory.kind, h.memory.created_at,
                                         h.memory.content.strip().split("\n", 1)[0])
                      for h in found.hits],
            files_changed=git.since_files if git else [],
            files_changed_total=git.since_files_total if git else 0,
            commits_since_start=git.since_commits if git else None,
            start_head=cur.start_head, end_head=(git.head or "") if git else "",
            recommendations=list(report.recommendations) if report else [], notes=list(notes))
        event = await self.events.emit(ev.SESSION_ENDED, session=cur, summary=summary,
                                       ended=ended, report=report)
        notes += event.errors
        path = event.results.get("handoff_path", "")
        await self.ask(p.SERVICE_STORE, p.CloseSession(
            session_id=cur.id, reason=reason, score=score, handoff_path=path,
            summary={"text": summary.paragraph(), "files_changed": summary.files_changed_total,
                     "commits": summary.commits_since_start,
                     "memories": summary.memories_total}, gateway_pid=self.pid),
            idempotent=False)
        if self.current is cur:
            self.current = None
        return res.EndResult(
            session_id=cur.id, project=cur.project, root=str(cur.root),
            started_at=cur.started_at, ended_at=summary.ended_at,
            duration_s=summary.duration_s, start_score=cur.start_score, score=score,
            delta=summary.delta, trend=summary.trend, memories_stored=summary.memories_total,
            memories=[res.memory_brief(h) for h in found.hits],
            files_changed=summary.files_changed, files_changed_total=summary.files_changed_total,
            commits_since_start=summary.commits_since_start,
            recommendations=summary.recommendations, summary=summary.paragraph(),
            handoff_path=path, notes=notes,
            message=f"session ended after {handoff.duration(summary.duration_s)}"
                    + (f"; handoff written to {path}" if path else "; no handoff written"))

    async def write_handoff(self, event: ev.Event) -> None:
        """``session.ended``: the handoff file, under the data dir."""
        path = await asyncio.to_thread(handoff.write, self.cfg, event.data["summary"],
                                       event.data["ended"])
        event.results["handoff_path"] = str(path)


async def _none() -> None:
    return None


async def _soft(job, notes: list[str]) -> Any:
    """``await job``, or None with a note when the service could not answer."""
    try:
        return await job
    except ToolError as exc:
        notes.append(str(exc))
        return None


async def _both(first, second) -> tuple[Any, Any]:
    """Both results; if either fails, the other is cancelled and the failure raised."""
    one, two = asyncio.ensure_future(first), asyncio.ensure_future(second)
    try:
        return await one, await two
    finally:
        for task in (one, two):
            if not task.done():
                task.cancel()
