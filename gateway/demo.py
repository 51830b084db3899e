"""``sessiond demo``: start the stack, call every tool that exists through a real MCP client
over stdio, print what comes back, and stop the stack again if the demo started it."""

from __future__ import annotations

import json
import time

from gateway.mcp_client import connect, result_payload
from gateway.stack_control import stack_process, stop_stack
from shared.config import Config


def _show(title: str, payload) -> None:
    print(f"\n== {title}")
    print(payload if isinstance(payload, str) else json.dumps(payload, indent=2))


async def run_demo(cfg: Config) -> int:
    was_running = stack_process(cfg) is not None
    print(f"sessiond demo: data dir {cfg.home}")
    t0 = time.perf_counter()
    failures = 0
    async with connect(cfg) as client:
        tools = await client.list_tools()
        print(f"connected over MCP stdio in {time.perf_counter() - t0:.2f}s; "
              f"{len(tools)} tools: {', '.join(t.name for t in tools)}")
        for name, args in demo_calls():
            result = await client.call_tool(name, args, raise_on_error=False)
            failures += bool(result.is_error)
            _show(f"{name} {json.dumps(args)}" + ("  [tool error]" if result.is_error else ""),
                  result_payload(result))
    if not was_running:
        stop_stack(cfg)
        print("\nstack stopped (the demo started it)")
    return 1 if failures else 0


def demo_calls() -> list[tuple[str, dict]]:
    return [("ping", {}), ("status", {}), ("health_check", {})]
