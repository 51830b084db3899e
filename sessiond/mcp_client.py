"""A real MCP client over stdio: spawns ``sessiond serve`` and calls its tools.

This is the terminal face of every tool (``sessiond call``, ``status``, ``health``, ``demo``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from shared.config import Config, to_environ


def serve_transport(cfg: Config) -> StdioTransport:
    env = {**os.environ, **to_environ(cfg)}
    return StdioTransport(sys.executable, ["-m", "sessiond", "serve"], env=env, keep_alive=False)


@asynccontextmanager
async def connect(cfg: Config, timeout_s: float = 60.0,
                  **client_options: Any) -> AsyncIterator[Client]:
    """A client of a fresh ``sessiond serve``; options go to ``fastmcp.Client`` (e.g. an
    ``elicitation_handler`` to answer the server's permission questions)."""
    async with Client(serve_transport(cfg), timeout=timeout_s, init_timeout=30,
                      **client_options) as client:
        yield client


def result_payload(result: Any) -> Any:
    """The structured result of a tool call, or its text when it has none."""
    if result.structured_content is not None:
        return result.structured_content
    return "\n".join(getattr(c, "text", "") for c in result.content)
