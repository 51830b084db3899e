"""Side by side with a peer: sessiond and mcp-memory-service-lite, same MCP client and workload.

Each round starts both servers, one after the other (the order alternates round by round so
machine load hits them alike), each in a fresh temp data dir, each spawned the way an MCP
client spawns it: ``python -m sessiond serve`` from this venv (the gateway starts its stack),
and ``python -m mcp_memory_service.server`` (what its ``memory server`` runs) from a venv of its
own made by ``bench/peer_setup.py`` (PyPI, pinned version, sessiond's int8 MiniLM files: neither
downloads anything). One minimal JSON-RPC client (``bench/mcp_raw.py``) then times:

- spawn → the ``initialize`` reply, and the first store after it (sessiond's gateway answers
  ``initialize`` while its stack starts; the peer loads its model first);
- ``--stores`` stores of short developer notes (``bench/workload.py``; ``store_reflection`` /
  ``memory_store`` with the project as a tag), one call at a time;
- right after them, ``--searches`` distinct searches (``quick_search`` / ``memory_search``,
  ``--limit`` results each): sessiond may still be embedding the stores in the background
  (how many were embedded when the searches began is reported); the peer embeds each memory
  (twice: its duplicate check, then the insert) before it answers the store;
- RSS and PSS of every process of the server (the gateway, the stack's supervisor and workers;
  the peer's one process), summed, right after the last search and again at rest:
  ``--rest`` seconds after sessiond's backlog drained (default 35 s: its extra embed workers
  park 30 s after the last embedding).

Latency percentiles pool every call of every round but each round's first store (shown apart:
it waits for what the server still starts); spawn, first store and RSS are medians over rounds. Prints a markdown table with the ratios sessiond / peer and issue 10's targets
(store >= 6x and search >= 2.5x faster at p50, RSS <= 1.3x the peer's); ``--json`` keeps it all.

Usage: ``uv run python -m bench.peer_compare [--rounds 1] [--json out.json]`` (~2.5 min a round)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bench import peer_setup, proc_tree
from bench.harness import REPO, machine, percentiles, stack_env
from bench.mcp_raw import RawMcpClient
from bench.workload import Corpus
from gateway.stack_control import read_stack_file
from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.transport import endpoints
from shared.version import VERSION

PEER_NAME = f"{peer_setup.PEER_PACKAGE} {peer_setup.PEER_VERSION}"
TARGETS = {"store_speedup": 6.0, "search_speedup": 2.5, "rss_ratio": 1.3}
_FOUND = re.compile(r"Found (\d+) memor")


class SessiondSide:
    name = "sessiond"

    def __init__(self, base: Path) -> None:
        self.home = base / "sessiond"
        self.home.mkdir()
        self.env = stack_env(self.home)
        self.cfg = load_config(self.env)
        self.command = [sys.executable, "-m", "sessiond", "serve"]
        self.cwd = REPO
        self._hub: HubClient | None = None

    def store(self, item: dict) -> tuple[str, dict]:
        return "store_reflection", {"content": item["content"], "project": item["project"]}

    def search(self, query: str, limit: int) -> tuple[str, dict]:
        return "quick_search", {"query": query, "limit": limit}

    def refused(self, result: dict) -> bool:
        return bool(result.get("structuredContent", {}).get("duplicate"))

    def hits(self, result: dict) -> tuple[int, str]:
        content = result.get("structuredContent", {})
        return len(content.get("results", [])), content.get("mode", "?")

    def roots(self, client_pid: int) -> list[int]:
        info = read_stack_file(self.cfg) or {}
        return [client_pid] + ([info["pid"]] if "pid" in info else [])

    async def pending(self) -> int:
        if self._hub is None:
            self._hub = HubClient(endpoints(self.cfg).clients, default_timeout_s=30)
        reply = await self._hub.request(p.SERVICE_STORE, p.StoreStats())
        return reply.data["pending_embeddings"]

    async def wait_drained(self, timeout_s: float) -> float:
        t0 = time.perf_counter()
        while await self.pending() and time.perf_counter() - t0 < timeout_s:
            await asyncio.sleep(0.2)
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self._hub is not None:
            self._hub.close()
        subprocess.run([sys.executable, "-m", "sessiond", "stop"], env=self.env, cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                       check=False)


class PeerSide:
    name = "peer"

    def __init__(self, base: Path, interp: Path) -> None:
        home, self.cwd = base / "peer-home", base / "peer"
        self.cwd.mkdir()
        peer_setup.lay_out_model(home)
        self.env = peer_setup.peer_env(home, self.cwd / "data")
        self.command = [str(interp), "-m", peer_setup.PEER_MODULE]

    def store(self, item: dict) -> tuple[str, dict]:
        return "memory_store", {"content": item["content"],
                                "metadata": {"tags": [item["project"]]}}

    def search(self, query: str, limit: int) -> tuple[str, dict]:
        return "memory_search", {"query": query, "limit": limit, "mode": "semantic"}

    def refused(self, result: dict) -> bool:
        return bool(result.get("isError")) and "Duplicate content" in _text(result)

    def hits(self, result: dict) -> tuple[int, str]:
        found = _FOUND.search(_text(result))
        return (int(found.group(1)) if found else 0), "semantic"

    def roots(self, client_pid: int) -> list[int]:
        return [client_pid]

    async def pending(self) -> int:
        return 0  # it embeds each memory before it answers the store

    async def wait_drained(self, timeout_s: float) -> float:
        return 0.0

    def stop(self) -> None:
        pass  # one process: it exits when its stdin closes


def _text(result: dict) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", []))


async def run_side(side, items: list[dict], queries: list[str], args, log: Path,
                   errfile: IO[bytes]) -> dict:
    """One server through the whole workload (its stderr to ``errfile``, the file ``log``);
    returns its figures."""
    out: dict = {"load_avg_1m": round(os.getloadavg()[0], 2)}
    stores, searches, refused, hits, modes = [], [], 0, [], {}
    pids: list[int] = []
    t0 = time.perf_counter()
    try:
        async with RawMcpClient(side.env, side.cwd, side.command, stderr=errfile) as client:
            out["spawn_to_initialize_s"] = round(time.perf_counter() - t0, 3)
            out["server_info"] = client.initialize_result.get("serverInfo", {})
            for item in items:
                name, call_args = side.store(item)
                t = time.perf_counter()
                result = await client.call_tool_result(name, call_args)
                stores.append(time.perf_counter() - t)
                if side.refused(result):
                    refused += 1
                elif result.get("isError"):
                    raise RuntimeError(f"{side.name} {name} failed: {_text(result)[:500]}")
            out["pending_when_searches_began"] = await side.pending()
            for query in queries:
                name, call_args = side.search(query, args.limit)
                t = time.perf_counter()
                result = await client.call_tool_result(name, call_args)
                searches.append(time.perf_counter() - t)
                if result.get("isError"):
                    raise RuntimeError(f"{side.name} {name} failed: {_text(result)[:500]}")
                n, mode = side.hits(result)
                hits.append(n)
                modes[mode] = modes.get(mode, 0) + 1
            roots = side.roots(client.pid)
            out["rss_after_workload"] = proc_tree.sample(roots)
            out["pending_after_workload"] = await side.pending()
            out["drained_s"] = round(await side.wait_drained(600), 1)
            await asyncio.sleep(args.rest)
            out["rss_at_rest"] = proc_tree.sample(roots)
            pids = [pr.pid for pr in proc_tree.tree(roots)]
    except Exception as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{side.name}: {exc}\n--- its stderr ({log}), last lines:\n"
                           f"{tail}") from exc
    finally:
        side.stop()
        left = proc_tree.gone(pids, 30, kill=lambda proc: proc.kill())
        if left:
            print(f"WARNING: {side.name} processes {left} did not exit; killed",
                  file=sys.stderr)
    return out | {"store_s": stores, "search_s": searches, "refused_as_duplicates": refused,
                  "search_hits_mean": round(statistics.fmean(hits), 2) if hits else 0.0,
                  "search_modes": modes}


def run(args, interp: Path) -> list[dict]:
    rounds = []
    for r in range(args.rounds):
        corpus = Corpus(seed=101 + r)
        now = datetime.now(UTC)
        items = [corpus.item(now) for _ in range(args.stores)]
        queries = corpus.queries(args.searches)
        order = ["sessiond", "peer"] if r % 2 == 0 else ["peer", "sessiond"]
        result: dict = {"order": order}
        for name in order:
            base = Path(tempfile.mkdtemp(prefix=f"sd-peer-{name}-"))
            try:
                side = SessiondSide(base) if name == "sessiond" else PeerSide(base, interp)
                log = base / "stderr.log"
                with open(log, "wb") as errfile:
                    result[name] = asyncio.run(run_side(side, items, queries, args, log,
                                                        errfile))
            finally:
                shutil.rmtree(base, ignore_errors=True)
            print(f"round {r + 1}/{args.rounds} {name}: store p50 "
                  f"{percentiles(result[name]['store_s'])['p50_ms']:.1f} ms, search p50 "
                  f"{percentiles(result[name]['search_s'])['p50_ms']:.1f} ms, RSS "
                  f"{result[name]['rss_after_workload']['rss_mb']:.0f} MB", file=sys.stderr)
        rounds.append(result)
    return rounds


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarize(rounds: list[dict], name: str) -> dict:
    """One server's figures over every round: pooled latency percentiles (each round's first
    store left out: it is reported apart, as it waits for the server's start), medians else."""
    rs = [r[name] for r in rounds]
    return {
        "store": percentiles([s for r in rs for s in r["store_s"][1:]]),
        "search": percentiles([s for r in rs for s in r["search_s"]]),
        "spawn_to_initialize_s": _median([r["spawn_to_initialize_s"] for r in rs]),
        "first_store_ms": _median([r["store_s"][0] * 1000 for r in rs]),
        "rss_after_mb": _median([r["rss_after_workload"]["rss_mb"] for r in rs]),
        "rss_rest_mb": _median([r["rss_at_rest"]["rss_mb"] for r in rs]),
        "pss_after_mb": _median([r["rss_after_workload"]["pss_mb"] for r in rs]),
        "pss_rest_mb": _median([r["rss_at_rest"]["pss_mb"] for r in rs]),
        "processes_after": rs[-1]["rss_after_workload"]["processes"],
        "processes_rest": rs[-1]["rss_at_rest"]["processes"],
        "stores": sum(len(r["store_s"]) for r in rs),
        "refused_as_duplicates": sum(r["refused_as_duplicates"] for r in rs),
        "pending_when_searches_began": [r["pending_when_searches_began"] for r in rs],
        "search_hits_mean": _median([r["search_hits_mean"] for r in rs]),
    }


