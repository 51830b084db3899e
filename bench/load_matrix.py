"""Latency and throughput against store size and concurrent gateways.

    uv run python -m bench.load_matrix [--sizes 1000,10000,100000,1000000]
        [--gateways 1,2,4,8] [--seconds 15] [--json PATH] [--plots DIR] [--keep DIR]

For each size N a data dir is filled with N synthetic developer memories over 50 projects
(``bench.workload.Corpus`` texts, ages over a year) and their vectors, written with
``MemoryStore`` before the stack starts: random unit vectors up to 100k; from 200k on
*clustered, sentence-like* vectors (``bench.ann_recall.clustered_data``: 200 centres, each row
its centre plus a 32-dimensional cluster-specific part and noise), so that the HNSW index that
serves stores of that size is measured on data it can index, not on uniform noise where no ANN
works. A stack is started on it (the time until the store is ready is the open time, from its
index snapshot), then for each concurrency G, G gateways (``sessiond serve``, each its own
process, driven by the raw JSON-RPC client) each run a closed loop for ``--seconds``: 80%
``quick_search`` (a corpus query, embedded by the real model), 20% ``store_reflection`` (a new
memory). Per cell: p50/p95/p99 of each operation, operations per second, CPU seconds and RSS per
process (store, embed workers, quality, supervisor, gateways summed).

Prints a markdown table, writes JSON (``--json``) and PNG plots (``--plots``, matplotlib): p50/p95
against N with one gateway, and against G for each N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

from bench.ann_recall import clustered_data, random_data
from bench.harness import REPO, machine, running_stack
from bench.mcp_raw import RawMcpClient
from bench.workload import POPULATE_BATCH, Corpus
from shared import protocol as p
from shared.client import HubClient
from store_worker.indexes.accelerated_index import ANN_MIN_ROWS
from store_worker.memory_store import MemoryStore

CLUSTERED_FROM = 200_000
SEARCH_SHARE = 0.8
QUERIES_PER_GATEWAY = 4000  # more than a gateway asks in a cell
GONE = (psutil.Error, ValueError, IndexError)  # a process that ended, or an odd command line


def fill(db: Path, n: int, corpus: Corpus) -> dict:
    """``n`` memories with their vectors, written while no stack runs."""
    now = datetime.now(UTC)
    rng = np.random.default_rng(n)
    make = clustered_data if n >= CLUSTERED_FROM else random_data
    t0 = time.perf_counter()
    with MemoryStore.open(db) as store:
        for lo in range(0, n, POPULATE_BATCH):
            store.add_many(corpus.item(now) for _ in range(min(POPULATE_BATCH, n - lo)))
        while pending := store.pending_embeddings(20_000):
            store.set_embeddings([i for i, _ in pending], make(len(pending), rng))
        store.checkpoint()
    return {"seconds": round(time.perf_counter() - t0, 1),
            "vectors": "clustered" if n >= CLUSTERED_FROM else "random"}


def pct(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ms = np.array(samples) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)}


async def one_gateway(env: dict[str, str], seconds: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    corpus = Corpus(seed=seed)
    # distinct queries, never repeated: a repeat would be answered from the gateway's cache of
    # query vectors and skip the embedding a new question costs
    queries = iter(corpus.queries(QUERIES_PER_GATEWAY))
    async with RawMcpClient(env, REPO) as client:
        await client.call_tool("ping", {})
        out["gateway_pids"].append(client.pid)  # for its RSS and CPU
        await out["start"].wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if rng.random() < SEARCH_SHARE:
                name, args = "quick_search", {"query": next(queries)}
            else:
                name, args = "store_reflection", {"content": corpus.text(),
                                                  "project": "load-matrix"}
            t0 = time.perf_counter()
            await client.call_tool(name, args)
            out[name].append(time.perf_counter() - t0)
        out["done"].append(time.monotonic())
        await out["measured"].wait()  # its CPU and RSS are read while it still runs


def processes(stack_pid: int, gateway_pids: list[int]) -> dict[str, psutil.Process]:
    """The stack's processes by role, and the gateways."""
    roles: dict[str, psutil.Process] = {"supervisor": psutil.Process(stack_pid)}
    for child in roles["supervisor"].children(recursive=True):
        with contextlib.suppress(*GONE):
            cmd = child.cmdline()
            name = cmd[cmd.index("--name") + 1] if "--name" in cmd else child.name()
            roles[name] = child
    for i, pid in enumerate(gateway_pids):
        with contextlib.suppress(*GONE):
            roles[f"gateway-{i}"] = psutil.Process(pid)
    return roles


