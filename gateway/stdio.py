"""Serve MCP on stdio with input that cannot break the channel, and without thread hops.

**Input that cannot break the channel.** The MCP SDK decodes stdin with ``errors="replace"``
(invalid UTF-8 silently becomes U+FFFD and gets stored) and drops, without any reply, a line whose
JSON escapes a lone surrogate (the client then waits for its timeout). Here each line is decoded
strictly; an invalid byte sequence or an unpaired surrogate escape becomes U+FFFF, a noncharacter
that no legitimate text needs, and the hub client refuses any request carrying it with a
``bad_request`` the assistant can read. A line the SDK cannot parse at all (JSON nested too deep,
a huge integer, a raw control character) is answered with its id too (``gateway.unreadable``).

**No thread hops.** The SDK reads and writes stdio through ``anyio.wrap_file``: every line read,
every write and every flush is a trip to a worker thread and back. When stdin and stdout are pipes
or sockets (as when an MCP client starts us) they are served by the event loop itself
(``connect_read_pipe`` / ``connect_write_pipe``); anything else (a file, a terminal) keeps the
thread-backed path.

Either way, while serving, fd 0 reads the null device and fd 1 points at stderr, so stray output
(ours or a child's) never reaches the wire; both are restored on exit.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import logging
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server.stdio import stdio_server

from gateway.unreadable import AnswerUnreadable
from shared.limits import INVALID_TEXT_MARK

log = logging.getLogger("sessiond.gateway.stdio")

MAX_LINE_BYTES = 64 * 1024 * 1024  # one JSON-RPC message; tools refuse far smaller content
_ERRORS = "sessiond-mark-invalid"
_MARK_ESCAPE = f"\\u{ord(INVALID_TEXT_MARK):04x}"  # the mark as a JSON escape
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
        text = _LONE_SURROGATE.sub(lambda m: m.group(1) + _MARK_ESCAPE, text)
    return text


class _Lines:
    """The async line iterator ``stdio_server`` reads from: sanitized lines from ``readline``
    (an awaitable returning bytes, ``b""`` at the end)."""

    def __init__(self, readline: Callable[[], Awaitable[bytes]]) -> None:
        self._readline = readline

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        raw = await self._readline()
        if not raw:
            raise StopAsyncIteration
        return sanitize_line(raw)


def _pipe_readline(reader: asyncio.StreamReader) -> Callable[[], Awaitable[bytes]]:
    """``reader.readline`` that skips (and logs) a line over ``MAX_LINE_BYTES``."""
    async def readline() -> bytes:
        while True:
            try:
                return await reader.readline()
            except ValueError:  # the reader dropped the overlong line
                log.error("dropped a JSON-RPC line longer than %d bytes", MAX_LINE_BYTES)

    return readline


class _PipeStdout:
    """The ``write``/``flush`` pair the SDK's writer calls, on an event-loop pipe transport."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _divert(fd: int, target_fd: int | None, flags: int) -> int:
    """Keep the wire on a private descriptor (above 2, close-on-exec) and point ``fd`` at
    ``target_fd`` (or the null device); returns the private descriptor."""
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    if target_fd is None:
        null = os.open(os.devnull, flags)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    else:
        os.dup2(target_fd, fd)
    return private


def _restore(fd: int, wire: int) -> None:
    try:
        os.dup2(wire, fd)
    except OSError as exc:
        log.warning("could not restore fd %d: %s", fd, exc)


@asynccontextmanager
async def _pipe_streams() -> AsyncIterator[tuple[_Lines, _PipeStdout]]:
    loop = asyncio.get_running_loop()
    wire_in = _divert(0, None, os.O_RDONLY)
    wire_out = _divert(1, 2, os.O_WRONLY)
    transports: list[asyncio.BaseTransport] = []
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", buffering=0))
        transports.append(read_transport)
        write_transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
            os.fdopen(wire_out, "wb", buffering=0))
        transports.append(write_transport)
        yield _Lines(_pipe_readline(reader)), _PipeStdout(
            asyncio.StreamWriter(write_transport, protocol, None, loop))
    finally:
        _restore(0, wire_in)  # before the transports close the private descriptors
        _restore(1, wire_out)
        for transport in transports:
            transport.close()


async def run_stdio(mcp: FastMCP) -> None:
    """FastMCP's own stdio runner, with the sanitizing, thread-free streams described above."""
    token = set_transport("stdio")
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(mcp._lifespan_manager())
            if _is_pipe(0) and _is_pipe(1):
                stdin, stdout = await stack.enter_async_context(_pipe_streams())
                streams = stdio_server(stdin=stdin, stdout=stdout)
            else:  # the SDK claims fd 1 itself; stdin is read in a thread
                streams = stdio_server(stdin=_Lines(anyio.wrap_file(sys.stdin.buffer).readline))
            read_stream, write_stream = await stack.enter_async_context(streams)
            read_stream = AnswerUnreadable(read_stream, write_stream)
            await mcp._mcp_server.run(read_stream, write_stream,
                                      mcp._mcp_server.create_initialization_options())
    finally:
        reset_transport(token)
