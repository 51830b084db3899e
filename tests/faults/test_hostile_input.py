"""Hostile input: over a thousand generated calls (hypothesis, fixed seed) against every tool the
server lists, through one real gateway and one stack reused across examples.

For every call: an answer within 2 s; a failure is a tool error with readable text (never an
``internal``/``unavailable``/``timeout`` error of a service, never a traceback, never silence);
a JSON-RPC error only for what is not a tool call at all. For every write tool: the memory count
moves exactly as the successful answers say (a rejected call writes no row). At the end: no
process crashed or restarted (same pids, restarts 0), and the memories the test stored first are
intact. Destructive tools are confined: the stack's HOME is a temp dir, SESSIOND_IO_ROOTS its
out dir, and the memories checked at the end are in a project no generated call can name.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from conftest import out_dir, private_stack
from hypothesis import HealthCheck, Phase, given, settings

from .hostile import Context, arguments_for
from .support import LONG, LineClient, alive, error_text, report

pytestmark = pytest.mark.faults

CALLS_PER_TOOL = 250 if LONG else 30  # x 21 tools: 630 calls in the short form
CALL_LIMIT_S = 2.0
WRITE_TOOLS = {"store_reflection", "store_conversation", "delete_memories", "import_memories",
               "export_memories", "add_project_dependency"}
# An answer of a service that failed, not one that refused the input.
SERVICE_FAILURE = re.compile(r"(store|embed|quality|hub) (internal|unavailable|timeout):|"
                             r"Error calling tool")  # matched at the start of the error text
PROTOCOL_CASES = [  # calls that are not valid tool calls at all: any readable answer will do
    {"name": "no_such_tool", "arguments": {}},
    {"name": "store_reflection", "arguments": [1, 2]},
    {"name": "store_reflection", "arguments": "content"},
    {"name": "store_reflection"},
    {"name": 5, "arguments": {}},
    {"name": "", "arguments": {}},
    {"name": "ping\x00", "arguments": {}},
    {"arguments": {"content": "x"}},
]


def _prepare_files(home: Path, fake_home: Path) -> list[str]:
    """Files and paths the path parameters are drawn from, inside and outside the allowed
    places; returns them as strings."""
    out = out_dir(home)
    row = {"kind": "note", "project": "hostile-import", "tags": [], "metadata": {},
           "created_at": "2026-01-02T03:04:05+00:00", "session_id": None}
    rows = [{**row, "id": secrets.token_hex(16), "content": f"imported row {i}"} for i in range(3)]
    (out / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "edge-date.jsonl").write_text(json.dumps({
        **rows[0], "id": secrets.token_hex(16), "created_at": "0001-01-01T00:00:00+14:00"}) + "\n")
    (out / "bad-line.jsonl").write_text(json.dumps(rows[0]) + "\n{not json\n")
    (out / "empty.jsonl").write_text("")
    (out / "binary.bin").write_bytes(bytes(range(256)) * 64)
    (out / "huge-line.jsonl").write_text('{"content": "' + "x" * 5_000_000 + '"}\n')
    (out / "exists.jsonl").write_text("kept unless overwritten\n")
    (out / "dir").mkdir()
    os.mkfifo(out / "fifo")
    (out / "link-passwd").symlink_to("/etc/passwd")
    (out / "link-db").symlink_to(home / "memory.duckdb")
    (out / "loop-a").symlink_to(out / "loop-b")
    (out / "loop-b").symlink_to(out / "loop-a")
    (fake_home / ".bashrc").write_text("# the test's fake home\n")
    return [
        *(str(out / n) for n in (
            "valid.jsonl", "edge-date.jsonl", "bad-line.jsonl", "empty.jsonl", "binary.bin",
            "huge-line.jsonl", "exists.jsonl", "dir", "fifo", "link-passwd", "link-db", "loop-a",
            "new.jsonl", "new2.jsonl")),
        f"{out}/../escape.jsonl", f"{out}/missing-dir/x.jsonl", f"{out}/{'a' * 300}.jsonl",
        f"{out}/a\x00b.jsonl", f"{out}/\ud800.jsonl",
        str(home / "memory.duckdb"), str(home / "memory.duckdb.journal"),
        str(home / "logs" / "store.log"), str(home), str(home / "new-in-data-dir.jsonl"),
        str(fake_home / ".bashrc"), "~/.bashrc", "~/export.jsonl", "/etc/passwd", "/dev/zero",
        "/proc/self/environ", "relative.jsonl", "/", "/" * 4096, "",
    ]


class Run:
    """The state of the run: the client, the expected memory count, and what was seen."""

    def __init__(self, client: LineClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.loop = client, loop
        self.expected = 0
        self.calls = 0
        self.by_tool: dict[str, dict[str, int]] = {}
        self.slowest: list[tuple[float, str, str]] = []

    def sync(self, coro):
        return self.loop.run_until_complete(coro)

    def count(self) -> int:
        return self.sync(self.client.tool("reflection_stats"))["memories"]

    def call(self, tool: str, arguments: Any) -> None:
        """One hostile call and every check on its answer."""
        t0 = time.monotonic()
        reply = self.sync(self.client.call_tool(tool, arguments, timeout=30))
        took = time.monotonic() - t0
        self.calls += 1
        self.slowest = sorted([*self.slowest, (took, tool, repr(arguments)[:200])],
                              reverse=True)[:5]
        text = error_text(reply)
        seen = self.by_tool.setdefault(tool, {"calls": 0, "errors": 0})
        seen["calls"] += 1
        assert took < CALL_LIMIT_S, f"{tool} took {took:.2f}s: {arguments!r:.300}"
        assert "error" not in reply, f"{tool}: a JSON-RPC error, not a tool error: {reply}"
        if text is not None:
            seen["errors"] += 1
            assert text.strip(), f"{tool}: an error without text: {reply}"
            assert not SERVICE_FAILURE.match(text), f"{tool}({arguments!r:.300}): {text}"
        else:
            self.expected += _count_change(tool, reply["result"]["structuredContent"])
        if tool in WRITE_TOOLS:
            assert self.count() == self.expected, (
                f"{tool}({arguments!r:.300}) -> {text or 'ok'}: the memory count moved")


def _count_change(tool: str, result: dict[str, Any]) -> int:
    if tool in ("store_reflection", "store_conversation"):
        return 0 if result["duplicate"] else 1
    if tool == "import_memories":
        return result["count"]
    if tool == "delete_memories":
        return -result["count"]
    return 0


def test_hostile_calls_get_readable_errors_and_change_nothing_they_should_not(tmp_path):
    fake_home = Path(tempfile.mkdtemp(prefix="sd-home-"))
    overrides = {"HOME": str(fake_home),
                 # the embedding model's optimised build, made once into the real cache dir
                 "SESSIOND_MODEL_CACHE_DIR": platformdirs.user_cache_dir("sessiond"),
                 # the quality worker running from the start, so its pid is checked too
                 "SESSIOND_QUALITY_PARK_AFTER_S": "0"}
    t_start = time.monotonic()
    loop = asyncio.new_event_loop()
    try:
        with private_stack(**overrides) as (env, home):
            paths = _prepare_files(home, fake_home)
            client = LineClient(env)
            loop.run_until_complete(client.start())
            run = Run(client, loop)
            try:
                _run(run, paths, tmp_path, t_start)
            finally:
                loop.run_until_complete(client.close())
    finally:
        loop.close()
        shutil.rmtree(fake_home, ignore_errors=True)


def _run(run: Run, paths: list[str], tmp_path: Path, t_start: float) -> None:
    client = run.client
    status = _wait_ready(run)
    canary_project = f"canary-{secrets.token_hex(8)}"
    canaries = {}
    for i in range(5):
        content = f"canary {i}: must survive every hostile call"
        canaries[run.sync(client.tool("store_reflection", {
            "content": content, "project": canary_project}))["id"]] = content
    decoys = [run.sync(client.tool("store_reflection", {
        "content": f"decoy {i} for get and delete", "project": "hostile"}))["id"]
        for i in range(5)]
    run.expected = run.count()
    ctx = Context(paths=paths, ids=[*decoys, "0" * 32, "x" * 64, "x" * 65, "../x", "*"])
    tools = run.sync(client.request("tools/list", {}))["result"]["tools"]
    assert len(tools) >= 20, [t["name"] for t in tools]

    for tool in tools:
        _hostile_calls(run, tool["name"], arguments_for(tool, ctx))()

    protocol = []
    for params in PROTOCOL_CASES:
        reply = run.sync(client.request("tools/call", params, timeout=10))
        text = error_text(reply)
        assert text and text.strip() and not SERVICE_FAILURE.match(text), (params, reply)
        protocol.append(text)

    after = run.sync(client.tool("status"))["stack"]
    found = run.sync(client.tool("get_memory", {"ids": list(canaries)}))
    assert {m["id"]: m["content"] for m in found["memories"]} == canaries
    assert [(w["name"], w["pid"], w["restarts"]) for w in after["workers"]] == \
           [(w["name"], w["pid"], 0) for w in status["workers"]]
    assert after["stack_pid"] == status["stack_pid"] and alive(client.pid)
    assert run.count() == run.expected
    errors = sum(t["errors"] for t in run.by_tool.values())
    report(tmp_path, "hostile_input", {
        "hostile_calls": run.calls, "protocol_calls": len(protocol), "tools": len(tools),
        "tool_errors": errors, "accepted": run.calls - errors,
        "slowest_call_s": round(run.slowest[0][0], 3), "restarts": 0,
        "run_time_s": round(time.monotonic() - t_start, 1),
        "slowest": [f"{t:.3f}s {tool} {args}" for t, tool, args in run.slowest],
        "by_tool": run.by_tool})
    assert run.calls >= len(tools) * CALLS_PER_TOOL * 0.95


def _hostile_calls(run: Run, name: str, arguments):
    """A hypothesis test making CALLS_PER_TOOL calls of tool ``name`` (seeded from its source:
    the same calls on every run). No shrinking: each example is a real call, and the first
    failing one is reported as it is."""
    @settings(max_examples=CALLS_PER_TOOL, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(arguments)
    def hostile_call(args):
        run.call(name, args)

    return hostile_call


def _wait_ready(run: Run) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        status = run.sync(run.client.tool("status"))["stack"]
        if all(w["state"] == "ready" for w in status["workers"]):
            return status
        assert time.monotonic() < deadline, status["workers"]
        time.sleep(0.05)
