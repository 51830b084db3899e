"""The ``metrics`` tool and ``sessiond metrics``: tool calls counted by every gateway of a data
dir (each a process of its own), the workers as the hub sees them, JSON and Prometheus text.

A real stack, real gateways over MCP stdio, the real command line.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, call, call_error, gateway_client, private_stack

PROM_LINE = re.compile(r'^sessiond_[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+]+$')


@pytest.fixture(scope="module")
def sd():
    with private_stack() as (env, home):
        yield env, home


def test_calls_of_other_gateways_are_counted_with_errors_and_latency(sd):
    env, _ = sd

    async def first_window():  # a gateway that makes some calls, then goes away
        async with gateway_client(env) as client:
            for _ in range(3):
                await call(client, "ping")
            await call(client, "store_reflection", {"content": "Metrics count tool calls "
                                                    "per gateway and add them up.",
                                                    "project": "metrics"})
            await call_error(client, "get_memory", {"ids": []})

    async def second_window():
        async with gateway_client(env) as client:
            await call(client, "ping")
            return await call(client, "metrics")

    asyncio.run(first_window())
    m = asyncio.run(second_window())
    assert m["gateways"] >= 2
    tools = m["tools"]
    assert tools["ping"]["calls"] == 4 and tools["ping"]["errors"] == 0, tools
    assert tools["store_reflection"]["calls"] == 1
    assert tools["get_memory"] == {**tools["get_memory"], "calls": 1, "errors": 1}
    assert set(tools["ping"]["latency_ms"]) == {"p50", "p95", "p99"}
    assert 0 < tools["ping"]["latency_ms"]["p50"] <= tools["ping"]["latency_ms"]["p99"]
    ready = [w for w in m["workers"] if w["state"] == "ready"]
    assert {w["service"] for w in ready} == {"embed", "store"}, m["workers"]
    quality = next(w for w in m["workers"] if w["service"] == "quality")
    assert quality["state"] == "parked" and quality["restarts"] == 0  # no quality request yet
    for w in ready:
        assert w["rss_bytes"] > 10 * 2**20 and w["restarts"] == 0, w
    store = next(w for w in m["workers"] if w["service"] == "store")
    assert store["requests_answered"] >= 1 and store["latency_ms"]["p50"] > 0
    assert m["memories"] >= 1 and m["embedding_backlog"] >= 0
    assert m["supervisor_rss_bytes"] > 0 and m["gateway_rss_bytes"] > 0
    assert m["prometheus"] is None


def test_json_and_prometheus_text_from_the_command_line(sd):
    env, _ = sd
    done = subprocess.run([sys.executable, "-m", "sessiond", "metrics"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    assert {"tools", "workers", "embedding_backlog", "requests_total"} <= set(m)

    done = subprocess.run([sys.executable, "-m", "sessiond", "metrics", "--prometheus"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and all(PROM_LINE.match(line) for line in samples), samples
    for family, kind in (("tool_calls_total", "counter"), ("worker_up", "gauge"),
                         ("worker_rss_bytes", "gauge"), ("embedding_backlog", "gauge")):
        assert f"# TYPE sessiond_{family} {kind}" in lines, family
    assert 'sessiond_worker_up{worker="store",service="store"} 1' in lines
    assert any(line.startswith('sessiond_tool_calls_total{tool="metrics"} ') for line in lines)
