"""Answers to request lines the MCP SDK cannot read.

The SDK parses each stdin line; one it cannot parse (JSON nested deeper than its parser allows,
about 200 levels; an integer of thousands of digits; a raw control character in a string; a
byte-order mark) becomes an exception on its read stream, which the server only logs: the
request gets no reply and its client waits for its own timeout. ``AnswerUnreadable`` wraps that
read stream: for such a line it finds the request's ``id`` and ``method`` among the line's
top-level members (``request_of``: a scan that neither parses nor recurses) and answers a
``tools/call`` with a tool error the assistant can read, any other request with a JSON-RPC parse
error. A line without a usable id (a notification, a response, not an object) is logged and
dropped, as JSON-RPC does for notifications.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import (
    PARSE_ERROR,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    JSONRPCResponse,
    TextContent,
)
from pydantic import ValidationError

log = logging.getLogger("sessiond.gateway.stdio")

# Structural characters: the scan jumps from one to the next (a character class: linear).
_STRUCTURE = re.compile(r'["{}\[\]]')
_COLON = re.compile(r"[ \t\r\n]*:")
_BLANKS = re.compile(r"[ \t\r\n]*")
_INTEGER = re.compile(r"-?[0-9]{1,18}(?![0-9.eE])")  # an id a client would send
MAX_SCAN_TOKENS = 200_000  # structural characters looked at before giving up (~50 ms)

RequestId = int | str


def request_of(line: str) -> tuple[RequestId | None, str | None]:
    """The ``id`` (an integer or a string) and ``method`` members of the top-level object of a
    JSON-RPC line, as far as they can be found without parsing it; None for what is missing or
    unusable. Reads past anything nested, however deep, in time linear in the line."""
    found: dict[str, Any] = {}
    pos = line.find("{")
    if pos < 0 or line[:pos].strip("\ufeff \t\r\n"):
        return None, None
    depth, pos, tokens = 1, pos + 1, 0
    while depth > 0 and len(found) < 2 and tokens < MAX_SCAN_TOKENS:
        m = _STRUCTURE.search(line, pos)
        if m is None:
            break
        tokens += 1
        start = m.start()
        if m.group() != '"':
            depth += 1 if m.group() in "{[" else -1
            pos = start + 1
            continue
        end = _string_end(line, start)
        if end < 0:
            break
        pos = end + 1
        colon = _COLON.match(line, pos)
        if depth == 1 and colon is not None:  # a member name of the top-level object
            name = line[start + 1:end]
            if name in ("id", "method"):
                found[name] = _scalar(line, colon.end())
    request_id, method = found.get("id"), found.get("method")
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        request_id = None
    return request_id, method if isinstance(method, str) else None


def _string_end(line: str, start: int) -> int:
    """The index of the quote closing the string opened at ``start``, or -1."""
    end = line.find('"', start + 1)
    while end >= 0:
        backslashes = 0
        while line[end - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        end = line.find('"', end + 1)
    return -1


def _scalar(line: str, at: int) -> Any:
    """The string or integer value starting at ``at`` (after blanks); None for anything else."""
    at = _BLANKS.match(line, at).end()
    if line.startswith('"', at):
        end = _string_end(line, at)
        if end < 0:
            return None
        try:
            return json.loads(line[at:end + 1], strict=False)
        except ValueError:
            return None
    m = _INTEGER.match(line, at)
    return int(m.group()) if m else None


def reply_to(line: str, reason: str) -> SessionMessage | None:
    """The answer to an unreadable request line, or None when it carries no usable id."""
    request_id, method = request_of(line)
    if request_id is None or method is None:
        return None
    text = (f"sessiond could not read this request: {reason}. Send it again as valid JSON "
            "(UTF-8, no raw control characters, nested less than 200 levels deep).")
    if method == "tools/call":
        result = CallToolResult(content=[TextContent(type="text", text=text)], isError=True)
        message = JSONRPCResponse(jsonrpc="2.0", id=request_id,
                                  result=result.model_dump(by_alias=True, exclude_none=True))
    else:
        message = JSONRPCError(jsonrpc="2.0", id=request_id,
                               error=ErrorData(code=PARSE_ERROR, message=text))
    return SessionMessage(message)


def unreadable_line(exc: Exception) -> tuple[str, str] | None:
    """(line, reason) when ``exc`` is the SDK's failure to parse a whole line of JSON."""
    if not isinstance(exc, ValidationError):
        return None
    for error in exc.errors():
        if error.get("type") == "json_invalid" and isinstance(error.get("input"), str):
            return error["input"], error["msg"]
    return None


class AnswerUnreadable:
    """The server's read stream, minus the parse failures, which are answered here."""

    def __init__(self, inner, write_stream) -> None:
        self._inner = inner
        self._write = write_stream

    @property
    def last_context(self):
        return getattr(self._inner, "last_context", None)

    async def receive(self):
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            await self._answer(item)

    async def _answer(self, exc: Exception) -> None:
        unreadable = unreadable_line(exc)
        reply = reply_to(*unreadable) if unreadable is not None else None
        if reply is None:
            log.warning("dropped an unreadable line with no request id to answer: %s", exc)
            return
        log.warning("answered an unreadable request (id %r): %s", reply.message.id,
                    unreadable[1])
        await self._write.send(reply)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info) -> bool | None:
        return await self._inner.__aexit__(*exc_info)