def verdicts(ours: dict, peer: dict) -> dict:
    """Issue 10's targets: speed-ups are peer p50 / sessiond p50, RSS ratios sessiond / peer."""
    store = peer["store"]["p50_ms"] / ours["store"]["p50_ms"]
    search = peer["search"]["p50_ms"] / ours["search"]["p50_ms"]
    after = ours["rss_after_mb"] / peer["rss_after_mb"]
    rest = ours["rss_rest_mb"] / peer["rss_rest_mb"]
    return {
        "store_speedup": {"value": round(store, 2), "met": store >= TARGETS["store_speedup"]},
        "search_speedup": {"value": round(search, 2), "met": search >= TARGETS["search_speedup"]},
        "rss_ratio_after_workload": {"value": round(after, 2), "met": after <= TARGETS["rss_ratio"]},
        "rss_ratio_at_rest": {"value": round(rest, 2), "met": rest <= TARGETS["rss_ratio"]},
    }


def _met(v: dict) -> str:
    return "**yes**" if v["met"] else "no"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(ours: dict, peer: dict, v: dict, stores_per_round: int) -> str:
    def pq(s: dict, key: str) -> str:
        return f"{s[key]['p50_ms']:.1f} / {s[key]['p95_ms']:.1f}"

    def ratio(key: str, sub: str | None = None) -> str:
        a, b = (ours[key][sub], peer[key][sub]) if sub else (ours[key], peer[key])
        return f"{a / b:.2f}" if b else "n/a"

    def mb(s: dict, key: str, procs: str) -> str:
        return f"{s[key]:.0f} ({len(s[procs])} processes)"

    embedded = ", ".join(f"{stores_per_round - n}/{stores_per_round}"
                         for n in ours["pending_when_searches_began"])
    return "\n".join([
        _row("", "sessiond", PEER_NAME, "sessiond / peer", "target", "met"),
        _row(*["---"] * 6),
        _row("store p50 / p95 (ms)", pq(ours, "store"), pq(peer, "store"),
             f"{ratio('store', 'p50_ms')} ({v['store_speedup']['value']:.1f}x faster)",
             ">= 6x faster at p50", _met(v["store_speedup"])),
        _row("search p50 / p95 (ms)", pq(ours, "search"), pq(peer, "search"),
             f"{ratio('search', 'p50_ms')} ({v['search_speedup']['value']:.1f}x faster)",
             ">= 2.5x faster at p50", _met(v["search_speedup"])),
        _row("RSS of all server processes after the workload (MB)",
             mb(ours, "rss_after_mb", "processes_after"),
             mb(peer, "rss_after_mb", "processes_after"),
             f"{v['rss_ratio_after_workload']['value']:.2f}", "<= 1.3",
             _met(v["rss_ratio_after_workload"])),
        _row("RSS at rest (MB)", mb(ours, "rss_rest_mb", "processes_rest"),
             mb(peer, "rss_rest_mb", "processes_rest"),
             f"{v['rss_ratio_at_rest']['value']:.2f}", "<= 1.3", _met(v["rss_ratio_at_rest"])),
        _row("PSS after the workload / at rest (MB)",
             f"{ours['pss_after_mb']:.0f} / {ours['pss_rest_mb']:.0f}",
             f"{peer['pss_after_mb']:.0f} / {peer['pss_rest_mb']:.0f}",
             f"{ratio('pss_after_mb')} / {ratio('pss_rest_mb')}", "", ""),
        _row("spawn → MCP initialize (s)", f"{ours['spawn_to_initialize_s']:.2f}",
             f"{peer['spawn_to_initialize_s']:.2f}", ratio("spawn_to_initialize_s"), "", ""),
        _row("initialize → first store answered (ms)", f"{ours['first_store_ms']:.0f}",
             f"{peer['first_store_ms']:.0f}", ratio("first_store_ms"), "", ""),
        _row("stores embedded when the searches began", embedded,
             "all (each before its store answers)", "", "", ""),
        _row("stores refused as duplicates",
             f"{ours['refused_as_duplicates']} of {ours['stores']}",
             f"{peer['refused_as_duplicates']} of {peer['stores']}", "", "", ""),
        _row("results per search (mean)", f"{ours['search_hits_mean']:.1f}",
             f"{peer['search_hits_mean']:.1f}", "", "", ""),
    ])


