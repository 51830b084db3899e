"""Foreground latency while the store's embed filler backfills a large import.

A stack serves a data dir of ``--memories`` memories (random unit vectors, written before it
starts, so nothing is pending). Two Python MCP clients, each spawning ``sessiond serve``
(the minimal JSON-RPC client of ``bench/mcp_raw.py``, then ``fastmcp.Client``, which adds 1-4 ms
of its own CPU per call validating results), then measure ``store_reflection`` acks and
``quick_search`` answers, one call at a time, store and search alternating, twice in the same
run:

1. **quiet**: no backlog;
2. **busy**: right after ``--backlog`` distinct ~60-token texts were sent to the store with
   ``RememberMany`` (what ``sessiond import`` does), so the filler is embedding thousands of rows
   on every embed worker. The pending count is read before and after the measured calls: the
   backlog must still be there when the last call is made, or the figures say nothing.

A bare hub client also times single query embeddings (``Embed(kind="query")``) in both phases:
the part of a search that waits behind bulk batches. Each search query is distinct (no
query-cache hit). Prints p50/p95 per phase and the busy/quiet ratios, the load average, and
the embed workers' counters.

Usage: ``uv run python -m bench.busy_latency [--memories 1000] [--backlog 3000] [--calls 40]``
(about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.cpu_meter import CpuMeter
from bench.embed_raw import medium_texts
from bench.harness import REPO, machine, percentiles, running_stack
from bench.mcp_raw import RawMcpClient
from bench.workload import Corpus, populate
from shared import protocol as p
from shared.client import HubClient
from shared.transport import endpoints

WARMUP = 5
BULK_BATCH = 500
TARGETS_MS = {"store_reflection": 5.0, "quick_search": 15.0}  # p50 while busy (issue 10)


def _client(env: dict[str, str]):
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    transport = StdioTransport(sys.executable, ["-m", "sessiond", "serve"], env=env,
                               cwd=str(REPO), keep_alive=False)
    return Client(transport, timeout=120, init_timeout=60)


async def _pending(hub: HubClient) -> int:
    return (await hub.request(p.SERVICE_STORE, p.StoreStats())).data["pending_embeddings"]


async def _fastmcp_tool(client, name: str, args: dict) -> None:
    result = await client.call_tool(name, args, raise_on_error=False)
    if result.is_error:
        raise RuntimeError(f"{name} failed: {result.content}")


async def _pairs(call, corpus: Corpus, calls: int) -> dict:
    """``calls`` store/search pairs after ``WARMUP``; ``call(name, args)`` makes one call."""
    now = datetime.now(UTC)
    queries = corpus.queries(WARMUP + calls)
    out: dict[str, list[float]] = {"store_reflection": [], "quick_search": []}
    for i in range(WARMUP + calls):
        item = corpus.item(now)
        for name, args in (("store_reflection", {"content": item["content"],
                                                 "project": item["project"]}),
                           ("quick_search", {"query": queries[i]})):
            t0 = time.perf_counter()
            await call(name, args)
            if i >= WARMUP:
                out[name].append(time.perf_counter() - t0)
    return {name: percentiles(samples) for name, samples in out.items()}


async def measure(clients: dict, hub: HubClient, corpus: Corpus, calls: int) -> dict:
    """Store/search pairs through each client, then ``calls`` query embeddings via the hub."""
    pending_before = await _pending(hub)
    meter = CpuMeter()
    out: dict = {name: await _pairs(call, corpus, calls) for name, call in clients.items()}
    embeds = []
    for i in range(calls):
        t0 = time.perf_counter()
        await hub.request(p.SERVICE_EMBED, p.Embed(texts=[f"embed probe {i} {corpus.query()}"],
                                                   kind="query"))
        embeds.append(time.perf_counter() - t0)
    return out | {"pending_before": pending_before, "pending_after": await _pending(hub),
                  "embed_query_via_hub": percentiles(embeds), "cpu": meter.stop(),
                  "load_avg_1m": round(os.getloadavg()[0], 2)}


async def _send_backlog(hub: HubClient, texts: list[str]) -> float:
    items = [p.Remember(kind="conversation", content=t, project=f"import-{i % 5}")
             for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    for lo in range(0, len(items), BULK_BATCH):
        reply = await hub.request(p.SERVICE_STORE, p.RememberMany(items=items[lo:lo + BULK_BATCH]))
        assert isinstance(reply, p.StoredMany), reply
    return time.perf_counter() - t0


async def _wait_drained(hub: HubClient, timeout_s: float) -> float:
    t0 = time.perf_counter()
    while await _pending(hub) and time.perf_counter() - t0 < timeout_s:
        await asyncio.sleep(0.2)
    return time.perf_counter() - t0


async def run(env: dict[str, str], cfg, args) -> dict:
    corpus = Corpus(seed=23)
    hub = HubClient(endpoints(cfg).clients, default_timeout_s=120)
    out: dict = {}
    try:
        async with RawMcpClient(env, REPO) as raw, _client(env) as fast:
            clients = {"raw": raw.call_tool,
                       "fastmcp": lambda name, args: _fastmcp_tool(fast, name, args)}
            out["quiet"] = await measure(clients, hub, corpus, args.calls)
            await _wait_drained(hub, 60)  # the quiet phase's own stores
            texts = medium_texts(args.backlog, seed=91)
            out["backlog_acked_s"] = round(await _send_backlog(hub, texts), 2)
            out["busy"] = await measure(clients, hub, corpus, args.calls)
            out["drain_s"] = round(await _wait_drained(hub, 600), 1)
        info = await hub.request(p.SERVICE_HUB, p.StackStatus())
        out["embed_workers"] = {w.name: w.stats for w in info.workers
                                if w.service == p.SERVICE_EMBED}
    finally:
        hub.close()
    return out


def _pq(d: dict) -> str:
    return f"{d['p50_ms']:7.2f} / {d['p95_ms']:7.2f}"


def _row(name: str, phase: dict) -> str:
    cells = [_pq(phase[c][t]) for c in ("raw", "fastmcp")
             for t in ("store_reflection", "quick_search")]
    cells.append(_pq(phase["embed_query_via_hub"]))
    return (f"  {name:6s} {' | '.join(cells)} | pending {phase['pending_before']:>5} -> "
            f"{phase['pending_after']:>5} | load {phase['load_avg_1m']:.2f}, other "
            f"{phase['cpu']['other_cores']:.2f} cores")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memories", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=3000)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings of the stack (e.g. embed_workers=2 embed_bulk_lanes=1)")
    args = ap.parse_args(argv)
    settings = dict(pair.split("=", 1) for pair in args.set)
    base = Path(tempfile.mkdtemp(prefix="sd-busy-"))
    try:
        populate(base / "memory.duckdb", args.memories, Corpus(seed=5), engine_calls=1)
        with running_stack(base, **settings) as stack:
            out = asyncio.run(run(stack.env, stack.cfg, args))
            out["cold_start_s"] = round(stack.cold_start_s, 2)
            out["embed_workers_configured"] = stack.cfg.embed_workers
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out["machine"] = machine()
    out["args"] = vars(args) | {"json": str(args.json) if args.json else None}
    print(f"machine: {out['machine']}; {out['embed_workers_configured']} embed workers; "
          f"{args.memories} memories, backlog {args.backlog} texts (acked in "
          f"{out['backlog_acked_s']} s, drained {out['drain_s']} s after the busy phase)")
    print("  p50 / p95 ms  raw: store_reflection | quick_search | fastmcp: store_reflection | "
          "quick_search | embed query via hub")
    print(_row("quiet", out["quiet"]))
    print(_row("busy", out["busy"]))
    for client in ("raw", "fastmcp"):
        for key, target in TARGETS_MS.items():
            q, b = out["quiet"][client][key]["p50_ms"], out["busy"][client][key]["p50_ms"]
            verdict = "pass" if b <= target else "FAIL"
            print(f"  {client} {key}: busy / quiet p50 = {b / q:.2f} (busy p50 {b:.2f}, "
                  f"target <= {target:g} ms: {verdict})")
    q, b = out["quiet"]["embed_query_via_hub"]["p50_ms"], out["busy"]["embed_query_via_hub"][
        "p50_ms"]
    print(f"  embed query via hub: busy / quiet p50 = {b / q:.2f}")
    if not out["busy"]["pending_after"]:
        print("  WARNING: the backlog drained before the busy phase ended; raise --backlog")
    print(f"  embed workers: {out['embed_workers']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
