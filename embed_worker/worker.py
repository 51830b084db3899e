"""The embed worker: all-MiniLM-L6-v2 vectors for the store (memories and queries).

Two lanes share the one model (an ONNX session runs calls from several threads at once):

- the **query lane**, a thread of its own, embeds what a user waits for (a search's query
  vector, a ping, the memory just stored) at once, so it never waits behind bulk work;
- the **bulk lane**, the compute thread, embeds documents (the store's backfill, an import):
  requests that arrive together are coalesced (a few ms at most) and each chunk is planned into
  length-sorted batches by the model. Its thread runs at a lower OS priority (nice
  ``BULK_NICE``), so on a busy machine the query lane, the store's acks and the gateways get the
  cores first, and bulk work takes what is left. (Nice values order threads within one
  scheduling group, a session under Linux's autogroup: the supervisor keeps its workers in its
  own session for this.) (A query request too large for the query lane
  goes to the bulk lane, ahead of the documents.)
- **more bulk lanes** (``embed_bulk_lanes``, one per core up to 4): helper threads, at the same
  lower priority, that each take the next chunk while the compute thread runs one, so a backlog
  uses every core while a lone request runs on one. They do so only for a backlog of at least
  ``embed_lanes_min_backlog`` texts (those queued here plus ``Embed.backlog``, the rest the
  sender says it still has): a few hundred memories stored in a burst take a few seconds on
  one lane, and a lane costs ~35 MB while it runs. Measured on 2 cores, 800 ~60-token texts:
  two lanes 134 texts/s against 70 for one, the process peaking at ~210 MB against ~170;
  a second embed worker process gave ~1.8x and held ~150 MB more.

(Query vectors
are cached by the gateway, before any round trip: with LRU routing across a pool a per-worker
cache would hit only 1/N of the time.) If the model cannot load, the worker still
registers and answers: ``Ping`` reports ``unhealthy`` with the reason and ``Embed`` answers
``unavailable``, so the store falls back to keyword search and the server stays usable.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import numpy as np

from embed_worker.scheduler import Job, Scheduler, Slice
from shared import heap
from shared import protocol as p
from shared.errors import BadRequest, Unavailable
from shared.worker import Delivery, Worker

log = logging.getLogger("sessiond.embed")

MAX_TEXTS = 4096  # per request
MAX_CHARS = 20_000  # per text; far beyond 256 tokens, so cutting here changes no vector
COALESCE_S = 0.002  # how long to wait for company when the pending work is small
QUERY_LANE_MAX_TEXTS = 16  # a query request of more texts goes to the bulk lane
# A document request this small is a memory just stored (the store's filler embeds each new one
# at once): it goes to the query lane too, so it is searchable by meaning as soon as before the
# bulk lane ran at a lower priority. A backfill's requests are 128 texts.
FRESH_MAX_TEXTS = 4
BULK_NICE = 10  # added to the bulk thread's nice value (Linux: per thread)
TRIM_AFTER_TEXTS = 64  # bulk texts embedded before the idle bulk lanes trim the heap
TRIM_IDLE_S = 0.2  # ... once every lane has had nothing to do for this long


def is_foreground(body: p.RequestBody | None) -> bool:
    """Does this request go to the query lane (a user waits for it)?"""
    if isinstance(body, p.Ping):
        return True
    if not isinstance(body, p.Embed) or not body.texts:
        return False
    limit = QUERY_LANE_MAX_TEXTS if body.kind == "query" else FRESH_MAX_TEXTS
    return len(body.texts) <= limit


def _texts_in(slices: list[Slice]) -> int:
    return sum(len(s.indices) for s in slices)


def lower_thread_priority(increment: int) -> bool:
    """Raise this thread's nice value by ``increment`` (on Linux a thread has its own); False
    where that is not possible (then it runs at the process's priority)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError) as exc:
        log.info("bulk lane keeps the process's priority: %s", exc)
        return False
    return True


class EmbedWorker(Worker):
    service = p.SERVICE_EMBED
    capacity = 64  # deliveries held at once, so concurrent requests can share a batch

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lane: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()  # the query lane's
        self.texts_embedded = 0  # by the bulk lanes
        self.helper_texts_embedded = 0  # the part of it embedded by the lanes beyond the first
        self.queries_embedded = 0  # by the query lane
        # Guards what the bulk lanes share: the scheduler, the jobs' progress, texts_embedded,
        # and the two flags below; helpers wait on it for a chunk to take.
        self.bulk = threading.Condition()
        self._main_lane_busy = False  # the compute thread is running a chunk
        self._helper_chunks = 0  # chunks the helpers are running
        self._running_texts = 0  # in the chunks the lanes are running
        self._backlog_hint = 0  # Embed.backlog of the latest document request
        self._wide = False  # a large backlog began: every lane runs until the worker idles
        self._helpers_stop = False

    def setup(self) -> None:
        from embed_worker.model import DIM, MODEL_ID, Embedder, ModelLoadError

        self.dim, self.model_id = DIM, MODEL_ID  # the id of the model loaded, once it is
        self.scheduler = Scheduler()
        self.load_error = ""
        t0 = time.monotonic()
        try:
            self.model: Embedder | None = Embedder.load(
                intra_op_threads=self.cfg.embed_threads,
                model_path=self.cfg.embed_model_path or None,
                tokenizer_path=self.cfg.embed_tokenizer_path or None,
                fast=self.cfg.embed_fast_model, cache_dir=self.cfg.model_cache_dir or None,
                memory_arena=self.cfg.embed_memory_arena)
        except ModelLoadError as exc:
            self.model, self.load_error = None, str(exc)
            log.error("model not loaded, serving degraded: %s", exc)
            return
        self.model_id = self.model.model_id
        heap.trim()  # what loading and optimising the graph freed
        log.info("model %s (%s) loaded in %.2fs (%d intra-op threads)", self.model_id,
                 self.model.model_path, time.monotonic() - t0, self.cfg.embed_threads)

    def pong(self) -> p.Pong:
        pong = super().pong()
        if self.model is None:
            pong.health, pong.reason = "unhealthy", f"model not loaded: {self.load_error}"
        pong.detail = self.stats()
        return pong

    def stats(self) -> dict[str, str | int | float | bool]:
        return {"model": self.model_id, "model_loaded": self.model is not None,
                "texts_embedded": self.texts_embedded + self.queries_embedded,
                "queries_embedded": self.queries_embedded,
                "bulk_lanes": self.cfg.embed_bulk_lanes,
                "backlog_hint": self._backlog_hint,
                "helper_texts_embedded": self.helper_texts_embedded}

    def submit(self, delivery: Delivery) -> None:
        """On the IO thread: a query or ping to the query lane, the rest to the bulk lane."""
        (self.lane if is_foreground(delivery.body) else self.inbox).put(delivery)

    # ------------------------------------------------------------ query lane
    def query_loop(self) -> None:
        """Answer queries and pings as they come, whatever the bulk lane is doing; queries
        that arrive together are embedded in one call."""
        while (first := self.lane.get()) is not None:
            batch, stop = [first], False
            while len(batch) < QUERY_LANE_MAX_TEXTS:
                try:
                    more = self.lane.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            answered: set[int] = set()
            try:
                self._answer_queries(batch, answered)
            except Exception as exc:  # a bug here must not leave the lane dead and queries hanging
                log.exception("the query lane failed on %d request(s); it keeps serving",
                              len(batch))
                for delivery in batch:
                    if id(delivery) not in answered:
                        self.finish(delivery, p.Error(code="internal",
                                                      message=f"query lane failed: {exc}"))
            if stop:
                break
        self.close_waker()

    def _answer_queries(self, batch: list[Delivery], answered: set[int]) -> None:
        """Embed the batch's queries in one call; ``answered`` collects the ``id`` of each
        delivery answered."""
        def finish(delivery: Delivery, reply: p.ReplyBody) -> None:
            self.finish(delivery, reply)
            answered.add(id(delivery))

        jobs: list[tuple[Delivery, list[str]]] = []
        for delivery in batch:
            if not isinstance(delivery.body, p.Embed):
                finish(delivery, self.answer(delivery))  # a ping
                continue
            try:
                jobs.append((delivery, self._validate(delivery.body)))
            except (BadRequest, Unavailable) as exc:
                finish(delivery, p.Error(code=exc.code, message=exc.message))
        if not jobs:
            return
        texts = [t for _, ts in jobs for t in ts]
        try:
            vectors = self.model.embed(texts)
        except Exception as exc:  # ONNX or the tokenizer failed: answer and keep serving
            log.exception("embedding %d query texts failed", len(texts))
            for delivery, _ in jobs:
                finish(delivery, p.Error(code="internal", message=f"model failed: {exc}"))
            return
        self.queries_embedded += len(texts)
        row = 0
        for delivery, ts in jobs:
            self._reply(delivery, vectors[row:row + len(ts)])
            answered.add(id(delivery))
            row += len(ts)

    # ------------------------------------------------------------ bulk lane (compute thread)
    def compute_loop(self) -> None:
        lane = threading.Thread(target=self.query_loop, name="embed-query-lane")
        lane.start()
        helpers = [threading.Thread(target=self.helper_loop, name=f"embed-bulk-{i}")
                   for i in range(1, self.cfg.embed_bulk_lanes)]
        for helper in helpers:
            helper.start()
        lower_thread_priority(BULK_NICE)
        stopping = False
        trimmed_at = self.texts_embedded
        while not stopping or self._has_work():
            if not self._has_work():
                untrimmed = self.texts_embedded - trimmed_at >= TRIM_AFTER_TEXTS
                try:
                    delivery = self.inbox.get(
                        timeout=TRIM_IDLE_S if untrimmed or self._wide else None)
                except queue.Empty:  # idle after bulk work: the backlog is done; back to the
                    with self.bulk:  # resting size, once no helper holds a chunk's buffers
                        self._wide = False
                        idle = self._helper_chunks == 0
                    if idle and untrimmed:
                        heap.trim()
                        trimmed_at = self.texts_embedded
                    continue
                if delivery is None:
                    break
                self._admit(delivery)
            stopping = self._gather() or stopping
            self._run_chunk()
        with self.bulk:  # nothing is left to take: each helper ends after its current chunk
            self._helpers_stop = True
            self.bulk.notify_all()
        for helper in helpers:
            helper.join()
        self.lane.put(None)
        lane.join()
        self.teardown()
        self.close_waker()

    def helper_loop(self) -> None:
        """A bulk lane beyond the first: take the next chunk whenever the compute thread is
        running one and more work waits; otherwise sleep."""
        lower_thread_priority(BULK_NICE)
        while True:
            with self.bulk:
                while not self._helpers_stop and not (self._main_lane_busy
                                                      and self._backlog_is_large()):
                    self.bulk.wait()
                if self._helpers_stop:
                    return
                slices = self.scheduler.next_chunk()
                self._helper_chunks += 1
                self._running_texts += _texts_in(slices)
            try:
                self._embed_slices(slices, helper=True)
            except Exception as exc:  # a bug here must not end the lane or strand its requests
                log.exception("a bulk lane failed on a chunk; it keeps serving")
                self._fail_jobs(slices, f"bulk lane failed: {exc}")
            finally:
                with self.bulk:
                    self._helper_chunks -= 1
                    self._running_texts -= _texts_in(slices)

    def _backlog_is_large(self) -> bool:
        """Is there a chunk to take, in a backlog worth another lane: texts queued, running
        and waiting at the sender? Once one is, every lane runs until the worker idles, so a
        backlog's last few hundred texts do not fall back to one lane. (With ``self.bulk``
        held.)"""
        if not self.scheduler:
            return False
        if not self._wide:
            self._wide = (self.scheduler.pending_texts() + self._running_texts
                          + self._backlog_hint >= self.cfg.embed_lanes_min_backlog)
        return self._wide

    def _has_work(self) -> bool:
        with self.bulk:
            return bool(self.scheduler)

    def _gather(self) -> bool:
        """Admit what has arrived; wait a moment for more if the pending work is small.
        Returns True if the stop sentinel was seen."""
        deadline = time.monotonic() + COALESCE_S
        while True:
            with self.bulk:
                small = self.scheduler.pending_texts() < 32 and not self.scheduler.queries
            timeout = deadline - time.monotonic() if small else 0
            try:
                delivery = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
            except queue.Empty:
                return False
            if delivery is None:
                return True
            self._admit(delivery)

    def _admit(self, delivery: Delivery) -> None:
        """Validate one request and queue its texts; answer at once if it is invalid or a ping."""
        body = delivery.body
        if not isinstance(body, p.Embed):
            self.finish(delivery, self.answer(delivery))
            return
        try:
            texts = self._validate(body)
        except (BadRequest, Unavailable) as exc:
            self.finish(delivery, p.Error(code=exc.code, message=exc.message))
            return
        try:
            lengths = self.model.token_lengths(texts)
        except Exception as exc:  # the tokenizer choked: answer and keep serving
            log.exception("tokenizing failed")
            self.finish(delivery, p.Error(code="internal", message=f"tokenizer failed: {exc}"))
            return
        job = Job(key=delivery, texts=texts, lengths=lengths, is_query=body.kind == "query",
                  out=np.empty((len(texts), self.dim), dtype=np.float32))
        with self.bulk:
            self.scheduler.add(job)
            if not job.is_query:
                self._backlog_hint = max(0, body.backlog)
            self.bulk.notify_all()  # a helper may take part of it if the compute thread is busy

    def _validate(self, body: p.Embed) -> list[str]:
        if self.model is None:
            raise Unavailable(f"embedding model not loaded: {self.load_error}")
        if not body.texts:
            raise BadRequest("texts is empty: send at least one text")
        if len(body.texts) > MAX_TEXTS:
            raise BadRequest(f"{len(body.texts)} texts in one request; the limit is {MAX_TEXTS}")
        for i, text in enumerate(body.texts):
            if not text.strip():
                raise BadRequest(f"text {i} is empty or whitespace")
        return [t[:MAX_CHARS] for t in body.texts]

    def _run_chunk(self) -> None:
        """On the compute thread: run the next chunk, letting helpers take the ones after it."""
        with self.bulk:
            slices = self.scheduler.next_chunk()
            if not slices:
                return
            self._main_lane_busy = True
            self._running_texts += _texts_in(slices)
            self.bulk.notify_all()
        try:
            self._embed_slices(slices)
        finally:
            with self.bulk:
                self._main_lane_busy = False
                self._running_texts -= _texts_in(slices)

    def _embed_slices(self, slices: list[Slice], helper: bool = False) -> None:
        """Embed one chunk (outside the lock) and record it; answer each job it completes."""
        texts = [s.job.texts[i] for s in slices for i in s.indices]
        try:
            vectors = self.model.embed(texts)
        except Exception as exc:  # ONNX failed on this chunk: fail its requests, keep serving
            log.exception("embedding a chunk of %d texts failed", len(texts))
            self._fail_jobs(slices, f"model failed: {exc}")
            return
        complete: list[Job] = []
        with self.bulk:
            self.texts_embedded += len(texts)
            if helper:
                self.helper_texts_embedded += len(texts)
            row = 0
            for s in slices:
                n = len(s.indices)
                s.job.out[s.indices] = vectors[row:row + n]
                row += n
                s.job.done += n
                if s.job.complete:
                    complete.append(s.job)
        for job in complete:
            self._reply(job.key, job.out)

    def _fail_jobs(self, slices: list[Slice], message: str) -> None:
        """Answer each job of ``slices`` with an error, once; the scheduler forgets the rest of
        them (a job failed never completes, so no lane answers it again)."""
        with self.bulk:
            jobs = [job for job in {id(s.job): s.job for s in slices}.values() if not job.failed]
            for job in jobs:
                job.order.clear()
                job.failed = True
        for job in jobs:
            self.finish(job.key, p.Error(code="internal", message=message))

    def _reply(self, delivery: Delivery, out: np.ndarray) -> None:
        if time.time() > delivery.header.deadline:
            self.finish(delivery, p.Error(code="timeout", message="deadline passed while embedding"))
            return
        self.finish(delivery, p.Vectors(data=out.astype("<f4", copy=False).tobytes(),
                                        count=out.shape[0], dim=self.dim, model_id=self.model_id))