def cpu_of(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for role, proc in procs.items():
        with contextlib.suppress(*GONE):
            t = proc.cpu_times()
            out[role] = t.user + t.system
    return out


def by_role(values: dict[str, float]) -> dict[str, float]:
    """Gateways and embed workers summed, the rest as they are."""
    out: dict[str, float] = {}
    for role, v in values.items():
        key = "gateways" if role.startswith("gateway-") else (
            "embed" if role.startswith("embed") else role)
        out[key] = out.get(key, 0.0) + v
    return out


async def cell(env: dict[str, str], stack_pid: int, gateways: int, seconds: float) -> dict:
    out: dict = {"quick_search": [], "store_reflection": [], "gateway_pids": [], "done": [],
                 "start": asyncio.Event(), "measured": asyncio.Event()}
    tasks = [asyncio.create_task(one_gateway(env, seconds, 1000 + i, out))
             for i in range(gateways)]
    while len(out["gateway_pids"]) < gateways:
        await asyncio.sleep(0.05)
        for t in tasks:
            if t.done():
                t.result()  # a gateway that failed to start: raise its error
    procs = processes(stack_pid, out["gateway_pids"])
    cpu0, t0 = cpu_of(procs), time.monotonic()
    out["start"].set()
    while len(out["done"]) < gateways:
        await asyncio.sleep(0.01)
        for t in tasks:
            if t.done():
                t.result()  # a gateway that failed: raise its error
    wall = max(out["done"]) - t0
    cpu1 = cpu_of(procs)
    rss = {}
    for role, proc in procs.items():
        with contextlib.suppress(*GONE):
            rss[role] = proc.memory_info().rss / 2**20
    out["measured"].set()
    await asyncio.gather(*tasks)
    ops = len(out["quick_search"]) + len(out["store_reflection"])
    return {"gateways": gateways, "ops": ops, "ops_per_s": round(ops / wall, 1),
            "quick_search": pct(out["quick_search"]),
            "store_reflection": pct(out["store_reflection"]),
            "cpu_s": {k: round(v, 2) for k, v in by_role(
                {r: cpu1[r] - cpu0.get(r, 0.0) for r in cpu1}).items()},
            "rss_mb": {k: round(v, 1) for k, v in by_role(rss).items()},
            "rss_total_mb": round(sum(rss.values()), 1)}


def run_size(n: int, args, base: Path) -> dict:
    home = base / f"n{n}"
    fill_info = {"seconds": 0.0, "reused": True}
    if not (home / "memory.duckdb").exists():
        home.mkdir(parents=True, exist_ok=True)
        print(f"[matrix] filling {n:,} memories ...", flush=True)
        fill_info = fill(home / "memory.duckdb", n, Corpus(seed=n))
    result = {"memories": n, "fill": fill_info, "cells": []}
    with running_stack(home, ready_timeout_s=1200, idle_timeout_s=3600) as st:
        result["stack_ready_s"] = round(st.cold_start_s, 2)
        result["store_ready_s"] = round(st.ready_s.get("store", st.cold_start_s), 2)
        if n >= ANN_MIN_ROWS:  # measure the HNSW path, not the exact scan serving meanwhile
            result["ann"] = asyncio.run(wait_for_ann(st.cfg))
            print(f"  approximate index: {result['ann']}", flush=True)
        for g in args.gateways:
            print(f"[matrix] N={n:,} gateways={g} ...", flush=True)
            c = asyncio.run(cell(st.env, st.proc.pid, g, args.seconds))
            print(f"  {c['ops_per_s']} ops/s; search {c['quick_search']}; store "
                  f"{c['store_reflection']}; RSS {c['rss_total_mb']} MB", flush=True)
            result["cells"].append(c)
    # a second start from the snapshot the clean stop wrote (with the approximate index)
    with running_stack(home, ready_timeout_s=1200, idle_timeout_s=3600) as st:
        result["reopen_store_ready_s"] = round(st.ready_s.get("store", st.cold_start_s), 2)
    return result


async def wait_for_ann(cfg, timeout_s: float = 3600) -> dict:
    """Until the store's approximate index is in use; what the store says of it then."""
    client = HubClient.for_config(cfg, default_timeout_s=60)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s:
            stats = (await client.request(p.SERVICE_STORE, p.StoreStats())).data
            vi = stats["vector_index"]
            if vi["kind"].startswith("exact+") or vi["ann_failures"]:
                return {**vi, "waited_s": round(time.monotonic() - t0, 1)}
            await asyncio.sleep(2)
    finally:
        client.close()
    return {"kind": "not built", "waited_s": round(time.monotonic() - t0, 1)}


def markdown(results: list[dict]) -> str:
    rows = [("| N | gateways | search p50 / p95 / p99 ms | store p50 / p95 / p99 ms | ops/s | "
             "RSS total MB | CPU s (store / embed / gateways) |"),
            "|---|---|---|---|---|---|---|"]
    for r in results:
        for c in r["cells"]:
            s, w, cpu = c["quick_search"], c["store_reflection"], c["cpu_s"]
            rows.append(
                f"| {r['memories']:,} | {c['gateways']} | {s.get('p50_ms')} / {s.get('p95_ms')}"
                f" / {s.get('p99_ms')} | {w.get('p50_ms')} / {w.get('p95_ms')} / "
                f"{w.get('p99_ms')} | {c['ops_per_s']} | {c['rss_total_mb']} | "
                f"{cpu.get('store', 0)} / {cpu.get('embed', 0)} / {cpu.get('gateways', 0)} |")
    return "\n".join(rows)


def plots(results: list[dict], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, op in enumerate(("quick_search", "store_reflection")):
        for q, style in (("p50_ms", "-o"), ("p95_ms", "--o")):
            xs = [r["memories"] for r in results]
            ys = [next(c for c in r["cells"] if c["gateways"] == min(
                x["gateways"] for x in r["cells"]))[op].get(q) for r in results]
            ax.plot(xs, ys, style, color=f"C{i}", label=f"{op} {q[:3]}")
    ax.set_xscale("log")
    written.append(_save(plt, fig, ax, folder / "latency_vs_size.png", "memories",
                         "Latency against store size (one gateway)"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, r in enumerate(results):
        xs = [c["gateways"] for c in r["cells"]]
        ax.plot(xs, [c["quick_search"].get("p50_ms") for c in r["cells"]], "-o",
                color=f"C{i}", label=f"search p50, {r['memories']:,}")
        ax.plot(xs, [c["quick_search"].get("p95_ms") for c in r["cells"]], "--o",
                color=f"C{i}", label=f"search p95, {r['memories']:,}")
    written.append(_save(plt, fig, ax, folder / "latency_vs_concurrency.png",
                         "concurrent gateways", "Search latency against concurrency"))
    return written


def _save(plt, fig, ax, path: Path, xlabel: str, title: str) -> str:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ms")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000",
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--gateways", default="1,2,4,8",
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--plots", help="write PNG plots into this folder")
    ap.add_argument("--keep", help="a folder for the filled data dirs, kept and reused")
    ap.add_argument("--combine", nargs="+", metavar="JSON",
                    help="measure nothing: the table and plots of earlier runs' --json files")
    args = ap.parse_args(argv)
    if args.combine:
        runs = [json.loads(Path(f).read_text()) for f in args.combine]
        results = sorted((r for run in runs for r in run["results"]),
                         key=lambda r: r["memories"])
        print(markdown(results))
        for run in runs:
            print(f"{run['machine']}; load average {run['load_before']} -> {run['load_after']}")
        if args.plots:
            plots(results, Path(args.plots))
        return
    base = Path(args.keep or tempfile.mkdtemp(prefix="sd-matrix-"))
    out = {"machine": machine(), "load_before": os.getloadavg(), "seconds": args.seconds,
           "results": []}
    try:
        for n in args.sizes:
            out["results"].append(run_size(n, args, base))
        out["load_after"] = os.getloadavg()
        print("\n" + markdown(out["results"]))
        print(f"\n{out['machine']}; load average before {out['load_before']}, after "
              f"{out['load_after']}")
        if args.plots:
            out["plots"] = plots(out["results"], Path(args.plots))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
