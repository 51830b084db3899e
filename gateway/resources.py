"""MCP resources: what a client can read (Claude Code offers them with ``@``):

- ``sessiond://handoff/<project dir key>``: each project's latest handoff (markdown), one
  resource per project that has one (the key is the handoff directory's name,
  ``<project>-<12 hex of its directory's sha256>``);
- ``sessiond://quality/current``: this window's project's quality report (the session's last
  assessment, else one made when read);
- ``memory://{id}``: a memory with its whole content (a template).

When the list changes (a handoff written by this window's ``end`` or by another window, a new
score from ``start`` or ``checkpoint``), the client gets ``notifications/resources/list_changed``:
on the request that made the change when there is one, else (another window's handoff, found
by a poll of the handoff directory every ``POLL_S``) on the connection of the client that last
listed resources (handshake-era connections; a 2026-07-28 one has no channel for it).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Sequence

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.resources import Resource
from fastmcp.server.dependencies import get_context
from fastmcp.server.providers import Provider
from mcp_types import ResourceListChangedNotification

from gateway import events as ev
from gateway import handoff
from gateway import session_results as res
from gateway.project_dir import detect
from shared import protocol as p

log = logging.getLogger("sessiond.gateway.resources")

HANDOFF_PREFIX = "sessiond://handoff/"
QUALITY_URI = "sessiond://quality/current"
POLL_S = 2.0
POLL_BACKOFF_MAX_S = 60.0
ASSESS_BUDGET_S = 5.0
_KEY = re.compile(r"[A-Za-z0-9._-]{1,100}")


class Notifier:
    """Sends ``resources/list_changed`` (see the module's docstring)."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.session = None  # of the client that last listed resources
        self.seen: dict[str, str] | None = None  # project key -> newest handoff file
        self.watch: asyncio.Task | None = None

    def attach(self) -> None:
        """Remember the connection of the request being served; start the handoff poll."""
        try:
            self.session = get_context().session
        except RuntimeError:
            return
        if self.watch is None or self.watch.done():
            # In a context of its own: one copied from this request would make every later
            # notice ride this request's stream, closed by then.
            self.watch = asyncio.get_running_loop().create_task(
                self._poll(), context=contextvars.Context())

    async def changed(self, why: str) -> None:
        self.seen = await asyncio.to_thread(handoff.project_folders, self.gw.cfg)
        try:
            ctx = get_context()
        except RuntimeError:
            ctx = None
        try:
            if ctx is not None:
                await ctx.send_notification(ResourceListChangedNotification())
            elif self.session is not None:
                await self.session.send_resource_list_changed()
            else:
                return
        # A notice that cannot go out (the client left) must not fail the tool that made the
        # change: logged.
        except Exception as exc:  # noqa: BLE001
            log.info("could not send resources/list_changed (%s): %s", why, exc)
            return
        log.info("sent resources/list_changed: %s", why)

    async def on_event(self, event: ev.Event) -> None:
        await self.changed(event.name)

    async def _poll(self) -> None:
        """Find handoffs other windows wrote. Recovers from any failure (logged, backing
        off); ends only when cancelled."""
        delay = POLL_S
        while True:
            await asyncio.sleep(delay)
            try:
                now = await asyncio.to_thread(handoff.project_folders, self.gw.cfg)
                if self.seen is not None and now != self.seen:
                    await self.changed("a handoff was written")
                self.seen = now
                delay = POLL_S
            except Exception:  # the task must not die: logged, tried again later
                log.exception("the handoff poll failed; trying again in %.0f s", delay)
                delay = min(delay * 2, POLL_BACKOFF_MAX_S)


class SessiondResources(Provider):
    """The resources that come and go: one per project handoff, and the quality report."""

    def __init__(self, gw, notifier: Notifier) -> None:
        super().__init__()
        self.gw = gw
        self.notifier = notifier

    async def _list_resources(self) -> Sequence[Resource]:
        self.notifier.attach()
        folders = await asyncio.to_thread(handoff.project_folders, self.gw.cfg)
        if self.notifier.seen is None:
            self.notifier.seen = folders
        return [self._quality()] + [self._handoff(key) for key in sorted(folders)]

    async def _get_resource(self, uri: str, version=None) -> Resource | None:
        if uri == QUALITY_URI:
            return self._quality()
        if uri.startswith(HANDOFF_PREFIX):
            key = uri[len(HANDOFF_PREFIX):]
            if _KEY.fullmatch(key) and key not in (".", ".."):
                return self._handoff(key)
        return None

    def _handoff(self, key: str) -> Resource:
        folder = self.gw.cfg.handoff_dir / key

        async def read() -> str:
            latest = await asyncio.to_thread(handoff.latest_in, folder)
            if latest is None:
                raise ResourceError(f"no handoff for {key}")
            return latest.content

        project = key.rsplit("-", 1)[0] or key
        return Resource.from_function(
            read, uri=HANDOFF_PREFIX + key, name=f"handoff-{key}", title=f"Handoff: {project}",
            description=f"The latest handoff of {project} (written by `end`)",
            mime_type="text/markdown")

    def _quality(self) -> Resource:
        cur = self.gw.sessions.current
        score = (f" (last score {cur.last_score:.1f}/100)"
                 if cur is not None and cur.last_score is not None else "")
        return Resource.from_function(
            self._read_quality, uri=QUALITY_URI, name="quality", title="Quality report",
            description=f"This project's quality report{score}: score, categories, what loses "
                        "points, recommendations", mime_type="text/markdown")

    async def _read_quality(self) -> str:
        cur = self.gw.sessions.current
        if cur is not None and cur.report is not None:
            return render_quality(cur.project, str(cur.root), cur.report)
        try:
            where = await detect(self.gw.cfg, get_context(), None)
        except ToolError as exc:
            raise ResourceError(str(exc)) from None
        try:
            report = await self.gw.call(p.SERVICE_QUALITY, p.AssessQuality(
                path=str(where.root), budget_s=ASSESS_BUDGET_S), timeout_s=ASSESS_BUDGET_S + 5)
        except ToolError as exc:
            raise ResourceError(f"cannot assess {where.root}: {exc}") from None
        return render_quality(where.name, str(where.root), report)


def render_quality(project: str, root: str, report: p.QualityReport) -> str:
    q = res.quality(report)
    lines = [f"# Quality of {project}: {q.score:.1f}/100", "", f"- Directory: {root}",
             f"- Measured: {q.measured_at} ({q.elapsed_ms:.0f} ms)"]
    lines += [f"- {name}: {'unknown' if v is None else f'{v:.1f}'}"
              for name, v in q.categories.items()]
    for title, items in (("Losing points", q.losing), ("Recommendations", q.recommendations),
                         ("Not measured", q.not_measured), ("Cut short", q.bounds)):
        if items:
            lines += ["", f"## {title}", ""] + [f"- {item}" for item in items]
    return "\n".join(lines) + "\n"


def register(mcp: FastMCP, gw) -> None:
    notifier = Notifier(gw)
    for name in (ev.SESSION_STARTED, ev.CHECKPOINT_CREATED, ev.SESSION_ENDED):
        gw.sessions.events.on(name, notifier.on_event)
    mcp.add_provider(SessiondResources(gw, notifier))

    @mcp.resource("memory://{id}", name="memory", mime_type="text/markdown")
    async def memory(id: str, ctx: Context) -> str:
        """A memory by id, with its whole content."""
        notifier.attach()
        try:
            reply = await gw.call(p.SERVICE_STORE, p.GetMemories(ids=[id]))
        except ToolError as exc:
            raise ResourceError(str(exc)) from None
        if not reply.items:
            raise ResourceError(f"no memory has id {id!r}")
        m = reply.items[0]
        head = [f"# Memory {m.id}", "", f"- Kind: {m.kind}", f"- Project: {m.project}",
                f"- Created: {m.created_at}"]
        if m.session_id:
            head.append(f"- Session: {m.session_id}")
        if m.tags:
            head.append(f"- Tags: {', '.join(m.tags)}")
        return "\n".join(head) + "\n\n" + m.content + "\n"
