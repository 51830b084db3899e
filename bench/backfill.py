"""Backfill throughput and memory of embed pool layouts, through the whole stack.

For each layout (a set of settings), a fresh stack is given ``--texts`` ~60-token memories with
``RememberMany`` (as an import does); the store's embed filler then asks the embed pool for
their vectors. Measured: the seconds until no memory is left without a vector (texts/s), and
the highest summed RSS of the embed worker processes while it ran (sampled every 100 ms).
Layouts run alternately, ``--rounds`` times each, in one run; ratios are against the first.

Usage: ``uv run python -m bench.backfill [--texts 1500] [--rounds 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from pathlib import Path

import psutil

from bench.busy_latency import _send_backlog, _wait_drained
from bench.embed_raw import medium_texts
from bench.harness import machine, running_stack
from shared import protocol as p
from shared.client import HubClient
from shared.transport import endpoints

MB = 2**20
LAYOUTS = {
    "1 worker x 2 bulk lanes (default)": {"embed_workers": 1, "embed_bulk_lanes": 2},
    "2 workers x 1 bulk lane (before)": {"embed_workers": 2, "embed_workers_at_rest": 2,
                                         "embed_bulk_lanes": 1},
    "1 worker x 1 bulk lane": {"embed_workers": 1, "embed_bulk_lanes": 1},
}


class EmbedRss:
    """The peak of the embed workers' summed RSS, sampled in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, sum(pr.memory_info().rss for pr in self.procs))
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def one_run(cfg, texts: list[str]) -> dict:
    hub = HubClient(endpoints(cfg).clients, default_timeout_s=120)
    try:
        info = await hub.request(p.SERVICE_HUB, p.StackStatus())
        pids = [w.pid for w in info.workers if w.service == p.SERVICE_EMBED and w.pid]
        meter = EmbedRss(pids)
        t0 = time.perf_counter()
        await _send_backlog(hub, texts)
        await _wait_drained(hub, 600)
        seconds = time.perf_counter() - t0
        peak = meter.stop()
    finally:
        hub.close()
    return {"seconds": round(seconds, 2), "texts_per_s": round(len(texts) / seconds, 1),
            "embed_rss_peak_mb": round(peak / MB), "embed_processes": len(pids)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    texts = medium_texts(args.texts, seed=57)
    out: dict = {"machine": machine(), "load_avg_start": os.getloadavg()[0], "texts": args.texts,
                 "runs": {name: [] for name in LAYOUTS}}
    for _ in range(args.rounds):
        for name, settings in LAYOUTS.items():
            with running_stack(idle_timeout_s=3600, **settings) as st:
                out["runs"][name].append(asyncio.run(one_run(st.cfg, texts)))
    out["load_avg_end"] = os.getloadavg()[0]
    print(f"machine: {out['machine']}; load average {out['load_avg_start']:.2f} -> "
          f"{out['load_avg_end']:.2f}; {args.texts} texts, {args.rounds} rounds (median)")
    base = None
    for name, runs in out["runs"].items():
        rate = statistics.median(r["texts_per_s"] for r in runs)
        peak = statistics.median(r["embed_rss_peak_mb"] for r in runs)
        base = base or (rate, peak)
        out.setdefault("summary", {})[name] = {"texts_per_s": rate, "embed_rss_peak_mb": peak}
        print(f"  {name:36s} {rate:7.1f} texts/s ({rate / base[0]:.2f}x)   embed RSS peak "
              f"{peak:5.0f} MB ({peak / base[1]:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
