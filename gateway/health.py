"""Health probes: one per component, run concurrently, each with a latency and a reason.

Each worker is probed by the job it is there for, not by a ping: the store answers a real read
of its tables (``StoreStats``), the embed pool embeds a short text (one unit vector of the right
length comes back), the quality worker runs its cheapest real job (``ProbeTools``). A component
that answers wrongly is "degraded" with the reason; one that answers with an error or not at all
is "unhealthy".
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

from shared import protocol as p
from shared.client import HubClient
from shared.config import Config
from shared.errors import ServiceError

Status = Literal["healthy", "degraded", "unhealthy"]
PROBE_TIMEOUT_S = 2.0
QUALITY_PROBE_TIMEOUT_S = 5.0  # it runs five tools' --version (~0.1-0.4 s, more under load)
PROBE_TEXT = "sessiond health check: embed this sentence"


@dataclass
class ComponentHealth:
    name: str
    status: Status
    latency_ms: float
    reason: str


def overall(components: list[ComponentHealth]) -> Status:
    states = {c.status for c in components}
    if "unhealthy" in states:
        return "unhealthy"
    return "degraded" if "degraded" in states else "healthy"


async def _timed(name: str, probe) -> ComponentHealth:
    t0 = time.perf_counter()
    try:
        status, reason = await probe()
    except ServiceError as exc:
        status, reason = "unhealthy", f"{exc.code}: {exc.message}"
    except OSError as exc:
        status, reason = "unhealthy", f"{type(exc).__name__}: {exc}"
    return ComponentHealth(name, status, round((time.perf_counter() - t0) * 1000, 2), reason)


async def probe_python() -> tuple[Status, str]:
    v = sys.version_info
    version = f"Python {v.major}.{v.minor}.{v.micro}"
    return ("healthy", version) if v >= (3, 11) else ("unhealthy", f"{version}: needs 3.11+")


def _write_probe(home: str) -> None:
    with tempfile.NamedTemporaryFile(dir=home, prefix=".health-", delete=True) as f:
        f.write(b"ok")
        f.flush()
        os.fsync(f.fileno())


async def probe_data_dir(cfg: Config) -> tuple[Status, str]:
    await asyncio.to_thread(_write_probe, cfg.home)
    return "healthy", f"{cfg.home} is writable"


async def _ask(client: HubClient, service: str, body: p.RequestBody,
               timeout_s: float = PROBE_TIMEOUT_S) -> p.ReplyBody:
    # A worker restarting right now gets the probe's whole timeout to come back.
    return await client.request(service, body, timeout_s=timeout_s, idempotent=True,
                                retry_unavailable=True)


async def probe_hub(client: HubClient) -> tuple[Status, str]:
    pong = await _ask(client, p.SERVICE_HUB, p.Ping())  # routing a request is its job
    if not isinstance(pong, p.Pong):
        return "degraded", f"the hub answered a ping with {type(pong).__name__}"
    return pong.health, pong.reason or f"pid {pong.pid}, up {pong.uptime_s:.0f}s"


async def probe_store(client: HubClient) -> tuple[Status, str]:
    reply = await _ask(client, p.SERVICE_STORE, p.StoreStats())
    data = reply.data if isinstance(reply, p.StoreInfo) else {}
    memories, pending = data.get("memories"), data.get("pending_embeddings")
    if not isinstance(memories, int) or not isinstance(pending, int):
        return "degraded", f"the store's stats read gave no counts ({type(reply).__name__})"
    reason = f"read {memories} memories ({pending} waiting for vectors)"
    filler = data.get("embed_filler") or {}
    if filler.get("running") is False:
        return "degraded", (f"{reason}; the embed filler is not running "
                            f"({filler.get('last_error') or 'no error recorded'})")
    return "healthy", reason


async def probe_embed(client: HubClient) -> tuple[Status, str]:
    reply = await _ask(client, p.SERVICE_EMBED, p.Embed(texts=[PROBE_TEXT], kind="query"))
    if not isinstance(reply, p.Vectors):
        return "degraded", f"the embed pool answered {type(reply).__name__}, not vectors"
    if (reply.count, reply.dim) != (1, p.EMBEDDING_DIM) or len(reply.data) != 4 * reply.dim:
        return "degraded", (f"expected 1 vector of {p.EMBEDDING_DIM} floats, got {reply.count} x "
                            f"{reply.dim} in {len(reply.data)} bytes ({reply.model_id})")
    values = struct.unpack(f"<{reply.dim}f", reply.data)
    norm = math.sqrt(math.fsum(v * v for v in values))
    if not all(math.isfinite(v) for v in values) or abs(norm - 1.0) > 1e-3:
        return "degraded", f"the vector is not unit length (norm {norm:.4g}; {reply.model_id})"
    return "healthy", f"{reply.model_id}: a {reply.dim}-float unit vector"


async def probe_quality(client: HubClient) -> tuple[Status, str]:
    reply = await _ask(client, p.SERVICE_QUALITY, p.ProbeTools(), QUALITY_PROBE_TIMEOUT_S)
    tools = {t.name: t for t in reply.tools} if isinstance(reply, p.ToolsReport) else {}
    if set(tools) != set(p.PROBED_TOOLS):
        return "degraded", (f"the tool probe answered {type(reply).__name__} for "
                            f"{sorted(tools)}, not {list(p.PROBED_TOOLS)}")
    reason = "; ".join(t.version or f"{t.name}: {t.error}" for t in tools.values())
    if not tools["git"].version:  # checkpoints and project health are git
        return "degraded", f"git is not usable: {reason}"
    return "healthy", reason


async def check_all(cfg: Config, client: HubClient) -> list[ComponentHealth]:
    probes = [
        ("python", probe_python),
        ("data_dir", lambda: probe_data_dir(cfg)),
        ("hub", lambda: probe_hub(client)),
        (p.SERVICE_STORE, lambda: probe_store(client)),
        (p.SERVICE_EMBED, lambda: probe_embed(client)),
        (p.SERVICE_QUALITY, lambda: probe_quality(client)),
    ]
    return list(await asyncio.gather(*(_timed(name, probe) for name, probe in probes)))
