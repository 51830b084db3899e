"""The stack apart (docker-compose.yml's topology as local processes) against the local default,
in the same run.

1. Latency: ``store_reflection`` and ``quick_search`` (client-side wall time, ``fastmcp.Client``
   for both) through the HTTP gateway over TCP + CURVE (hub, store, 2 embed workers, quality,
   gateway: six processes, on 127.0.0.1) and through a stdio gateway on the local ipc stack
   (``sessiond serve`` + ``sessiond stack``, 2 embed workers); the ratio apart / local. A hub
   ``Ping`` sent straight to each hub separates the transport's share.
2. Joining: bulk embedding through the store (``RememberMany`` x 500, until nothing is pending)
   with one embed worker, again after a second one joined the running hub (the hub's per-worker
   counters show its share), and again after it left; the ratio is the two-worker rate over
   the mean of the one-worker rates before and after.

    uv run python -m bench.apart [--calls 100] [--bulk-texts 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.embed_raw import medium_texts
from bench.harness import REPO, machine, percentiles, running_stack
from bench.workload import Corpus
from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.errors import ServiceError
from shared.transport import endpoints

BULK_BATCH = 500


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Apart:
    """hub, store, quality, N embed workers and an HTTP gateway, each its own process and data
    dir, over TCP on 127.0.0.1 with CURVE (what docker-compose.yml runs, without Docker)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        keys = root / "keys"
        subprocess.run([sys.executable, "-m", "sessiond", "keys", "init", str(keys)],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL, env=self._env())
        self.token = (keys / "http.token").read_text().strip()
        self.ports = {"TCP_CLIENT_PORT": _free_port(), "TCP_WORKER_PORT": _free_port()}
        self.http = f"127.0.0.1:{_free_port()}"
        self.common = {f"SESSIOND_{k}": str(v) for k, v in self.ports.items()}
        self.common.update(SESSIOND_CURVE_KEYS_DIR=str(keys), SESSIOND_LOG_LEVEL="WARNING")
        self.joined = {**self.common, "SESSIOND_HUB_HOST": "127.0.0.1"}
        self.client_env = self._env(**self.joined, SESSIOND_HOME=str(root / "client"))
        self.embed = 0

    @staticmethod
    def _env(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
        return {**env, **extra}

    def start(self, name: str, args: list[str], settings: dict[str, str]) -> None:
        env = self._env(**settings, SESSIOND_HOME=str(self.root / name))
        with open(self.root / f"{name}.out", "ab") as out:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "sessiond", *args], env=env, cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT))

    def up(self, embed_workers: int, gateway: bool) -> None:
        self.start("hub", ["hub"], {**self.common, "SESSIOND_TRANSPORT": "tcp"})
        self.start("store", ["worker", "store"], {**self.joined, "SESSIOND_EMBED_WORKERS": "2"})
        self.start("quality", ["worker", "quality"], self.joined)
        for _ in range(embed_workers):
            self.add_embed()
        if gateway:
            self.start("gateway", ["serve", "--http", self.http],
                       {**self.joined, "SESSIOND_HTTP_TOKEN_FILE":
                        str(self.root / "keys" / "http.token")})

    def add_embed(self) -> subprocess.Popen:
        self.start(f"embed-{self.embed}", ["worker", "embed"], self.joined)
        self.embed += 1
        return self.procs[-1]

    def hub_client(self, timeout_s: float = 300) -> HubClient:
        return HubClient.for_config(load_config(self.client_env), default_timeout_s=timeout_s)

    def down(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def wait_workers(client: HubClient, want: dict[str, int], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = await client.request(p.SERVICE_HUB, p.StackStatus(), timeout_s=2)
            ready: dict[str, int] = {}
            for w in info.workers:
                if w.state in ("ready", "busy"):
                    ready[w.service] = ready.get(w.service, 0) + 1
            if all(ready.get(s, 0) >= n for s, n in want.items()):
                return
        except ServiceError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers {want} not ready")
        await asyncio.sleep(0.1)


async def wait_listening(address: str, timeout_s: float = 60) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def hub_ping(client: HubClient, n: int = 300) -> dict:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.request(p.SERVICE_HUB, p.Ping())
        samples.append(time.perf_counter() - t0)
    return percentiles(samples[20:])


async def hub_remember(client: HubClient, corpus: Corpus, n: int = 100) -> dict:
    """A durable store sent straight to the hub (no MCP, no gateway)."""
    samples = []
    for i in range(n + 5):
        body = p.Remember(kind="reflection", content=corpus.text(), project="direct")
        t0 = time.perf_counter()
        await client.request(p.SERVICE_STORE, body)
        if i >= 5:
            samples.append(time.perf_counter() - t0)
    return percentiles(samples)


async def tool_latencies(client, corpus: Corpus, calls: int) -> dict:
    async def timed(tool: str, args_of) -> dict:
        samples = []
        for i in range(calls + 5):
            t0 = time.perf_counter()
            result = await client.call_tool(tool, args_of(i), raise_on_error=True)
            if i >= 5:  # warm-up
                samples.append(time.perf_counter() - t0)
            assert result.structured_content is not None
        return percentiles(samples)

    queries = corpus.queries(calls + 5)
    return {
        "ping": await timed("ping", lambda i: {}),
        "store_reflection": await timed("store_reflection", lambda i: {
            "content": corpus.text(), "project": "bench"}),
        "quick_search": await timed("quick_search", lambda i: {"query": queries[i]}),
    }


def local_latency(calls: int) -> dict:
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    with running_stack(embed_workers=2, embed_threads=1, idle_timeout_s=3600) as st:
        async def run():
            hub = HubClient(endpoints(st.cfg).clients)
            ping = await hub_ping(hub)
            remember = await hub_remember(hub, Corpus(seed=9))
            hub.close()
            transport = StdioTransport(sys.executable, ["-m", "sessiond", "serve"], env=st.env,
                                       cwd=str(REPO), keep_alive=False)
            async with Client(transport, timeout=60, init_timeout=30) as client:
                await asyncio.sleep(1.0)  # the gateway's background imports
                return {"hub_ping": ping, "hub_remember": remember,
                        **await tool_latencies(client, Corpus(seed=5), calls)}

        return asyncio.run(run())


def apart_latency(root: Path, calls: int) -> dict:
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    apart = Apart(root)
    try:
        apart.up(embed_workers=2, gateway=True)

        async def run():
            hub = apart.hub_client()
            await wait_workers(hub, {"store": 1, "embed": 2, "quality": 1})
            ping = await hub_ping(hub)
            remember = await hub_remember(hub, Corpus(seed=9))
            hub.close()
            transport = StreamableHttpTransport(
                f"http://{apart.http}/mcp", headers={"Authorization": f"Bearer {apart.token}"})
            await wait_listening(apart.http)
            async with Client(transport, timeout=60, init_timeout=30) as client:
                await asyncio.sleep(1.0)
                return {"hub_ping": ping, "hub_remember": remember,
                        **await tool_latencies(client, Corpus(seed=5), calls)}

        return asyncio.run(run())
    finally:
        apart.down()


async def bulk(client: HubClient, texts: list[str], tag: str) -> dict:
    items = [p.Remember(kind="conversation", content=t, project=tag) for t in texts]
    t0 = time.perf_counter()
    for lo in range(0, len(items), BULK_BATCH):
        batch = p.RememberMany(items=items[lo:lo + BULK_BATCH])
        reply = await client.request(p.SERVICE_STORE, batch)
        assert isinstance(reply, p.StoredMany)
    while True:
        info = await client.request(p.SERVICE_STORE, p.StoreStats())
        if info.data["pending_embeddings"] == 0:
            break
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - t0
    return {"n": len(texts), "seconds": round(seconds, 2),
            "sentences_per_s": round(len(texts) / seconds, 1)}


async def per_worker(client: HubClient) -> dict[str, int]:
    await asyncio.sleep(1.0)  # a heartbeat or two carries the counters
    info = await client.request(p.SERVICE_HUB, p.StackStatus())
    return {w.name: int(w.stats.get("texts_embedded", 0)) for w in info.workers
            if w.service == p.SERVICE_EMBED}


def joining(root: Path, n: int) -> dict:
    """One embed worker, then a second joins, then it leaves again (the first and last phases
    bracket the drift of a shared machine); 100 texts first warm everything up."""
    texts = medium_texts(3 * n + 100)
    apart = Apart(root)
    try:
        apart.up(embed_workers=1, gateway=False)

        async def run():
            hub = apart.hub_client()
            try:
                await wait_workers(hub, {"store": 1, "embed": 1, "quality": 1})
                await bulk(hub, texts[3 * n:], "warm-up")
                one = await bulk(hub, texts[:n], "one")
                one["per_worker_texts"] = await per_worker(hub)
                second = apart.add_embed()  # a second worker joins the running hub
                await wait_workers(hub, {"embed": 2})
                two = await bulk(hub, texts[n:2 * n], "two")
                two["per_worker_texts"] = await per_worker(hub)
                second.terminate()
                second.wait(30)
                await asyncio.sleep(1.0)  # the hub purges it
                again = await bulk(hub, texts[2 * n:3 * n], "again")
                alone = (one["sentences_per_s"] + again["sentences_per_s"]) / 2
                return {"one_worker": one, "after_second_joined": two,
                        "after_it_left": again,
                        "ratio": round(two["sentences_per_s"] / alone, 2)}
            finally:
                hub.close()

        return asyncio.run(run())
    finally:
        apart.down()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per tool and mode")
    parser.add_argument("--bulk-texts", type=int, default=1000, help="texts per bulk phase")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="sd-apart-"))
    out: dict = {"machine": machine(), "cores": os.cpu_count(),
                 "loadavg_before": os.getloadavg()}
    try:
        print(f"[apart] {out['machine']}; local ipc stack + stdio gateway ...", flush=True)
        out["local"] = local_latency(args.calls)
        print("[apart] TCP + CURVE, six processes, HTTP gateway ...", flush=True)
        out["apart"] = apart_latency(root / "latency", args.calls)
        out["ratio_p50"] = {k: round(out["apart"][k]["p50_ms"] / out["local"][k]["p50_ms"], 2)
                            for k in ("hub_ping", "hub_remember", "ping", "store_reflection",
                                      "quick_search")}
        print("[apart] bulk embedding: one embed worker, then a second joins ...", flush=True)
        out["joining"] = joining(root / "joining", args.bulk_texts)
        out["loadavg_after"] = os.getloadavg()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
