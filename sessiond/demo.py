"""``sessiond demo``: start the stack, call every tool that exists through a real MCP client
over stdio, print what comes back, and stop the stack again if the demo started it."""

from __future__ import annotations

import asyncio
import json
import time

from gateway.stack_control import stack_process, stop_stack
from sessiond.mcp_client import connect, result_payload
from shared.config import Config


async def _wait_for_embeddings(client, timeout_s: float = 30.0) -> None:
    """Stores return before their vectors exist; wait so the demo search is by meaning."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = result_payload(await client.call_tool("reflection_stats", {}))
        if stats.get("pending_embeddings") == 0:
            return
        await asyncio.sleep(0.1)


async def _answer_yes(message, response_type, params, context) -> dict:
    """The demo's user: deleting the demo's own memories needs permission (critical); the
    server asks through MCP elicitation, and the demo says yes, showing the question."""
    print(f"\n== the server asks the user: {message}\n   (the demo answers: yes, this once)")
    return {"value": "yes"}


def _show(title: str, payload) -> None:
    print(f"\n== {title}")
    print(payload if isinstance(payload, str) else json.dumps(payload, indent=2))


async def run_demo(cfg: Config) -> int:
    was_running = stack_process(cfg) is not None
    print(f"sessiond demo: data dir {cfg.home}")
    t0 = time.perf_counter()
    failures = 0
    async with connect(cfg, elicitation_handler=_answer_yes) as client:
        tools = await client.list_tools()
        print(f"connected over MCP stdio in {time.perf_counter() - t0:.2f}s; "
              f"{len(tools)} tools: {', '.join(t.name for t in tools)}")
        for name, args in demo_calls():
            if name == "wait_for_embeddings":
                await _wait_for_embeddings(client)
                continue
            result = await client.call_tool(name, args, raise_on_error=False)
            failures += bool(result.is_error)
            _show(f"{name} {json.dumps(args)}" + ("  [tool error]" if result.is_error else ""),
                  result_payload(result))
    if not was_running:
        stop_stack(cfg)
        print("\nstack stopped (the demo started it)")
    return 1 if failures else 0


DEMO_PROJECT = "sessiond-demo"


def demo_calls() -> list[tuple[str, dict]]:
    """Every kind of tool once; the demo's memories live in their own project and are deleted
    at the end, so running the demo on your real data dir leaves nothing behind."""
    store = [
        "The deployment pipeline broke because the Docker image ran out of disk space",
        "parse_config_v2 returns None when the YAML file is indented with tabs",
        "ECONNREFUSED 127.0.0.1:5432 during migrations: postgres was not started",
    ]
    return [
        ("ping", {}), ("status", {}), ("health_check", {}),
        *[("store_reflection", {"content": t, "project": DEMO_PROJECT, "tags": ["demo"]})
          for t in store],
        ("wait_for_embeddings", {}),
        ("quick_search", {"query": "CI release job failed: container storage was full",
                          "project": DEMO_PROJECT, "limit": 2}),
        ("search_errors", {"error_type": "ECONNREFUSED", "project": DEMO_PROJECT}),
        ("search_temporal", {"time_expression": "today", "project": DEMO_PROJECT, "limit": 3}),
        ("reflection_stats", {}),
        ("delete_memories", {"project": DEMO_PROJECT}),
    ]
