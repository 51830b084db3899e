"""Health probes: one per component, run concurrently, each with a latency and a reason."""

from __future__ import annotations

import asyncio
import os
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


async def probe_service(client: HubClient, service: str) -> tuple[Status, str]:
    # A worker restarting right now gets the probe's whole timeout to come back.
    pong = await client.request(service, p.Ping(), timeout_s=PROBE_TIMEOUT_S, idempotent=True,
                                retry_unavailable=True)
    assert isinstance(pong, p.Pong)
    reason = pong.reason or f"pid {pong.pid}, up {pong.uptime_s:.0f}s"
    return pong.health, reason


async def check_all(cfg: Config, client: HubClient) -> list[ComponentHealth]:
    probes = [
        ("python", probe_python),
        ("data_dir", lambda: probe_data_dir(cfg)),
        ("hub", lambda: probe_service(client, p.SERVICE_HUB)),
    ] + [(s, lambda s=s: probe_service(client, s)) for s in p.WORKER_SERVICES]
    return list(await asyncio.gather(*(_timed(name, probe) for name, probe in probes)))
