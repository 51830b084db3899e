"""The printed report of ``bench.memory_load`` (the figures, the bars, then the JSON)."""

from __future__ import annotations

import json
import os

CLIENTS = (("raw", "raw JSON-RPC client"), ("fastmcp", "fastmcp.Client"))
SEARCH_TOOLS = ("quick_search", "reflect_on_past")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _search_bar(bars: dict, n: int) -> float | None:
    by_size = {int(k): v for k, v in bars["search_p50_ms"].items()}
    return by_size.get(n)  # None: no bar set by the issue for this size


def _latency_table(results: dict, verdicts: list) -> None:
    bars = results["bars"]
    print("\n== MCP tool latency over stdio: client-side wall time per call, ms ==")
    print("   The bar is judged on the raw client (see bench/mcp_raw.py); fastmcp.Client adds its "
          "own\n   result validation on the client side (its CPU is in the table further down).")
    print(f"{'memories':>9}  {'tool':<26}{'raw p50':>9}{'p95':>8}{'fastmcp p50':>13}{'p95':>8}"
          f"{'n':>5}   {'bar (p50)':<11}{'result':<6}")
    for r in results["sizes"]:
        n = r["size"]
        tools = [("store_reflection", bars["store_p50_ms"])]
        tools += [(t, _search_bar(bars, n)) for t in SEARCH_TOOLS]
        for tool, bar in tools:
            raw, fm = r["raw"][tool], r["fastmcp"][tool]
            modes_ok = all(set(r[c][tool].get("modes", {"hybrid": 1})) == {"hybrid"}
                           for c, _ in CLIENTS)
            label = f"{tool} (hybrid)" if tool in SEARCH_TOOLS else tool
            if bar is None:
                bar_s, verdict = "-", "-"
            else:
                bar_s, verdict = f"<= {bar:g}", _verdict(raw["p50_ms"] <= bar and modes_ok)
                verdicts.append((f"{label} @ {n:,}", verdict))
            extra = "" if modes_ok else "  (not every reply was hybrid!)"
            print(f"{n:>9,}  {label:<26}{raw['p50_ms']:>9.2f}{raw['p95_ms']:>8.2f}"
                  f"{fm['p50_ms']:>13.2f}{fm['p95_ms']:>8.2f}{raw['n']:>5}   {bar_s:<11}"
                  f"{verdict:<6}{extra}")


def _diagnosis(results: dict) -> None:
    print("\n   for diagnosis (not the bars): the MCP ping tool and spaced stores; the same "
          "operations with a bare\n   HubClient (no MCP); the store engine in process "
          "(MemoryStore, before the stack started; random\n   query vectors); the disk")
    print(f"{'memories':>9}  {'':<46}{'p50 ms':>8}{'p95 ms':>8}{'n':>5}")
    for r in results["sizes"]:
        for client, name in CLIENTS:
            for key, label in (("ping", "MCP ping tool (hub answers)"),
                               ("store_reflection_spaced",
                                f"MCP store_reflection, {results['spaced_ms']:g} ms apart")):
                pct = r[client][key]
                print(f"{r['size']:>9,}  {label + ', ' + client:<46}{pct['p50_ms']:>8.2f}"
                      f"{pct['p95_ms']:>8.2f}{pct['n']:>5}")
        d = r["direct"]
        for key, label in (("ping_hub", "Ping the hub (IPC round trip)"),
                           ("ping_store", "Ping the store worker (via the hub)"),
                           ("embed_query", "embed one query (embed worker)"),
                           ("search_limit5", "store Search, vector given, limit 5"),
                           ("search_limit10", "store Search, vector given, limit 10"),
                           ("remember", "store Remember (durable)")):
            print(f"{r['size']:>9,}  {'hub: ' + label:<46}{d[key]['p50_ms']:>8.2f}"
                  f"{d[key]['p95_ms']:>8.2f}{d[key]['n']:>5}")
        e = r["populate"]["engine"]
        for key, label in (("search_limit5", "hybrid search, limit 5"),
                           ("search_limit10", "hybrid search, limit 10"),
                           ("add", "add (durable: journal)"),
                           ("flush", "flush of that add into the table")):
            print(f"{r['size']:>9,}  {'engine: ' + label:<46}{e[key]['p50_ms']:>8.2f}"
                  f"{e[key]['p95_ms']:>8.2f}{e[key]['n']:>5}")
    f = results["fsync"]
    print(f"{'':>9}  {'disk: 4 KiB append + fsync':<46}{f['p50_ms']:>8.2f}{f['p95_ms']:>8.2f}"
          f"{f['n']:>5}")

    print("\n   CPU ms per MCP call, by process (client = the benchmark's MCP client; "
          "store_reflection\n   includes the embed filler embedding what it stored):")
    roles = ["client", "gateway", "hub", "store", "embed", "quality", "total"]
    print(f"{'memories':>9}  {'client':<9}{'tool':<20}" + "".join(f"{x:>9}" for x in roles))
    for r in results["sizes"]:
        for client, _ in CLIENTS:
            for tool, c in r[client]["cpu_ms_per_call"].items():
                print(f"{r['size']:>9,}  {client:<9}{tool:<20}"
                      + "".join(f"{c[k]:>9.2f}" for k in roles))

    print("\n   details:")
    for r in results["sizes"]:
        pop, load, raw = r["populate"], r["load"], r["raw"]
        print(f"   {r['size']:>9,}: pre-populated (MemoryStore, random unit vectors) in "
              f"{pop['seconds']} s: {pop['db_mb']} MB, {pop['projects']} projects, "
              f"{pop['distinct_terms']:,} terms; pending embeddings at stack start: "
              f"{r['pending_at_start']}")
        print(f"   {'':>9}  embed backlog of the stored reflections cleared "
              f"{raw['embed_backlog_after_stores_s']} s after the last store (raw client run); "
              f"filler embedded {r['filler']['embedded']} rows in total (failures "
              f"{r['filler']['failures']})")
        print(f"   {'':>9}  avg hits: quick_search {raw['quick_search']['avg_hits']}, "
              f"reflect_on_past {raw['reflect_on_past']['avg_hits']}; query cache "
              f"{r['query_cache']}; CPU: ours {load['ours_cores']} cores, other processes "
              f"{load['other_cores']} cores over {load['wall_s']} s")
        for client, _ in CLIENTS:
            for tool in SEARCH_TOOLS:
                for note in r[client][tool]["notes"]:
                    print(f"   {'':>9}  {client} {tool} note: {note}")


