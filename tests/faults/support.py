"""What the fault tests share: the long-form switch, the report of counts, a raw MCP client that
sends exactly the bytes it is given, and the processes that belong to a data dir."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]

# The long form: 100 kills, many more hostile calls. Not a SESSIOND_ setting of the server (the
# fixtures strip SESSIOND_* from what the processes they start see).
LONG = os.environ.get("SESSIOND_FAULTS_LONG", "") == "1"


def report(tmp_path: Path, name: str, counts: dict[str, Any]) -> Path:
    """Print the counts (shown with ``pytest -s``) and write them to ``<tmp_path>/<name>.json``,
    where the README's numbers are copied from."""
    counts = {"form": "long" if LONG else "short", **counts}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in counts.items()
                                     if not isinstance(v, (dict, list))))
    print(f"[{name}] counts written to {path}")
    return path


def processes_of(home: Path) -> list[psutil.Process]:
    """Every live process whose environment names this data dir (gateways, stacks, workers)."""
    me, found = os.getpid(), []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get("SESSIOND_HOME") == str(home) and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Raw:
    """A JSON fragment sent as is (nesting too deep for ``json.dumps``, a NaN, a huge number)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def to_json(value: Any) -> str:
    """JSON text of ``value``, with ``Raw`` fragments spliced in and lone surrogates written as
    ``\\udXXX`` escapes (what a JSON client can send and a UTF-8 encoder cannot)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)  # ensure_ascii: surrogates become escapes; NaN becomes NaN


class LineClient:
    """A JSON-RPC client on a real gateway's stdio (``python -m sessiond serve``) that writes
    exactly the request it is given, one at a time, and returns the whole reply message.

    Unlike ``fastmcp.Client`` it can send what a careless or hostile client sends (lone
    surrogate escapes, NaN, JSON nested thousands deep) and it validates nothing itself, so
    every argument reaches the server."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self._next_id = 100

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", "serve", cwd=str(REPO), env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, limit=64 * 1024 * 1024)
        await self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "faults", "version": "0"}},
                           timeout=60)
        await self._write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

    async def close(self) -> int:
        proc = self.proc
        if proc is None:
            return 0
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            return await asyncio.wait_for(proc.wait(), timeout=15)
        except TimeoutError:
            proc.kill()
            return await proc.wait()

    async def _write(self, line: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        await self.proc.stdin.drain()

    async def request(self, method: str, params: Any, timeout: float = 30) -> dict[str, Any]:
        """Send one request; return its reply message (``result`` or ``error``)."""
        self._next_id += 1
        rid = self._next_id
        line = (f'{{"jsonrpc":"2.0","id":{rid},"method":{json.dumps(method)},'
                f'"params":{to_json(params)}}}')
        await self._write(line.encode("utf-8", errors="surrogatepass"))
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:  # skip notifications (log messages) until our answer
            raw = await asyncio.wait_for(self.proc.stdout.readline(),
                                         max(0.01, deadline - time.monotonic()))
            if not raw:
                raise ConnectionError("the gateway closed its stdout")
            message = json.loads(raw)
            if message.get("id") == rid:
                return message

    async def call_tool(self, name: str, arguments: Any, timeout: float = 30) -> dict[str, Any]:
        return await self.request("tools/call", {"name": name, "arguments": arguments}, timeout)

    async def tool(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call that must succeed: its structured result."""
        reply = await self.call_tool(name, arguments or {})
        result = reply.get("result") or {}
        assert "error" not in reply and not result.get("isError"), f"{name} failed: {reply}"
        return result["structuredContent"]


def error_text(reply: dict[str, Any]) -> str | None:
    """The text of a tool error or JSON-RPC error reply; None if the call succeeded."""
    if "error" in reply:
        return f"JSON-RPC error {reply['error'].get('code')}: {reply['error'].get('message')}"
    result = reply["result"]
    if not result.get("isError"):
        return None
    return "\n".join(c.get("text", "") for c in result.get("content", []))
