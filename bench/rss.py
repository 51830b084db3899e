"""Memory of the whole stack per process: at rest, under load, and at rest after a bulk import.

For each variant (the settings as they are now, then the ones named by ``--before``), a fresh
stack serves a data dir of ``--memories`` memories (random unit vectors written before it
starts) with the default number of embed workers, and one gateway is connected through the raw
JSON-RPC client of ``bench/mcp_raw.py``. RSS (and PSS, which splits shared pages between the
processes that share them, so its sum is what the stack really holds) of every server process
is read:

1. **rest**: every worker ready, a few seconds after the gateway connected;
2. **load**: the highest total sampled (every 100 ms) while the client makes ``--stores``
   ``store_reflection`` calls then ``--searches`` ``quick_search`` calls (the embed filler
   backfilling the stores meanwhile, as in issue 10's comparison);
3. **after bulk**: ``--bulk`` ~60-token texts sent with ``RememberMany``, every vector written,
   then ``--settle`` seconds of rest;
4. **rest again**: once the embed workers started for the backlog are parked again
   (``embed_park_after_s``, 30 s by default; ``--now`` sets it, e.g. ``embed_park_after_s=5``).

The comparison run (``--before``, default: the embed pool as it was before bulk lanes, i.e. a
second embed worker process started for a backlog and one bulk lane each) runs the same steps
in the same run.

Usage: ``uv run python -m bench.rss [--now k=v ...] [--before k=v ...] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import psutil

from bench.busy_latency import _send_backlog, _wait_drained
from bench.embed_raw import medium_texts
from bench.harness import REPO, machine, running_stack
from bench.mcp_raw import RawMcpClient
from bench.workload import Corpus, populate
from shared import protocol as p
from shared.client import HubClient
from shared.transport import endpoints

MB = 2**20


class Roles:
    """The server's processes by name, read afresh each time (embed workers come and go)."""

    def __init__(self, stack_pid: int, gateway_pid: int) -> None:
        self.supervisor, self.gateway = psutil.Process(stack_pid), psutil.Process(gateway_pid)

    def now(self) -> dict[str, psutil.Process]:
        out = {"supervisor": self.supervisor, "gateway": self.gateway}
        for child in self.supervisor.children():
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if "--name" in cmd:
                out[cmd[cmd.index("--name") + 1]] = child
        return out


def _sample(roles: Roles) -> dict[str, dict[str, float]]:
    out = {}
    for name, proc in roles.now().items():
        try:
            full = proc.memory_full_info()
            out[name] = {"rss_mb": round(full.rss / MB, 1), "pss_mb": round(full.pss / MB, 1)}
        except psutil.Error:
            out[name] = {"rss_mb": 0.0, "pss_mb": 0.0}
    out["total"] = {k: round(sum(v[k] for v in out.values()), 1) for k in ("rss_mb", "pss_mb")}
    return out


class PeakSampler:
    """The sample with the highest total RSS, taken every ``interval_s`` on a thread."""

    def __init__(self, roles: Roles, interval_s: float = 0.1) -> None:
        self.roles, self.interval_s = roles, interval_s
        self.peak: dict = {"total": {"rss_mb": 0.0}}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            s = _sample(self.roles)
            if s["total"]["rss_mb"] > self.peak["total"]["rss_mb"]:
                self.peak = s

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(env: dict[str, str], cfg, args) -> dict:
    corpus = Corpus(seed=29)
    hub = HubClient(endpoints(cfg).clients, default_timeout_s=120)
    out: dict = {}
    try:
        async with RawMcpClient(env, REPO) as client:
            pong = await client.call_tool("ping", {})
            roles = Roles(pong["stack_pid"], pong["gateway_pid"])
            await asyncio.sleep(args.settle)
            out["rest"] = _sample(roles)
            now = datetime.now(UTC)
            with PeakSampler(roles) as sampler:
                for _ in range(args.stores):
                    item = corpus.item(now)
                    await client.call_tool("store_reflection", {"content": item["content"],
                                                                "project": item["project"]})
                for q in corpus.queries(args.searches):
                    await client.call_tool("quick_search", {"query": q})
                await _wait_drained(hub, 300)
                await _send_backlog(hub, medium_texts(args.bulk, seed=43))
                await _wait_drained(hub, 900)
            out["load_peak"] = sampler.peak
            await asyncio.sleep(args.settle)
            out["after_bulk"] = _sample(roles)
            out["parked_after_s"] = await _wait_parked(hub, cfg)
            await asyncio.sleep(1)
            out["rest_again"] = _sample(roles)
    finally:
        hub.close()
    return out


async def _wait_parked(hub: HubClient, cfg) -> float | None:
    """Seconds until the embed workers beyond ``embed_workers_at_rest`` are parked again
    (None: nothing parks in this configuration, or not within the park time + 30 s)."""
    extra = cfg.embed_workers - min(cfg.embed_workers, cfg.embed_workers_at_rest)
    if extra == 0:
        return None
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < cfg.embed_park_after_s + 30:
        info = await hub.request(p.SERVICE_HUB, p.StackStatus())
        if sum(w.state == "parked" for w in info.workers) == extra:
            return round(time.perf_counter() - t0, 1)
        await asyncio.sleep(0.5)
    return None


def _settings(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--now", nargs="*", default=[], help="settings (key=value) of the first run")
    ap.add_argument("--before", nargs="*",
                    default=["embed_workers=2", "embed_bulk_lanes=1"],
                    help="settings (key=value) of the comparison run; none: no comparison")
    ap.add_argument("--memories", type=int, default=1000)
    ap.add_argument("--stores", type=int, default=300)
    ap.add_argument("--searches", type=int, default=50)
    ap.add_argument("--bulk", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    variants = {"now" + (" (" + ", ".join(args.now) + ")" if args.now else ""):
                _settings(args.now)}
    if args.before:
        variants["before (" + ", ".join(args.before) + ")"] = _settings(args.before)
    results: dict = {"machine": machine(), "load_avg_start": os.getloadavg()[0], "variants": {}}
    for name, settings in variants.items():
        base = Path(tempfile.mkdtemp(prefix="sd-rss-"))
        try:
            populate(base / "memory.duckdb", args.memories, Corpus(seed=5), engine_calls=1)
            with running_stack(base, idle_timeout_s=600, **settings) as stack:
                results["variants"][name] = asyncio.run(measure(stack.env, stack.cfg, args))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        time.sleep(1)
    results["load_avg_end"] = os.getloadavg()[0]
    print(f"machine: {results['machine']}; load average {results['load_avg_start']:.2f} -> "
          f"{results['load_avg_end']:.2f}")
    for name, res in results["variants"].items():
        print(f"{name}: RSS MB per process (PSS total)")
        for phase in ("rest", "load_peak", "after_bulk", "rest_again"):
            s = res[phase]
            procs = ", ".join(f"{k} {v['rss_mb']:.0f}" for k, v in s.items() if k != "total")
            print(f"  {phase:10s} total {s['total']['rss_mb']:6.0f} (PSS {s['total']['pss_mb']:5.0f})"
                  f" | {procs}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
