"""The ``metrics`` tool: tool calls of every gateway of this data dir and the stack's workers,
as JSON or in the Prometheus text format (``gateway.metrics`` counts the calls)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from gateway.described import tool
from gateway.metrics import percentiles
from shared import protocol as p
from shared.version import VERSION

READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}
WORKER_STATS = ("requests_answered", "rss_bytes", "latency_p50_ms", "latency_p95_ms",
                "latency_p99_ms")


@dataclass
class ToolMetrics:
    calls: int
    errors: int
    latency_ms: dict[str, float]  # p50, p95, p99 over the last calls of each gateway


@dataclass
class WorkerMetrics:
    name: str
    service: str
    pid: int | None
    state: str
    restarts: int
    heartbeat_age_s: float | None
    requests_answered: int | None
    rss_bytes: int | None
    latency_ms: dict[str, float]


@dataclass
class MetricsResult:
    version: str
    stack_uptime_s: float
    gateways: int  # gateways whose calls are counted (this one included)
    tools: dict[str, ToolMetrics]
    workers: list[WorkerMetrics]
    embedding_backlog: int | None  # memories waiting for their vectors
    memories: int | None
    requests_total: int
    requests_failed: int
    requests_timed_out: int
    queued: int
    supervisor_rss_bytes: int | None  # None when the stack runs on another machine
    gateway_rss_bytes: int
    prometheus: str | None = None  # the same, in the Prometheus text format, when asked


def rss_of(pid: int | None) -> int | None:
    """Resident memory of a local process, None when it cannot be read (gone, not ours)."""
    import psutil  # here: a gateway starts without it

    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


async def collect(gateway, calls) -> MetricsResult:
    info = await gateway.call(p.SERVICE_HUB, p.StackStatus(), timeout_s=5.0)
    if not isinstance(info, p.StackInfo):
        raise ToolError(f"unexpected status reply {type(info).__name__}")
    counted, tools = calls.all_gateways(since=time.time() - info.uptime_s)
    workers = []
    store: dict[str, Any] = {}
    for w in info.workers:
        if w.service == p.SERVICE_STORE:
            store = w.stats
        workers.append(WorkerMetrics(
            name=w.name, service=w.service, pid=w.pid, state=w.state, restarts=w.restarts,
            heartbeat_age_s=w.last_heartbeat_age_s,
            requests_answered=_int(w.stats.get("requests_answered")),
            rss_bytes=_int(w.stats.get("rss_bytes")),
            latency_ms={q: float(w.stats[f"latency_{q}_ms"]) for q in ("p50", "p95", "p99")
                        if f"latency_{q}_ms" in w.stats}))
    local_stack = not gateway.cfg.hub_host
    return MetricsResult(
        version=VERSION, stack_uptime_s=round(info.uptime_s, 1), gateways=counted,
        tools={name: ToolMetrics(calls=t["calls"], errors=t["errors"],
                                 latency_ms=percentiles(t["latencies_ms"]))
               for name, t in sorted(tools.items())},
        workers=workers, embedding_backlog=_int(store.get("embed_pending")),
        memories=_int(store.get("memories")), requests_total=info.requests_total,
        requests_failed=info.requests_failed, requests_timed_out=info.requests_timed_out,
        queued=info.queued, supervisor_rss_bytes=rss_of(info.pid) if local_stack else None,
        gateway_rss_bytes=rss_of(os.getpid()) or 0)


def _int(value) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus(m: MetricsResult) -> str:
    """The metrics in the Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        if not samples:
            return
        out.append(f"# HELP sessiond_{name} {help_text}")
        out.append(f"# TYPE sessiond_{name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            out.append(f"sessiond_{name}{{{text}}} {value}" if text else f"sessiond_{name} {value}")

    family("tool_calls_total", "counter", "Tool calls since the stack started.",
           [({"tool": n}, t.calls) for n, t in m.tools.items()])
    family("tool_errors_total", "counter", "Tool calls that ended in an error.",
           [({"tool": n}, t.errors) for n, t in m.tools.items()])
    family("tool_latency_ms", "gauge", "Tool call latency percentiles over recent calls.",
           [({"tool": n, "quantile": q}, v) for n, t in m.tools.items()
            for q, v in t.latency_ms.items()])
    family("worker_up", "gauge", "1 when the worker is ready or busy.",
           [({"worker": w.name, "service": w.service}, int(w.state in ("ready", "busy")))
            for w in m.workers])
    family("worker_restarts_total", "counter", "Restarts of the worker's slot.",
           [({"worker": w.name, "service": w.service}, w.restarts) for w in m.workers])
    family("worker_rss_bytes", "gauge", "Resident memory of the worker process.",
           [({"worker": w.name, "service": w.service}, w.rss_bytes) for w in m.workers
            if w.rss_bytes is not None])
    family("worker_requests_answered_total", "counter", "Requests the worker answered.",
           [({"worker": w.name, "service": w.service}, w.requests_answered)
            for w in m.workers if w.requests_answered is not None])
    family("worker_latency_ms", "gauge", "Worker latency percentiles (arrival to reply).",
           [({"worker": w.name, "service": w.service, "quantile": q}, v)
            for w in m.workers for q, v in w.latency_ms.items()])
    family("embedding_backlog", "gauge", "Memories waiting for their vectors.",
           [({}, m.embedding_backlog)] if m.embedding_backlog is not None else [])
    family("memories", "gauge", "Memories in the store.",
           [({}, m.memories)] if m.memories is not None else [])
    family("hub_requests_total", "counter", "Requests through the hub.",
           [({"outcome": "all"}, m.requests_total), ({"outcome": "failed"}, m.requests_failed),
            ({"outcome": "timed_out"}, m.requests_timed_out)])
    family("hub_queued", "gauge", "Requests waiting for a worker.", [({}, m.queued)])
    family("process_rss_bytes", "gauge", "Resident memory of the supervisor and this gateway.",
           ([({"process": "supervisor"}, m.supervisor_rss_bytes)]
            if m.supervisor_rss_bytes is not None else [])
           + [({"process": "gateway"}, m.gateway_rss_bytes)])
    family("stack_uptime_seconds", "gauge", "Seconds since the stack started.",
           [({}, m.stack_uptime_s)])
    return "\n".join(out) + "\n"


def register(mcp: FastMCP, gateway, calls) -> None:
    @tool(mcp, annotations=READ_ONLY)
    async def metrics(
        format: Annotated[Literal["json", "prometheus"], Field(
            description="json: structured fields; prometheus: the same also as Prometheus "
                        "text in `prometheus`")] = "json",
    ) -> MetricsResult:
        """Counters of this machine's sessiond: per-tool calls, errors and latency percentiles
        (every gateway of the data dir, since the stack started), each worker's state,
        restarts, latency and memory, the embedding backlog and the hub's request counters."""
        result = await collect(gateway, calls)
        if format == "prometheus":
            result.prometheus = prometheus(result)
        return result
