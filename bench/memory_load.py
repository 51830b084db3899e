"""Memory under load, end to end: MCP tool latency at 1k/100k memories, bulk import vs raw embedding.

    uv run python -m bench.memory_load [--sizes 1000,100000] [--with-1m] [--quick]

In one run it measures and prints, next to the bars of the issue (PASS/FAIL):

1. **MCP latency at N memories** (N = 1k and 100k; 1M only with ``--with-1m``): a real MCP
   client (``fastmcp.Client`` over stdio, spawning ``python -m sessiond serve``) calls
   ``store_reflection`` (distinct texts) and ``quick_search`` / ``reflect_on_past`` (distinct
   queries, every reply checked to be ``mode == "hybrid"``); the figure is the client-side wall
   time of each call (``time.perf_counter``), p50/p95. The first few calls of each tool are a
   warm-up and not counted. Searches start only once the store has embedded the stored
   reflections (no embedding competes with them); the stores themselves run while the embed
   filler embeds what they add, as in real use. For diagnosis only (no bars), it also shows
   where the time goes: the MCP ``ping`` tool (the MCP + gateway + hub floor), stores spaced
   100 ms apart (embed filler idle), the same operations with a bare ``HubClient`` (no MCP:
   query embedding, the store's search, a store write), the store engine in process
   (``MemoryStore.add``/``search`` before the stack starts), the disk's fsync, and the CPU each
   process (client = this benchmark, gateway, hub, store, embed, quality) spends per MCP call.

   **How the N memories get there.** Storing 100k memories through MCP one by one, and embedding
   100k texts with the real model, would take far longer than the benchmark. So before the
   stack starts (nothing else has the file open), the benchmark opens ``MemoryStore`` directly
   on ``<home>/memory.duckdb``, adds N synthetic but realistic memories (developer notes:
   errors, files, libraries, decisions) over 50 projects, created over the past year, and gives
   every one a **random unit vector** with ``set_embeddings``. Search latency depends on the
   size of the indexes (rows, terms, vectors), not on where the vectors came from; the query
   vectors, and the vectors of everything stored during the run, come from the real model. The
   stack then opens that data dir; nothing is left pending for the embed filler (checked).

2. **Bulk import vs raw embedding** on the same 3000 distinct medium texts (~60 tokens):
   (a) raw ``Embedder.embed`` in this process (``bench.embed_raw.raw_throughput``), 1 and 2
   intra-op threads, the best; (b) a fresh stack (2 embed workers x 1 thread) fed by a
   ``HubClient`` with ``RememberMany`` batches of 500, timed from the first send until the store
   reports 0 pending embeddings. Sentences/s of both and the ratio (b)/(a).

3. **Start-up**: each stack's cold start (spawn of ``sessiond stack`` until every worker is
   ready, with the hub and each worker's own time), and the MCP gateway's start (client
   connect, i.e. spawn + MCP initialize, then the first ``ping`` tool call).

Other engineers' jobs may load the machine: each phase reports the CPU used by processes that
are not this benchmark or its children ("other load", in cores); when it is high the figures
are noisy. ``--quick`` (1k only, fewer calls and texts) is a 1-2 minute smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.cpu_meter import CpuMeter, RoleCpu
from bench.embed_raw import medium_texts, raw_throughput
from bench.harness import REPO, machine, percentiles, running_stack
from bench.mcp_raw import RawMcpClient
from bench.memory_report import report
from bench.workload import Corpus, fsync_latency, populate
from shared import protocol as p
from shared.client import HubClient
from shared.transport import endpoints

BARS = {  # the bars
    "store_p50_ms": 5.0,
    "search_p50_ms": {1_000: 15.0, 100_000: 25.0},
    "bulk_ratio": 0.9,
}
WARMUP_CALLS = 5  # per tool, not counted
BULK_BATCH = 500
SPACED_S = 0.1  # pause before each "spaced" store (diagnosis)

# ----------------------------------------------------------------------------- MCP phase
def _mcp_client(env: dict[str, str]):
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    transport = StdioTransport(sys.executable, ["-m", "sessiond", "serve"], env=env,
                               cwd=str(REPO), keep_alive=False)
    return Client(transport, timeout=60, init_timeout=60)


async def _tool(client, name: str, args: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = await client.call_tool(name, args, raise_on_error=False)
    elapsed = time.perf_counter() - t0
    if result.is_error:
        raise RuntimeError(f"{name} failed: {result.content}")
    return elapsed, result.structured_content


async def _raw_tool(client: RawMcpClient, name: str, args: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = await client.call_tool(name, args)
    return time.perf_counter() - t0, result


async def _wait_embedded(hub: HubClient, timeout_s: float = 300,
                         trace: list | None = None) -> tuple[float, dict]:
    """Poll the store every 50 ms until no memory lacks an embedding; (seconds, stats)."""
    t0 = time.perf_counter()
    while True:
        info = await hub.request(p.SERVICE_STORE, p.StoreStats())
        if trace is not None:
            trace.append((time.perf_counter(), info.data["pending_embeddings"]))
        if info.data["pending_embeddings"] == 0:
            return time.perf_counter() - t0, info.data
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"still {info.data['pending_embeddings']} pending embeddings")
        await asyncio.sleep(0.05)


async def tool_latencies(call, hub: HubClient, corpus: Corpus, queries: list[str],
                         n_store: int, n_search: int, n_direct: int) -> dict:
    """ping, store_reflection (then the spaced stores), quick_search and reflect_on_past through
    one MCP client; ``call(name, args)`` -> (seconds, structured result). Consumes ``queries``."""
    out: dict = {"cpu_ms_per_call": {}}
    _, pong = await call("ping", {})
    cpu = RoleCpu(pong["stack_pid"], pong["gateway_pid"])

    async def timed(tool: str, n: int, args_of) -> tuple[dict, list[dict]]:
        """Percentiles of the ``n`` timed calls (after the warm-up), and every reply."""
        samples, replies = [], []
        for i in range(WARMUP_CALLS + n):
            if i == WARMUP_CALLS:
                cpu0 = cpu.snapshot()
            dt, res = await call(tool, args_of(i))
            replies.append(res)
            if i >= WARMUP_CALLS:
                samples.append(dt)
        out["cpu_ms_per_call"][tool] = cpu.per_call_ms(cpu0, len(samples))
        return percentiles(samples), replies

    now = datetime.now(UTC)

    def store_args(_i: int) -> dict:
        item = corpus.item(now)
        return {"content": item["content"], "tags": item["tags"] or None,
                "project": item["project"]}

    out["ping"], _ = await timed("ping", n_direct, lambda _i: {})
    out["store_reflection"], stored = await timed("store_reflection", n_store, store_args)
    if any(res["duplicate"] for res in stored):
        raise RuntimeError("a distinct text came back as a duplicate")
    wait_s, _ = await _wait_embedded(hub)
    out["embed_backlog_after_stores_s"] = round(wait_s, 2)

    # Diagnosis only: the same tool with the embed filler idle at each call (100 ms apart, so
    # the previous store's embedding is done): the cost without contention.
    samples = []
    for _ in range(n_direct):
        await asyncio.sleep(SPACED_S)
        item = corpus.item(now)
        dt, _ = await call("store_reflection", {"content": item["content"],
                                                "project": item["project"]})
        samples.append(dt)
    out["store_reflection_spaced"] = percentiles(samples)
    await _wait_embedded(hub)

    for tool in ("quick_search", "reflect_on_past"):
        pct, replies = await timed(tool, n_search, lambda _i: {"query": queries.pop()})
        out[tool] = pct | {
            "modes": dict(Counter(res["mode"] for res in replies)),
            "avg_hits": round(sum(len(res["results"]) for res in replies) / len(replies), 1),
            "notes": sorted({res["note"] for res in replies if res["note"]})}
    return out


async def mcp_phase(env: dict[str, str], cfg, corpus: Corpus, n_store: int,
                    n_search: int, n_direct: int) -> dict:
    """The tool latencies through each MCP client in turn (the raw client first), then the
    HubClient breakdown."""
    out: dict = {}
    hub = HubClient(endpoints(cfg).clients, default_timeout_s=30)
    queries = corpus.queries(2 * 2 * (WARMUP_CALLS + n_search) + n_direct)
    try:
        before = (await hub.request(p.SERVICE_STORE, p.StoreStats())).data
        out["pending_at_start"] = before["pending_embeddings"]
        out["memories_at_start"] = before["memories"]

        t0 = time.perf_counter()
        async with RawMcpClient(env, REPO) as raw:
            t_connect = time.perf_counter() - t0
            t_ping, _ = await _raw_tool(raw, "ping", {})
            out["gateway_start"] = {"connect_s": round(t_connect, 3),
                                    "first_ping_ms": round(t_ping * 1000, 2),
                                    "total_s": round(time.perf_counter() - t0, 3)}
            out["raw"] = await tool_latencies(
                lambda name, args: _raw_tool(raw, name, args), hub, corpus, queries,
                n_store, n_search, n_direct)
        async with _mcp_client(env) as client:
            out["fastmcp"] = await tool_latencies(
                lambda name, args: _tool(client, name, args), hub, corpus, queries,
                n_store, n_search, n_direct)
            stats = (await _tool(client, "reflection_stats", {}))[1]
            out["query_cache"] = stats.get("query_cache")
        out["direct"] = await direct_breakdown(hub, corpus, queries[:n_direct])
        out["filler"] = (await hub.request(p.SERVICE_STORE, p.StoreStats())).data["embed_filler"]
    finally:
        hub.close()
    return out


async def direct_breakdown(hub: HubClient, corpus: Corpus, queries: list[str]) -> dict:
    """The same operations with a bare HubClient (no MCP, no gateway): where the time goes."""
    out = {}
    for service in (p.SERVICE_HUB, p.SERVICE_STORE):
        samples = []
        for _ in range(len(queries)):
            t0 = time.perf_counter()
            await hub.request(service, p.Ping())
            samples.append(time.perf_counter() - t0)
        out[f"ping_{service}"] = percentiles(samples[3:])
    embed, vectors = [], []
    for q in queries:
        t0 = time.perf_counter()
        reply = await hub.request(p.SERVICE_EMBED, p.Embed(texts=[q], kind="query"))
        embed.append(time.perf_counter() - t0)
        vectors.append(reply.data)
    out["embed_query"] = percentiles(embed[3:])
    for name, limit in (("search_limit5", 5), ("search_limit10", 10)):
        samples = []
        for q, vec in zip(queries, vectors, strict=True):
            t0 = time.perf_counter()
            reply = await hub.request(p.SERVICE_STORE, p.Search(query=q, query_vector=vec,
                                                                 limit=limit))
            samples.append(time.perf_counter() - t0)
            assert reply.mode == "hybrid"
        out[name] = percentiles(samples[3:])
    samples = []
    now = datetime.now(UTC)
    for _ in range(len(queries)):
        item = corpus.item(now)
        body = p.Remember(kind="reflection", content=item["content"], project=item["project"],
                          tags=item["tags"])
        t0 = time.perf_counter()
        await hub.request(p.SERVICE_STORE, body)
        samples.append(time.perf_counter() - t0)
    out["remember"] = percentiles(samples[3:])
    await _wait_embedded(hub)
    return out


def run_size(n: int, args, base_dir: Path) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"sd-ml{n // 1000}k-", dir=base_dir))
    corpus = Corpus(seed=n)
    try:
        print(f"[{n:,}] populating {home / 'memory.duckdb'} ...", flush=True)
        pop = populate(home / "memory.duckdb", n, corpus, args.direct_calls)
        print(f"[{n:,}] populated in {pop['seconds']} s; starting the stack", flush=True)
        meter = CpuMeter()
        with running_stack(home, ready_timeout_s=600, idle_timeout_s=3600) as st:
            start = {"cold_start_s": round(st.cold_start_s, 2),
                     "ready_s": {k: round(v, 2) for k, v in st.ready_s.items()}}
            print(f"[{n:,}] stack ready in {st.cold_start_s:.2f} s; MCP calls", flush=True)
            res = asyncio.run(mcp_phase(st.env, st.cfg, corpus, args.store_calls,
                                        args.search_calls, args.direct_calls))
            load = meter.stop()
        return {"size": n, "populate": pop, "stack": start, "load": load, **res}
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ----------------------------------------------------------------------------- bulk import
async def bulk_through_store(cfg, texts: list[str]) -> dict:
    hub = HubClient(endpoints(cfg).clients, default_timeout_s=300)
    try:
        before = (await hub.request(p.SERVICE_STORE, p.StoreStats())).data
        assert before["memories"] == 0, before
        items = [p.Remember(kind="conversation", content=t, project=f"import-{i % 5}")
                 for i, t in enumerate(texts)]
        acks = []
        t0 = time.perf_counter()
        for lo in range(0, len(items), BULK_BATCH):
            ts = time.perf_counter()
            reply = await hub.request(p.SERVICE_STORE, p.RememberMany(items=items[lo:lo + BULK_BATCH]))
            acks.append(time.perf_counter() - ts)
            assert isinstance(reply, p.StoredMany) and not any(r.duplicate for r in reply.results)
        t_acked = time.perf_counter() - t0
        trace: list[tuple[float, int]] = []
        _, data = await _wait_embedded(hub, timeout_s=1800, trace=trace)
        total = time.perf_counter() - t0
        filler = data["embed_filler"]
        assert data["embedded"] == len(texts) and filler["failures"] == 0, data
        n = len(texts)

        def first(frac: float) -> float:  # seconds from the first send to >= frac embedded
            return next(t for t, pend in trace if n - pend >= frac * n) - t0

        t10, t90 = first(0.1), first(0.9)
        await asyncio.sleep(3 * cfg.heartbeat_interval_s)  # let the workers report their counts
        info = await hub.request(p.SERVICE_HUB, p.StackStatus())
        per_worker = {w.name: w.stats.get("texts_embedded") for w in info.workers
                      if w.service == p.SERVICE_EMBED}
        return {"n": n, "seconds": round(total, 2), "acked_s": round(t_acked, 2),
                "batch_ack_ms_max": round(max(acks) * 1000, 1),
                "sentences_per_s": round(n / total, 1),
                "to_10pct_s": round(t10, 2), "last_10pct_s": round(total - t90, 2),
                "steady_sentences_per_s": round(0.8 * n / (t90 - t10), 1) if t90 > t10 else None,
                "per_worker_texts": per_worker}
    finally:
        hub.close()


def bulk_phase(args) -> dict:
    texts = medium_texts(args.bulk_texts)
    out: dict = {"n": len(texts), "raw": {}}
    meter = CpuMeter()
    for threads in (1, 2):
        print(f"[bulk] raw embedding, {threads} thread(s), {len(texts)} texts ...", flush=True)
        r = raw_throughput(texts, threads, repeats=args.raw_repeats)
        out["raw"][threads] = r
    out["mean_tokens"] = out["raw"][1]["mean_tokens"]
    out["raw_load"] = meter.stop()
    best = max(out["raw"].values(), key=lambda r: r["sentences_per_s"])
    out["raw_best"] = {"threads": best["threads"], "sentences_per_s": best["sentences_per_s"]}

    print("[bulk] fresh stack, 2 embed workers x 1 thread; RememberMany x "
          f"{BULK_BATCH} ...", flush=True)
    with running_stack(embed_workers=2, embed_threads=1, idle_timeout_s=3600) as st:
        out["stack"] = {"cold_start_s": round(st.cold_start_s, 2),
                        "ready_s": {k: round(v, 2) for k, v in st.ready_s.items()}}
        meter = CpuMeter()
        out["system"] = asyncio.run(bulk_through_store(st.cfg, texts))
        out["system_load"] = meter.stop()
    out["ratio"] = round(out["system"]["sentences_per_s"] / best["sentences_per_s"], 3)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="comma-separated memory counts "
                    "(default 1000,100000; --quick: 1000)")
    ap.add_argument("--with-1m", action="store_true", help="also run 1,000,000 memories "
                    "(slow: population alone takes many minutes, ~2 GB of RAM)")
    ap.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    ap.add_argument("--store-calls", type=int, default=None)
    ap.add_argument("--search-calls", type=int, default=None, help="per search tool")
    ap.add_argument("--direct-calls", type=int, default=None)
    ap.add_argument("--bulk-texts", type=int, default=None)
    ap.add_argument("--raw-repeats", type=int, default=1)
    ap.add_argument("--no-bulk", action="store_true", help="skip the bulk import comparison")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temp data dirs "
                    "(short: unix socket paths are capped at ~107 bytes)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("1000" if args.quick else "1000,100000")).split(",")]
    if args.with_1m and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    if any(s >= 1_000_000 for s in sizes) and not args.with_1m:
        ap.error("1M memories and more only with --with-1m")
    quick = args.quick
    args.store_calls = args.store_calls or (60 if quick else 300)
    args.search_calls = args.search_calls or (50 if quick else 200)
    args.direct_calls = args.direct_calls or (40 if quick else 100)
    args.bulk_texts = args.bulk_texts or (600 if quick else 3000)

    from shared.version import VERSION

    results: dict = {"machine": machine(), "loadavg_start": os.getloadavg()[0],
                     "version": VERSION, "bars": BARS,
                     "spaced_ms": SPACED_S * 1000, "bulk_batch": BULK_BATCH,
                     "method": "MCP over stdio (a raw JSON-RPC client, then fastmcp.Client), "
                               "client-side wall time; memories pre-populated with MemoryStore "
                               "and random unit vectors"}
    print(f"machine: {results['machine']}", flush=True)
    t0 = time.perf_counter()
    results["fsync"] = fsync_latency(args.dir or Path(tempfile.gettempdir()))
    if not args.no_bulk:
        results["bulk"] = bulk_phase(args)
        for r in results["bulk"]["raw"].values():
            r["repeats"] = args.raw_repeats
    results["sizes"] = [run_size(n, args, args.dir or Path(tempfile.gettempdir()))
                        for n in sizes]
    results["run_seconds"] = round(time.perf_counter() - t0, 1)
    report(results)


if __name__ == "__main__":
    main()
