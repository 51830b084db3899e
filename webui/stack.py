"""The stack page: the supervisor and every worker as the hub sees them (state, pid, restarts,
heartbeat age, requests in hand, latency percentiles, memory), the queue and the embedding
backlog; the page refreshes itself (``?partial=1`` is its live part)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from gateway.metrics_tool import rss_of
from shared import protocol as p
from shared.worker import LATENCY_WINDOW

REFRESH_S = 2  # how often the page's script asks for the live part again
OWN_STATS = ("requests_answered", "rss_bytes", "latency_p50_ms", "latency_p95_ms",
             "latency_p99_ms", "latency_max_ms", "latency_window")


async def page(request: Request) -> Response:
    ui = request.app.state.ui
    info = await ui.gw.call(p.SERVICE_HUB, p.StackStatus(), timeout_s=5.0)
    store = next((w for w in info.workers if w.service == p.SERVICE_STORE), None)
    stats = store.stats if store is not None else {}
    context = {
        "info": info, "own_stats": OWN_STATS, "supervisor_rss": rss_of(info.pid),
        "memories": stats.get("memories"), "embed_pending": stats.get("embed_pending"),
        "refreshed": datetime.now(ui.tz).strftime("%H:%M:%S"), "refresh_s": REFRESH_S,
        "latency_window": LATENCY_WINDOW,
        "now": datetime.now(UTC)}
    if request.query_params.get("partial") == "1":
        return ui.render(request, "_stack.html", **context)
    return ui.render(request, "stack.html", title="Stack", active="stack", **context)
