"""A minimal MCP client over stdio for benchmarks: JSON-RPC lines in, JSON-RPC lines out.

It speaks the real protocol to the real gateway (``python -m sessiond serve``): the ``initialize``
request, the ``notifications/initialized`` notification, then ``tools/call`` requests, one at a
time. What it leaves out is what a Python client library adds on its own side of each call: the
``fastmcp.Client`` validates every structured result against the tool's output schema with
``jsonschema`` and builds typed objects from it (about 1-3 ms of this machine's CPU per call, more
for bigger results). Claude Code's own client is not that library. The benchmark measures with
both and prints both; this one shows what the server side costs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import IO, Any, Self

PROTOCOL_VERSION = "2025-06-18"
LINE_LIMIT = 64 * 1024 * 1024


class ToolCallError(RuntimeError):
    pass


class RawMcpClient:
    def __init__(self, env: dict[str, str], cwd: Path, command: list[str] | None = None,
                 stderr: IO[bytes] | None = None) -> None:
        """``command`` starts the gateway (default: this interpreter, ``-m sessiond serve``);
        its stderr goes to ``stderr`` (default: this process's)."""
        self.env = env
        self.cwd = cwd
        self.command = command or [sys.executable, "-m", "sessiond", "serve"]
        self.stderr = stderr
        self.initialize_result: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._next_id = 0

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            *self.command, cwd=str(self.cwd), env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self.stderr,
            limit=LINE_LIMIT)
        self.initialize_result = await self._request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "sessiond-bench-raw", "version": "0"}})
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    @property
    def pid(self) -> int:
        """The gateway process's pid."""
        assert self._proc is not None
        return self._proc.pid

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self._proc.stdin.drain()

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        self._next_id += 1
        rid = self._next_id
        await self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:  # skip notifications (e.g. log messages) until our answer
            line = await self._proc.stdout.readline()
            if not line:
                raise ConnectionError("the gateway closed stdout")
            message = json.loads(line)
            if message.get("id") == rid:
                if "error" in message:
                    raise ToolCallError(f"{method}: {message['error']}")
                return message["result"]

    async def call_tool_result(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The whole ``tools/call`` result (``content``, ``isError``, ``structuredContent`` if
        the server gives one), a tool error included: for servers that answer in text only."""
        return await self._request("tools/call", {"name": name, "arguments": arguments})

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The structured result of a tool call; a tool error raises ``ToolCallError``."""
        result = await self.call_tool_result(name, arguments)
        if result.get("isError"):
            raise ToolCallError(f"{name}: {result.get('content')}")
        return result["structuredContent"]
