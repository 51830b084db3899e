"""Fills in embeddings after the fact, so a store never waits for the model.

A thread with its own event loop asks the DB thread for rows without a vector, sends them to the
embed pool in chunks (several in flight, so every embed worker stays busy during a bulk import)
and hands the vectors back to the DB thread. If the pool is down it backs off and tries again;
meanwhile those rows are still found by keywords.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import duckdb
import numpy as np

from shared import protocol as p
from shared.client import HubClient
from shared.errors import ServiceError

log = logging.getLogger("sessiond.store.embed")

CHUNK = 128  # texts per embed request
BACKOFF_MAX_S = 30.0
SETTLE_S = 0.03  # quiet time after the last write before embedding starts
SETTLE_MAX = 10

RunOnDb = Callable[[Callable[[], Any]], Future]


class EmbedFiller:
    def __init__(self, endpoint: str, run_on_db: RunOnDb, store, *, in_flight: int) -> None:
        self.endpoint = endpoint
        self.run_on_db = run_on_db
        self.store = store
        self.max_in_flight = max(1, in_flight)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.embedded = 0
        self.failures = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._main, name="embed-filler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self._thread.join(timeout=5)

    def _main(self) -> None:
        asyncio.run(self._loop())

    async def _db(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.run_on_db(fn))

    async def _loop(self) -> None:
        client = HubClient(self.endpoint, default_timeout_s=120)
        busy: set[str] = set()
        tasks: set[asyncio.Task] = set()
        backoff = 0.5
        try:
            while not self.stopping.is_set():
                want = (self.max_in_flight - len(tasks)) * CHUNK
                rows = []
                if want > 0:
                    ask = want + len(busy)  # the oldest pending rows include those in flight
                    pending = await self._db(lambda ask=ask: self.store.pending_embeddings(ask))
                    rows = [r for r in pending if r[0] not in busy][:want]
                for i in range(0, len(rows), CHUNK):
                    chunk = rows[i:i + CHUNK]
                    busy.update(r[0] for r in chunk)
                    tasks.add(asyncio.create_task(self._embed(client, chunk)))
                if not tasks:
                    await asyncio.to_thread(self.wake.wait, 5.0)
                    await self._settle()
                    continue
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    tasks.discard(task)
                    chunk, ok = task.result()
                    busy.difference_update(r[0] for r in chunk)
                    if ok:
                        backoff = 0.5
                    else:
                        await asyncio.sleep(backoff)  # pool down: try again later
                        backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            for task in tasks:
                task.cancel()
            client.close()

    async def _settle(self) -> None:
        """Let a burst of writes finish before taking DB time: a store's ack must not queue
        behind this thread's reads (at most ``SETTLE_MAX`` waits, so bulk loads still flow)."""
        for _ in range(SETTLE_MAX):
            self.wake.clear()
            await asyncio.sleep(SETTLE_S)
            if not self.wake.is_set():
                return

    async def _embed(self, client: HubClient, chunk: list[tuple[str, str]]):
        try:
            reply = await client.request(
                p.SERVICE_EMBED, p.Embed(texts=[c for _, c in chunk], kind="document"),
                idempotent=True, retry_unavailable=True, timeout_s=120)
        except ServiceError as exc:
            self.failures += 1
            self.last_error = f"{exc.code}: {exc.message}"
            log.warning("embedding %d rows failed (%s); they stay keyword-only for now",
                        len(chunk), self.last_error)
            return chunk, False
        vectors = np.frombuffer(reply.data, dtype="<f4").reshape(reply.count, reply.dim)
        ids = [i for i, _ in chunk]
        try:
            self.embedded += await self._db(lambda: self.store.set_embeddings(ids, vectors))
        except (duckdb.Error, ValueError) as exc:
            self.failures += 1
            self.last_error = f"writing vectors: {exc}"
            log.error("could not store %d vectors: %s", len(ids), exc)
            return chunk, False
        return chunk, True
