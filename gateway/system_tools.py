"""Tools about the server itself: ping, health_check; and the stack's part of ``status`` (the
tool, with the session's part, is in ``session_tools``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

from gateway.described import tool
from gateway.health import ComponentHealth, check_all, overall
from shared import protocol as p
from shared.version import VERSION

READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}


@dataclass
class PingResult:
    ok: bool
    version: str
    gateway_pid: int
    stack_pid: int
    round_trip_ms: float


@dataclass
class WorkerStatus:
    name: str
    service: str
    pid: int | None
    state: str
    restarts: int
    last_heartbeat_age_s: float | None
    inflight: int
    stats: dict[str, str | int | float | bool]


@dataclass
class StatusResult:
    version: str
    stack_pid: int
    uptime_s: float
    transport: str
    workers: list[WorkerStatus]
    queued: int
    requests_total: int
    requests_failed: int
    requests_timed_out: int
    malformed_dropped: int
    gateways: int
    idle_timeout_s: float  # 0: never idles out (a hub alone, `sessiond hub`)
    idle_s: float
    auth_refused: int  # peers the hub's CURVE/ZAP check refused
    gateway_pid: int
    data_dir: str
    query_cache: dict[str, float | int]  # this gateway's LRU of query vectors


@dataclass
class HealthResult:
    status: str
    components: list[ComponentHealth]


async def stack_status(gateway) -> StatusResult:
    """State of the stack: uptime, each worker's pid, state, restarts, heartbeat age and
    requests in hand, queue depth and request counters; this gateway's query-cache hits."""
    info = await gateway.call(p.SERVICE_HUB, p.StackStatus(), timeout_s=5.0)
    if not isinstance(info, p.StackInfo):
        raise ToolError(f"unexpected status reply {type(info).__name__}")
    workers = [WorkerStatus(**{f: getattr(w, f) for f in w.__struct_fields__})
               for w in info.workers]
    fields = {f: getattr(info, f) for f in info.__struct_fields__ if f not in ("pid", "workers")}
    return StatusResult(stack_pid=info.pid, workers=workers, gateway_pid=os.getpid(),
                        data_dir=gateway.cfg.home, query_cache=gateway.cache.stats(), **fields)


def register(mcp: FastMCP, gateway) -> None:
    @tool(mcp, annotations=READ_ONLY)
    async def ping() -> PingResult:
        """Check that the sessiond stack answers; returns versions, pids and the round trip."""
        t0 = time.perf_counter()
        pong = await gateway.call(p.SERVICE_HUB, p.Ping(), timeout_s=5.0)
        assert isinstance(pong, p.Pong)
        return PingResult(ok=True, version=VERSION, gateway_pid=os.getpid(), stack_pid=pong.pid,
                          round_trip_ms=round((time.perf_counter() - t0) * 1000, 3))

    @tool(mcp, annotations=READ_ONLY)
    async def health_check() -> HealthResult:
        """Probe each component concurrently (python runtime, data dir, hub, store, embed,
        quality): healthy, degraded or unhealthy, with latency and the reason."""
        components = await check_all(gateway.cfg, gateway.client)
        return HealthResult(status=overall(components), components=components)
