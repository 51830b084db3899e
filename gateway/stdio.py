"""Serve MCP on stdio with input that cannot break the channel.

The MCP SDK decodes stdin with ``errors="replace"`` (invalid UTF-8 silently becomes U+FFFD and
gets stored) and drops, without any reply, a line whose JSON escapes a lone surrogate (the client
then waits for its timeout). Here each line is decoded strictly; an invalid byte sequence or an
unpaired surrogate escape becomes U+FFFF, a noncharacter that no legitimate text needs, and the
hub client refuses any request carrying it with a ``bad_request`` the assistant can read.
"""

from __future__ import annotations

import codecs
import re
import sys

import anyio
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server.stdio import stdio_server

INVALID_TEXT_MARK = "\uffff"
_ERRORS = "sessiond-mark-invalid"
_LONE_SURROGATE = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u(?:[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<![dD][89abAB][0-9a-fA-F]{2}\\u)[dD][c-fC-F][0-9a-fA-F]{2})")


def _mark(exc: UnicodeDecodeError) -> tuple[str, int]:
    return INVALID_TEXT_MARK, exc.end


codecs.register_error(_ERRORS, _mark)


def sanitize_line(raw: bytes) -> str:
    """Decode one JSON-RPC line, marking invalid UTF-8 and unpaired surrogate escapes."""
    text = raw.decode("utf-8", errors=_ERRORS)
    if "\\u" in text:
        text = _LONE_SURROGATE.sub(lambda m: m.group(1) + "\\uffff", text)
    return text


class _SanitizedStdin:
    """The async line iterator ``stdio_server`` reads from."""

    def __init__(self) -> None:
        self._stdin = anyio.wrap_file(sys.stdin.buffer)

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        raw = await self._stdin.readline()
        if not raw:
            raise StopAsyncIteration
        return sanitize_line(raw)


async def run_stdio(mcp: FastMCP) -> None:
    """FastMCP's own stdio runner, with the sanitizing stdin (stdout stays the SDK's: while
    serving, fd 1 points at stderr so stray output never reaches the wire)."""
    token = set_transport("stdio")
    try:
        async with (mcp._lifespan_manager(),
                    stdio_server(stdin=_SanitizedStdin()) as (read_stream, write_stream)):
            await mcp._mcp_server.run(read_stream, write_stream,
                                      mcp._mcp_server.create_initialization_options())
    finally:
        reset_transport(token)
