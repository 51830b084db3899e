"""Metrics: what the ``metrics`` tool and ``sessiond metrics`` report, as JSON or in the
Prometheus text format.

* **Tool calls** are counted by each gateway (``ToolCalls``, fed by ``CountingMiddleware``):
  calls, errors and the latency of the last ``WINDOW`` calls per tool. Every gateway of a data
  dir writes its counts to ``<run>/metrics/gateway-<pid>.json`` every ``FLUSH_S`` seconds (and
  when it stops), so any of them can report the calls of all: the files written since the stack
  started are added up, their latency samples pooled. Counts are per data dir (the gateways on
  this machine), since the stack's start.
* **The stack** comes from the hub's status: each worker's state, restarts, heartbeat age,
  latency percentiles, requests answered and resident memory (from its heartbeats), the store's
  embedding backlog, the hub's request counters; the supervisor's resident memory is read
  locally when it runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastmcp.server.middleware import Middleware

from shared.config import Config

log = logging.getLogger("sessiond.gateway.metrics")

WINDOW = 512  # latency samples kept per tool and gateway
MAX_TOOLS = 64  # names counted apart; calls of any other name (unknown tools) go to "(other)"
FLUSH_S = 5.0
STALE_S = 7 * 86_400  # files of gateways gone this long are removed by the next gateway


@dataclass
class ToolStats:
    calls: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors,
                "latencies_ms": [round(x, 3) for x in self.latencies_ms]}


class ToolCalls:
    """This gateway's tool calls, and the file other gateways read them from."""

    def __init__(self, cfg: Config) -> None:
        self.folder = Path(cfg.run_dir) / "metrics"
        self.file = self.folder / f"gateway-{os.getpid()}.json"
        self.tools: dict[str, ToolStats] = {}
        self.changed = False

    def record(self, tool: str, seconds: float, failed: bool) -> None:
        if tool not in self.tools and len(self.tools) >= MAX_TOOLS:
            tool = "(other)"
        stats = self.tools.setdefault(tool, ToolStats())
        stats.calls += 1
        stats.errors += failed
        stats.latencies_ms.append(seconds * 1000)
        self.changed = True

    def snapshot(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "written": time.time(),
                "tools": {name: s.to_json() for name, s in self.tools.items()}}

    def write(self) -> None:
        """Replace this gateway's file atomically (readers never see half of it)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()), encoding="utf-8")
        tmp.replace(self.file)
        self.changed = False

    def remove_stale(self) -> None:
        cutoff = time.time() - STALE_S
        for path in self.folder.glob("gateway-*.json"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    async def keep_written(self) -> None:
        """Write the file when something changed, every ``FLUSH_S``; a failure to write is
        logged with its traceback and tried again at the next turn (the counts stay in memory
        meanwhile)."""
        with contextlib.suppress(OSError):
            self.remove_stale()
        try:
            while True:
                await asyncio.sleep(FLUSH_S)
                if self.changed:
                    try:
                        self.write()
                    except Exception:  # logged with its traceback; the next turn tries again
                        log.exception("cannot write %s", self.file)
        finally:
            if self.changed:
                with contextlib.suppress(OSError):
                    self.write()

    def all_gateways(self, since: float) -> tuple[int, dict[str, dict[str, Any]]]:
        """Every gateway's counts written since ``since`` (epoch seconds), this one's as they
        are now: (gateways counted, per tool: calls, errors and pooled latency samples)."""
        snapshots = [self.snapshot()]
        for path in sorted(self.folder.glob("gateway-*.json")):
            if path == self.file:
                continue
            try:
                if path.stat().st_mtime < since:
                    continue
                snapshots.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:  # written by a gateway that died mid-way
                log.info("skipped %s: %s", path, exc)
        tools: dict[str, dict[str, Any]] = {}
        for snap in snapshots:
            for name, s in snap.get("tools", {}).items():
                into = tools.setdefault(name, {"calls": 0, "errors": 0, "latencies_ms": []})
                into["calls"] += int(s.get("calls", 0))
                into["errors"] += int(s.get("errors", 0))
                into["latencies_ms"] += [float(x) for x in s.get("latencies_ms", [])]
        return len(snapshots), tools


class CountingMiddleware(Middleware):
    """Counts every tool call: its time, and whether it ended in an error."""

    def __init__(self, calls: ToolCalls) -> None:
        self.calls = calls

    async def on_call_tool(self, context, call_next):
        t0 = time.perf_counter()
        failed = True
        try:
            result = await call_next(context)
            failed = bool(getattr(result, "is_error", False))
            return result
        finally:
            self.calls.record(context.message.name, time.perf_counter() - t0, failed)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ms = sorted(samples)
    last = len(ms) - 1
    return {name: round(ms[round(q * last)], 3)
            for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))}
