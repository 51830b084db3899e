"""The gateway over real MCP stdio, starting and sharing a real stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psutil
from conftest import (
    REPO,
    base_env,
    call,
    gateway_client,
    modules_after,
    stack_info,
    wait_all_ready,
)

from shared.version import VERSION


def test_initialize_list_and_call_tools(env, home):
    async def scenario():
        async with gateway_client(env) as client:
            info = client.server_info  # from server/discover: sessiond's, not the framework's
            assert (info.name, info.version) == ("sessiond", VERSION)
            tools = {t.name: t for t in await client.list_tools()}
            assert {"ping", "status", "health_check"} <= set(tools)
            for name in ("ping", "status", "health_check"):
                assert tools[name].annotations.read_only_hint is True
                assert tools[name].output_schema is not None
            pong = await call(client, "ping")
            assert pong["ok"] is True and pong["stack_pid"] == stack_info(home)["pid"]
            st = await wait_all_ready(client)
            names = sorted(w["name"] for w in st["workers"])
            assert names == ["embed-0", "quality", "store"]
            by_worker = {w["name"]: w for w in st["workers"]}
            # The quality worker is started by its first request: the health check's probe.
            assert by_worker["quality"]["state"] == "parked" and by_worker["quality"]["pid"] is None
            assert all(psutil.pid_exists(w["pid"]) for w in st["workers"] if w["pid"])
            health = await call(client, "health_check")
            by_name = {c["name"]: c for c in health["components"]}
            assert set(by_name) == {"python", "data_dir", "hub", "store", "embed", "quality"}
            assert health["status"] == "healthy", health
            assert all(c["latency_ms"] >= 0 for c in health["components"])
            quality = next(w for w in (await call(client, "status"))["stack"]["workers"]
                           if w["name"] == "quality")
            assert quality["state"] == "ready" and psutil.pid_exists(quality["pid"]), quality

    asyncio.run(scenario())


def test_initialize_names_sessiond_and_its_version(env):
    """The handshake-era ``initialize`` reply (what Claude Code reads) names sessiond and its
    own version, not the MCP framework's."""
    async def scenario():
        async with gateway_client(env, mode="legacy") as client:
            return client.initialize_result.server_info

    info = asyncio.run(scenario())
    assert (info.name, info.version) == ("sessiond", VERSION)


def test_two_gateways_at_once_share_one_stack(env, home):
    async def one_gateway():
        async with gateway_client(env) as client:
            st = await wait_all_ready(client)
            return st["stack_pid"], {w["name"]: w["pid"] for w in st["workers"]}

    async def scenario():
        return await asyncio.gather(one_gateway(), one_gateway())

    (pid_a, workers_a), (pid_b, workers_b) = asyncio.run(scenario())
    assert pid_a == pid_b
    assert workers_a["store"] == workers_b["store"]
    stacks = [p for p in psutil.process_iter(["cmdline"])
              if p.info["cmdline"] and p.info["cmdline"][-2:] == ["sessiond", "stack"]
              and p.environ().get("SESSIOND_HOME") == str(home)]
    assert len(stacks) == 1


def test_stdout_carries_only_json_rpc(env, home):
    """Raw stdio: every line the gateway writes to stdout is a JSON-RPC message."""
    proc = subprocess.Popen([sys.executable, "-m", "sessiond", "serve"], env=env, cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "ping", "arguments": {}}},
    ]
    replies = []
    try:
        for m in messages:
            proc.stdin.write((json.dumps(m) + "\n").encode())
            proc.stdin.flush()
        while not any(r.get("id") == 2 for r in replies):
            line = proc.stdout.readline()
            assert line, "gateway closed stdout before answering"
            replies.append(json.loads(line))  # raises on anything that is not JSON
    finally:
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(30)
    replies += [json.loads(line) for line in rest.decode().splitlines() if line.strip()]
    assert all(r.get("jsonrpc") == "2.0" for r in replies)
    answer = next(r for r in replies if r.get("id") == 2)
    assert answer["result"]["structuredContent"]["ok"] is True


def test_building_the_gateway_imports_nothing_only_a_later_step_needs(tmp_path):
    """Spawn -> ``initialize`` (issue 10: at most 1 s) is mostly imports, so what builds the
    server must not import what only a later step needs: griffe (fastmcp's docstring parser;
    gateway.described gives it nothing to parse), filelock (only a gateway that starts a stack),
    psutil (whether a stack runs is read from /proc), fastmcp's session-state store (the
    warm-up imports it after the handshake)."""
    loaded = modules_after("from shared.config import load_config\n"
                           "from gateway.server import build_server\n"
                           "from gateway.stdio import run_stdio\n"
                           "build_server(load_config())\n", base_env(tmp_path))
    assert {"fastmcp", "gateway"} <= loaded
    later = loaded & {"griffe", "filelock", "psutil", "key_value", "beartype"}
    assert not later, later
