"""Fills in embeddings after the fact, so a store never waits for the model.

A thread with its own event loop asks the DB thread for rows without a vector, sends them to the
embed pool in chunks (several in flight, so every embed worker stays busy during a bulk import)
and hands the vectors back to the DB thread. If the pool is down it backs off and tries again;
meanwhile those rows are still found by keywords. A failing database read (e.g. a flush that
cannot write) is logged, counted and retried with backoff; anything else that ends the loop is
logged and the loop restarts with backoff. ``running``, ``failures``, ``restarts`` and
``last_error`` show in the store's stats.
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
from shared.curve import ClientKeys
from shared.errors import ServiceError

log = logging.getLogger("sessiond.store.embed")

CHUNK = 128  # texts per embed request
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
RESTART_MIN_S = 1.0  # first wait before a failed loop starts again (doubling to BACKOFF_MAX_S)
SETTLE_S = 0.03  # quiet time after the last write before embedding starts
SETTLE_MAX = 10

RunOnDb = Callable[[Callable[[], Any]], Future]


class EmbedFiller:
    def __init__(self, endpoint: str, run_on_db: RunOnDb, store, *, in_flight: int,
                 curve: ClientKeys | None = None) -> None:
        self.endpoint = endpoint
        self.curve = curve  # the store's client keys when the hub uses CURVE
        self.run_on_db = run_on_db
        self.store = store
        self.max_in_flight = max(1, in_flight)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.embedded = 0
        self.failures = 0  # failed embed requests, vector writes and pending-row reads
        self.restarts = 0  # times the loop itself failed and was started again
        self.last_error = ""
        self._thread = threading.Thread(target=self._main, name="embed-filler", daemon=True)
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop (from any thread); it cancels what it has in flight."""
        self.stopping.set()
        self.wake.set()
        loop, event = self._loop_ref, self._stop_async
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # its loop has just closed: the thread is ending anyway

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop and wait for the thread; True if it ended. Its database calls must be able to
        run meanwhile (not from the DB thread: see ``StoreWorker.teardown``)."""
        self.request_stop()
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def _main(self) -> None:
        delay = RESTART_MIN_S
        while not self.stopping.is_set():
            try:
                asyncio.run(self._loop())
                return  # it returns only when stopping
            except Exception as exc:  # logged, counted, shown in stats; restarted below
                self.restarts += 1
                self.last_error = f"filler failed: {type(exc).__name__}: {exc}"
                log.exception("embed filler failed (restart #%d in %.1fs)", self.restarts, delay)
            if self.stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _db(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.run_on_db(fn))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        try:
            await asyncio.wait_for(self._stop_async.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _pending(self, ask: int) -> tuple[list[tuple[str, str]], int] | None:
        """The oldest rows without a vector, and how many rows lack one in all; None if the
        database failed (logged, counted)."""
        try:
            return await self._db(lambda: (self.store.pending_embeddings(ask),
                                           self.store.catalog.pending_count()))
        except (duckdb.Error, OSError) as exc:
            self.failures += 1
            self.last_error = f"reading rows to embed: {type(exc).__name__}: {exc}"
            log.warning("could not read rows to embed (attempt failed %d time(s) in all): %s",
                        self.failures, exc)
            return None

    async def _loop(self) -> None:
        self._stop_async = asyncio.Event()
        self._loop_ref = asyncio.get_running_loop()
        if self.stopping.is_set():
            return
        client = HubClient(self.endpoint, default_timeout_s=120, curve=self.curve)
        busy: set[str] = set()
        tasks: set[asyncio.Task] = set()
        stop = asyncio.create_task(self._stop_async.wait())
        backoff = db_backoff = BACKOFF_MIN_S
        try:
            while not self.stopping.is_set():
                want = (self.max_in_flight - len(tasks)) * CHUNK
                rows, waiting = [], 0
                if want > 0:
                    ask = want + len(busy)  # the oldest pending rows include those in flight
                    pending = await self._pending(ask)
                    if pending is None:
                        await self._pause(db_backoff)
                        db_backoff = min(db_backoff * 2, BACKOFF_MAX_S)
                        continue
                    db_backoff = BACKOFF_MIN_S
                    rows = [r for r in pending[0] if r[0] not in busy][:want]
                    waiting = pending[1]
                unsent = max(0, waiting - len(busy) - len(rows))  # after these, not in flight
                for i in range(0, len(rows), CHUNK):
                    chunk = rows[i:i + CHUNK]
                    busy.update(r[0] for r in chunk)
                    tasks.add(asyncio.create_task(self._embed(client, chunk, unsent)))
                if not tasks:
                    await asyncio.to_thread(self.wake.wait, 5.0)
                    await self._settle()
                    continue
                done, _ = await asyncio.wait(tasks | {stop}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop}:
                    tasks.discard(task)
                    chunk, ok = task.result()
                    busy.difference_update(r[0] for r in chunk)
                    if ok:
                        backoff = BACKOFF_MIN_S
                    else:
                        await self._pause(backoff)  # pool down: try again later
                        backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            stop.cancel()
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

    async def _embed(self, client: HubClient, chunk: list[tuple[str, str]], backlog: int):
        try:
            reply = await client.request(
                p.SERVICE_EMBED, p.Embed(texts=[c for _, c in chunk], kind="document",
                                         backlog=backlog),
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
        except (duckdb.Error, OSError, ValueError) as exc:
            self.failures += 1
            self.last_error = f"writing vectors: {exc}"
            log.error("could not store %d vectors: %s", len(ids), exc)
            return chunk, False
        return chunk, True
