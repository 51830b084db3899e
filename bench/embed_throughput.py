"""Embedding throughput: raw in-process ONNX vs the same texts through the hub and the pool.

    uv run python -m bench.embed_throughput [--quick]

In one run, on the same texts: (a) raw ``Embedder.embed`` in this process with the best batching
(1 and 2 intra-op threads), (b) a client process sending the texts through the hub to a pool of
embed workers (2 workers x 1 thread, and 1 worker x 2 threads), keeping every worker busy.
Prints sentences/s for short (~12 tokens) and medium (~60 tokens) texts, the ratio (b)/(a)
against the best raw figure, and single short query latency through the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.embed_raw import medium_texts, raw_throughput, short_texts
from bench.harness import machine, percentiles, stack
from shared import protocol as p
from shared.client import HubClient
from shared.transport import endpoints

REQUEST_TEXTS = 128  # texts per bulk request


async def pool_throughput(cfg, texts: list[str], workers: int) -> float:
    client = HubClient(endpoints(cfg).clients, default_timeout_s=300)
    chunks = [texts[i:i + REQUEST_TEXTS] for i in range(0, len(texts), REQUEST_TEXTS)]
    in_flight = asyncio.Semaphore(2 * workers)  # one running and one queued per worker

    async def send(chunk):
        async with in_flight:
            reply = await client.request(p.SERVICE_EMBED, p.Embed(texts=chunk), idempotent=True)
            assert isinstance(reply, p.Vectors) and reply.count == len(chunk)

    await send(texts[:16])  # warm-up
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        await asyncio.gather(*(send(c) for c in chunks))
        best = max(best, len(texts) / (time.perf_counter() - t0))
    client.close()
    return best


async def query_latency(cfg, queries: list[str]) -> dict:
    client = HubClient(endpoints(cfg).clients)
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        await client.request(p.SERVICE_EMBED, p.Embed(texts=[q], kind="query"))
        samples.append(time.perf_counter() - t0)
    client.close()
    return percentiles(samples[10:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer texts (a smoke run)")
    args = parser.parse_args(argv)
    n_short, n_medium = (300, 80) if args.quick else (2000, 500)
    sets = {"short": short_texts(n_short), "medium": medium_texts(n_medium)}
    results: dict = {"machine": machine(), "raw": {}, "pool": {}}

    for threads in (1, 2):
        for name, texts in sets.items():
            r = raw_throughput(texts, threads, repeats=2)
            results["raw"][f"{name} 1 proc x {threads} thr"] = r["sentences_per_s"]
    for workers, threads in ((2, 1), (1, 2)):
        with stack(embed_workers=workers, embed_threads=threads) as cfg:
            for name, texts in sets.items():
                rate = asyncio.run(pool_throughput(cfg, texts, workers))
                results["pool"][f"{name} {workers} workers x {threads} thr"] = round(rate, 1)
            if workers == 2:
                queries = short_texts(260, seed=7)
                results["query_latency_via_hub"] = asyncio.run(query_latency(cfg, queries))

    print(f"machine: {results['machine']}\n")
    print(f"{'set':<8}{'raw best s/s':>14}{'pool best s/s':>15}{'ratio':>8}   (configs)")
    for name in sets:
        raw = {k: v for k, v in results["raw"].items() if k.startswith(name)}
        pool = {k: v for k, v in results["pool"].items() if k.startswith(name)}
        raw_k, pool_k = max(raw, key=raw.get), max(pool, key=pool.get)
        ratio = pool[pool_k] / raw[raw_k]
        results[f"ratio_{name}"] = round(ratio, 3)
        print(f"{name:<8}{raw[raw_k]:>14.1f}{pool[pool_k]:>15.1f}{ratio:>8.2f}   "
              f"({raw_k[len(name) + 1:]} / {pool_k[len(name) + 1:]})")
    print("\nall figures (sentences/s):")
    for kind in ("raw", "pool"):
        for k, v in results[kind].items():
            print(f"  {kind:<5}{k:<32}{v:>9.1f}")
    lat = results["query_latency_via_hub"]
    print(f"\nsingle short query through the hub: p50 {lat['p50_ms']:.2f} ms, "
          f"p95 {lat['p95_ms']:.2f} ms (n={lat['n']})")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