def _processes(s: dict) -> str:
    return ", ".join(f"{k} {v['rss_mb']:.0f}" for k, v in sorted(
        s.items(), key=lambda kv: -kv[1]["rss_mb"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stores", type=int, default=300)
    ap.add_argument("--searches", type=int, default=50)
    ap.add_argument("--limit", type=int, default=5, help="results per search, both servers")
    ap.add_argument("--rest", type=float, default=35.0,
                    help="seconds after the workload (and sessiond's backlog) before 'at rest'")
    ap.add_argument("--peer-venv", type=Path, default=None,
                    help=f"default {peer_setup.default_venv_dir()}")
    ap.add_argument("--peer-python", default=None,
                    help="interpreter for the peer's venv (needs loadable SQLite extensions)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    interp = peer_setup.ensure_venv(args.peer_venv, args.peer_python)
    installed = peer_setup.peer_version(interp)
    if installed != peer_setup.PEER_VERSION:
        raise SystemExit(f"the peer venv has {installed}, not {peer_setup.PEER_VERSION}")
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    rounds = run(args, interp)
    load_after = os.getloadavg()
    ours, peer = summarize(rounds, "sessiond"), summarize(rounds, "peer")
    v = verdicts(ours, peer)
    table = markdown(ours, peer, v, args.stores)
    print(f"machine: {machine()}")
    print(f"date: {started:%Y-%m-%d %H:%M} UTC; sessiond {VERSION} vs {PEER_NAME}; "
          f"{args.rounds} round(s) of {args.stores} stores then {args.searches} searches "
          f"(limit {args.limit}); load average (1/5/15 min) {load_before[0]:.2f} / "
          f"{load_before[1]:.2f} / {load_before[2]:.2f} before, {load_after[0]:.2f} / "
          f"{load_after[1]:.2f} / {load_after[2]:.2f} after")
    print()
    print(table)
    print()
    for label, s in (("sessiond", ours), ("peer", peer)):
        print(f"{label} RSS by process (last round), after the workload: "
              f"{_processes(s['processes_after'])}; at rest: {_processes(s['processes_rest'])}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine(), "date": started.isoformat(), "sessiond_version": VERSION,
            "peer": PEER_NAME, "args": vars(args) | {"json": str(args.json),
                                                      "peer_venv": str(args.peer_venv)},
            "load_avg_before": load_before, "load_avg_after": load_after,
            "sessiond": ours, "peer_summary": peer, "verdicts": v, "table": table,
            "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
