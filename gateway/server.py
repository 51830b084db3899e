"""The MCP gateway (``sessiond serve``): a FastMCP server on stdio in front of the hub.

It holds no state of its own beyond a hub client: every tool is a request to the stack, which it
finds (or starts) through the data dir. Nothing but MCP JSON-RPC is written to stdout; logs go to
``<home>/logs/gateway.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from pathlib import Path

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.lifespan import lifespan
from fastmcp.server.middleware import Middleware

from gateway.consent import AskUserMiddleware
from gateway.metrics import CountingMiddleware, ToolCalls
from gateway.permissions import Permissions
from gateway.query_cache import QueryCache
from gateway.sessions import Sessions
from gateway.stack_control import ensure_stack, hub_alive
from shared import protocol as p
from shared.client import HubClient
from shared.config import Config
from shared.errors import ServiceError, StackError, Unreachable
from shared.version import VERSION

log = logging.getLogger("sessiond.gateway")

QUERY_EMBED_TIMEOUT_S = 3.0
# fastmcp imports its session-state store (py-key-value with beartype, ~0.2 s) on the first
# tool call. Importing it in the background once the gateway has answered its first message
# (``initialize``) keeps that off the assistant's first call (223 ms -> a few ms, measured over
# stdio) without slowing the handshake.
LAZY_IMPORTS = ("key_value.aio.adapters.pydantic", "key_value.aio.stores.memory")

INSTRUCTIONS = (
    "sessiond keeps a local memory of conversations and reflections for coding sessions, "
    "searched by meaning, plus session health. Call `start` when work on a project begins "
    "(it returns the last session's handoff), `checkpoint` at milestones, `end` when done. "
    "Everything stays on this machine."
)


class Gateway:
    """What the tools share: the config, the hub client, the query cache, the stack's readiness,
    the permission checker."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.client = HubClient.for_config(cfg)
        self.cache = QueryCache()
        self.project = cfg.project or Path.cwd().name or "default"
        self._ready_lock = asyncio.Lock()
        self.answered = asyncio.Event()  # set once the client has the first answer (FirstAnswer)
        self.permissions = Permissions(self)
        self.sessions = Sessions(self)

    async def query_vector(self, text: str) -> tuple[bytes | None, str]:
        """The query's vector (cached), or None and why: search then runs on keywords alone."""
        cached = self.cache.get(text)
        if cached is not None:
            return cached, ""
        try:
            reply = await self.client.request(p.SERVICE_EMBED, p.Embed(texts=[text], kind="query"),
                                              timeout_s=QUERY_EMBED_TIMEOUT_S, idempotent=True)
        except ServiceError as exc:
            return None, f"keyword-only search: the embedding pool is {exc.code} ({exc.message})"
        assert isinstance(reply, p.Vectors)
        self.cache.put(text, reply.model_id, reply.data)
        return reply.data, ""

    async def search(self, query: str, **fields) -> tuple[p.SearchHits, str]:
        """Embed the query (unless told not to) and search the store; returns hits and a note."""
        vector, note = (None, "") if not query.strip() else await self.query_vector(query)
        reply = await self.call(p.SERVICE_STORE, p.Search(query=query, query_vector=vector,
                                                         **fields))
        assert isinstance(reply, p.SearchHits)
        return reply, note

    async def ensure_stack(self) -> None:
        async with self._ready_lock:
            await ensure_stack(self.cfg, self.client)

    async def call(self, service: str, body: p.RequestBody, *, timeout_s: float | None = None,
                   idempotent: bool = True) -> p.ReplyBody:
        """One request to the stack; restarts the stack once if it is gone. Errors become
        ``ToolError`` with a message the assistant can act on."""
        for attempt in (1, 2):
            try:
                return await self.client.request(service, body, timeout_s=timeout_s,
                                                 idempotent=idempotent, retry_unavailable=True)
            except ServiceError as exc:
                if attempt == 1 and exc.code in ("unavailable", "timeout"):
                    if not await hub_alive(self.client):
                        await self._restart_stack()
                        continue
                    if isinstance(exc, Unreachable):
                        continue  # no hub took it; one answers now (another gateway started it)
                raise ToolError(f"{service} {exc.code}: {exc.message}") from exc
        raise AssertionError("unreachable")

    async def warm_up(self) -> None:
        """Start (or find) the stack as the gateway starts, and load what the first tool call
        would otherwise import, so the first call is fast."""
        try:
            await self.ensure_stack()
        except StackError as exc:
            log.error("could not start the stack: %s", exc)
        await self.answered.wait()
        for name in LAZY_IMPORTS:
            try:
                await asyncio.to_thread(importlib.import_module, name)
            except ImportError as exc:  # a fastmcp release without it: nothing to warm
                log.info("warm-up import of %s skipped: %s", name, exc)

    async def _restart_stack(self) -> None:
        try:
            await self.ensure_stack()
        except StackError as exc:
            raise ToolError(f"the sessiond stack is not running and could not start: {exc}") from exc

    async def keepalive(self) -> None:
        """Tell the stack this gateway is still here, so it does not idle out under us."""
        interval = max(0.5, min(30.0, self.cfg.idle_timeout_s / 3))
        while True:
            await asyncio.sleep(interval)
            if not await hub_alive(self.client, timeout_s=1.0):
                log.info("stack not answering keepalive; it will be restarted on the next call")


class FirstAnswer(Middleware):
    """Sets ``gateway.answered`` when a message comes in after the first was handled: the client
    has its answer (``notifications/initialized`` follows the ``initialize`` reply)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.handled = False

    async def on_message(self, context, call_next):
        if self.handled:
            self.gateway.answered.set()
        try:
            return await call_next(context)
        finally:
            self.handled = True


def build_server(cfg: Config) -> FastMCP:
    gateway = Gateway(cfg)
    calls = ToolCalls(cfg)

    @lifespan
    async def stack_lifespan(_server):
        log.info("gateway %d up for %s", os.getpid(), cfg.home)
        starting = asyncio.create_task(gateway.warm_up())
        beat = asyncio.create_task(gateway.keepalive())
        counts = asyncio.create_task(calls.keep_written())
        try:
            yield {"gateway": gateway}
        finally:
            beat.cancel()
            starting.cancel()
            counts.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await counts  # its last write
            gateway.client.close()

    # Every tool call is counted (gateway.metrics); the second middleware returns a permission
    # question as the tool's result on 2026-07-28 connections (gateway.consent); the third lets
    # the warm-up wait for the handshake. ``version``: initialize / server/discover name
    # sessiond's own version, not fastmcp's.
    mcp = FastMCP("sessiond", instructions=INSTRUCTIONS, version=VERSION, lifespan=stack_lifespan,
                  middleware=[CountingMiddleware(calls), AskUserMiddleware(), FirstAnswer(gateway)])
    from gateway import (
        memory_tools,
        metrics_tool,
        permission_tools,
        prompts,
        resources,
        search_tools,
        session_tools,
        system_tools,
    )

    system_tools.register(mcp, gateway)
    session_tools.register(mcp, gateway)
    memory_tools.register(mcp, gateway)
    search_tools.register(mcp, gateway)
    permission_tools.register(mcp, gateway)
    metrics_tool.register(mcp, gateway, calls)
    prompts.register(mcp, gateway)
    resources.register(mcp, gateway)
    return mcp
