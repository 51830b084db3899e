"""A real MCP client over stdio: spawns ``sessiond serve`` and calls its tools; or, given a URL,
a client of an HTTP gateway (``sessiond serve --http``) with the configured bearer token.

This is the terminal face of every tool (``sessiond call``, ``status``, ``health``, ``demo``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from shared.config import Config, to_environ


def serve_transport(cfg: Config) -> StdioTransport:
    env = {**os.environ, **to_environ(cfg)}
    return StdioTransport(sys.executable, ["-m", "sessiond", "serve"], env=env, keep_alive=False)


def http_transport(cfg: Config, url: str) -> StreamableHttpTransport:
    headers = {}
    if cfg.http_token_file:
        from gateway.http import read_token

        headers["Authorization"] = f"Bearer {read_token(cfg.http_token_file)}"
    return StreamableHttpTransport(url, headers=headers)


@asynccontextmanager
async def connect(cfg: Config, timeout_s: float = 60.0, url: str | None = None,
                  **client_options: Any) -> AsyncIterator[Client]:
    """A client of a fresh ``sessiond serve`` (or of the HTTP gateway at ``url``); options go to
    ``fastmcp.Client`` (e.g. an ``elicitation_handler`` to answer permission questions)."""
    transport = http_transport(cfg, url) if url else serve_transport(cfg)
    async with Client(transport, timeout=timeout_s, init_timeout=30,
                      **client_options) as client:
        yield client


def result_payload(result: Any) -> Any:
    """The structured result of a tool call, or its text when it has none."""
    if result.structured_content is not None:
        return result.structured_content
    return "\n".join(getattr(c, "text", "") for c in result.content)
