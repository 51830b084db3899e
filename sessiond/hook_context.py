"""What the ``session-start`` hook prints (Claude Code adds it to the conversation): the
project's last handoff summary, its open recommendations, the memories closest in meaning to
that summary, and the project's newest reflections and checkpoints; within
``hook_context_tokens`` (about four characters a token), most important first, nothing when
memory holds nothing on the project.

It must be quick (the bar is a p95 of 300 ms, process start included), so it reads the handoff
file itself and asks the store two questions with short deadlines; an answer that does not come
in time is left out, never waited for. When no stack runs it starts one (detached: the hook
does not wait for it, let alone for the model) and prints what the files hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway import handoff
from sessiond.hooks import HookInput, stack_pid_runs
from shared import protocol as p
from shared.client import HubClient
from shared.config import Config
from shared.errors import ServiceError

log = logging.getLogger("sessiond.hooks")

CHARS_PER_TOKEN = 4
# Deadlines (~6 ms and ~10-20 ms when the stack is quiet); what is late is left out. While
# the embed filler backfills a large import, both cores are busy and answers take 0.2-0.5 s.
EMBED_TIMEOUT_S = 0.25
SEARCH_TIMEOUT_S = 0.5
RELEVANT, RECENT, LAST_TURNS = 6, 5, 6
MIN_RELEVANCE = 0.05
MAX_ITEM_CHARS = 300
MAX_QUERY_CHARS = 1000
NOTE_KINDS = ["reflection", "checkpoint", "handoff", "note"]


@dataclass
class Context:
    project: str
    root: Path
    latest: handoff.Handoff | None = None
    relevant: list[p.Hit] = field(default_factory=list)
    recent: list[p.Hit] = field(default_factory=list)
    last_turns: list[p.Hit] = field(default_factory=list)  # of earlier sessions, oldest first


def session_start(cfg: Config, hook: HookInput) -> str:
    if cfg.hook_context_tokens == 0:
        return ""
    root = hook.project_dir.resolve()
    ctx = Context(project=root.name or str(root), root=root)
    ctx.latest = handoff.latest(cfg, str(root), ctx.project)
    if _stack_running(cfg):
        t0 = time.perf_counter()
        asyncio.run(_ask_memory(cfg, ctx, hook.session_id))
        log.info("session-start: memory answered in %.0f ms (%d relevant, %d recent, %d turns)",
                 (time.perf_counter() - t0) * 1000, len(ctx.relevant), len(ctx.recent),
                 len(ctx.last_turns))
    return render(ctx, cfg.hook_context_tokens * CHARS_PER_TOKEN)


def _stack_running(cfg: Config) -> bool:
    """Whether a stack serves the data dir; if none does, start one without waiting for it
    (unless another process is starting one: it holds the spawn lock). A hub elsewhere
    (``hub_host``) is never replaced by a local stack: it is asked as it is."""
    if cfg.hub_host or stack_pid_runs(cfg):
        return True
    from filelock import FileLock
    from filelock import Timeout as LockTimeout

    from gateway.stack_control import spawn_detached, stack_process

    if stack_process(cfg) is not None:
        return True
    lock = FileLock(str(cfg.run_dir / "spawn.lock"))
    try:
        lock.acquire(timeout=0)
    except LockTimeout:
        return False
    try:
        if stack_process(cfg) is None:
            spawn_detached(cfg)
            log.info("started a stack for %s (not waited for)", cfg.home)
    finally:
        lock.release()
    return False


async def _ask_memory(cfg: Config, ctx: Context, session_id: str) -> None:
    """The relevant memories, the newest notes and the last turns of earlier sessions, asked
    together; what does not answer within its deadline stays empty."""
    client = HubClient.for_config(cfg, default_timeout_s=SEARCH_TIMEOUT_S)
    try:
        query = ctx.latest.summary[:MAX_QUERY_CHARS] if ctx.latest and ctx.latest.summary else ""
        recent, turns, relevant = await asyncio.gather(
            _search(client, p.Search(query="", projects=[ctx.project], kinds=NOTE_KINDS,
                                     order="newest", limit=RECENT)),
            _search(client, p.Search(query="", projects=[ctx.project], kinds=["conversation"],
                                     order="newest", limit=LAST_TURNS * 3)),
            _relevant(client, ctx, query))
        shown = {h.memory.id for h in relevant}
        ctx.relevant = relevant
        ctx.recent = [h for h in recent if h.memory.id not in shown]
        earlier = [h for h in turns if h.memory.id not in shown
                   and (not session_id or h.memory.session_id != session_id)]
        ctx.last_turns = earlier[:LAST_TURNS][::-1]
    finally:
        client.close()


async def _relevant(client: HubClient, ctx: Context, query: str) -> list[p.Hit]:
    if not query:
        return []
    vector = None
    try:
        reply = await client.request(p.SERVICE_EMBED, p.Embed(texts=[query], kind="query"),
                                     timeout_s=EMBED_TIMEOUT_S, idempotent=True)
        vector = reply.data
    except ServiceError as exc:  # the model may still be loading: keywords alone
        log.info("session-start: no query vector (%s: %s)", exc.code, exc.message)
    return await _search(client, p.Search(query=query, query_vector=vector,
                                          projects=[ctx.project], limit=RELEVANT,
                                          min_score=MIN_RELEVANCE))


async def _search(client: HubClient, body: p.Search) -> list[p.Hit]:
    try:
        reply = await client.request(p.SERVICE_STORE, body, idempotent=True)
    except ServiceError as exc:
        log.warning("session-start: search failed (%s: %s)", exc.code, exc.message)
        return []
    return list(reply.hits)


def _line(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _memory_line(hit: p.Hit) -> str:
    m = hit.memory
    text = hit.snippet if hit.snippet and hit.chunk >= 0 else m.content
    return f"- [{m.kind}, {m.created_at[:10]}] {_line(text)} (id {m.id})"


def render(ctx: Context, budget: int) -> str:
    """The context, sections in order of importance, cut to ``budget`` characters on whole
    lines (a section's title only with at least one of its lines); "" when there is nothing
    to say."""
    sections: list[tuple[str, list[str]]] = []
    if ctx.latest is not None and ctx.latest.summary:
        sections.append((f"Last session's handoff ({Path(ctx.latest.path).name}):",
                         [_line(ctx.latest.summary, 1000)]))
    if ctx.latest is not None and ctx.latest.recommendations:
        sections.append(("Open recommendations:",
                         [f"- {_line(r)}" for r in ctx.latest.recommendations]))
    for title, hits in (("Memories closest to it:", ctx.relevant),
                        ("Newest reflections and checkpoints:", ctx.recent),
                        ("Where the last conversation left off:", ctx.last_turns)):
        if hits:
            sections.append((title, [_memory_line(h) for h in hits]))
    if not sections:
        return ""
    lines = [(f"sessiond memory of {ctx.project} ({ctx.root}); search it with the sessiond "
              "tools quick_search or reflect_on_past, get whole memories with get_memory.")]
    used = len(lines[0]) + 1
    for title, items in sections:
        for i, item in enumerate(items):
            cost = len(item) + 1 + (len(title) + 2 if i == 0 else 0)
            if used + cost > budget:
                break
            lines += ["", title, item] if i == 0 else [item]
            used += cost
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""