def _bulk(b: dict, results: dict, verdicts: list) -> None:
    print(f"\n== Bulk import vs raw embedding: {b['n']} distinct medium texts "
          f"(~{b['mean_tokens']} tokens) ==")
    for threads, r in b["raw"].items():
        print(f"   raw Embedder.embed, 1 process x {threads} thread(s): "
              f"{r['sentences_per_s']:>8.1f} sentences/s  (best of {r.get('repeats', '?')})")
    s = b["system"]
    print(f"   through the store (RememberMany x {results['bulk_batch']} -> embed filler -> 2 "
          f"embed workers x 1 thread): {s['sentences_per_s']:.1f} sentences/s  ({s['seconds']} s "
          f"until 0 pending; all batches acked after {s['acked_s']} s, slowest ack "
          f"{s['batch_ack_ms_max']} ms)")
    print(f"   of which: >= 10% embedded after {s['to_10pct_s']} s, 10%->90% at "
          f"{s['steady_sentences_per_s']} sentences/s, last 10% took {s['last_10pct_s']} s; "
          f"texts per embed worker {s['per_worker_texts']}")
    ok = b["ratio"] >= results["bars"]["bulk_ratio"]
    verdicts.append(("bulk import / raw embedding", _verdict(ok)))
    print(f"   ratio (system / best raw, {b['raw_best']['threads']} thr): "
          f"{b['ratio']:.3f}   bar >= {results['bars']['bulk_ratio']}   {_verdict(ok)}")
    print(f"   CPU during raw: ours {b['raw_load']['ours_cores']} cores, other processes "
          f"{b['raw_load']['other_cores']}; during import: ours "
          f"{b['system_load']['ours_cores']}, other {b['system_load']['other_cores']}")


def _startup(results: dict) -> None:
    b = results.get("bulk")
    print("\n== Start-up ==")
    stacks = [("empty (bulk import stack, 2x1)", b["stack"])] if b else []
    stacks += [(f"{r['size']:,} memories", r["stack"]) for r in results["sizes"]]
    for label, st in stacks:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in st["ready_s"].items() if k != "all")
        print(f"   stack cold start, {label:<31} {st['cold_start_s']:6.2f} s   "
              f"(first seen ready, s: {parts})")
    for r in results["sizes"]:
        g = r["gateway_start"]
        print(f"   MCP gateway start ({r['size']:,} memories): connect (spawn + initialize) "
              f"{g['connect_s']:.2f} s, first ping {g['first_ping_ms']:.1f} ms, total "
              f"{g['total_s']:.2f} s")


def report(results: dict) -> None:
    print()
    print(f"machine: {results['machine']}")
    print(f"load average at start: {results['loadavg_start']:.2f} (1 min); "
          f"sessiond {results['version']}")
    verdicts: list[tuple[str, str]] = []
    if results["sizes"]:
        _latency_table(results, verdicts)
        _diagnosis(results)
    if results.get("bulk"):
        _bulk(results["bulk"], results, verdicts)
    _startup(results)

    noisy = [r["load"]["other_cores"] for r in results["sizes"]]
    if results.get("bulk"):
        noisy += [results["bulk"]["raw_load"]["other_cores"],
                  results["bulk"]["system_load"]["other_cores"]]
    if noisy and max(noisy) > 0.25:
        print(f"\nNOTE: other processes kept up to {max(noisy):.2f} of {os.cpu_count()} cores "
              "busy during the run; figures are noisy.")
    print("\n== Bars ==")
    for name, verdict in verdicts:
        print(f"   {name:<40}{verdict}")
    results["verdicts"] = dict(verdicts)
    print("\n" + json.dumps(results, default=str))
