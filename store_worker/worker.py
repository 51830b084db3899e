"""The store worker: the only process that opens the DuckDB file.

Every read and write of memory comes here through the hub, so any number of gateways share one
memory without lock errors. Requests run one at a time on the compute thread, which alone
touches the database; the embed filler hands its reads and writes to that thread too. An export
or import runs there as a job in short slices between the other requests (``bulk_io``).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import duckdb
import numpy as np

from shared import protocol as p
from shared.config import zone_of
from shared.curve import client_keys
from shared.errors import BadRequest, Internal, ServiceError, SessiondError
from shared.paths import check_export_path, check_io_path
from shared.privacy import Privacy
from shared.transport import endpoints
from shared.worker import Delivery, Worker
from store_worker import browse, bulk_io, permissions_store, sessions_store
from store_worker.embed_filler import EmbedFiller
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput
from store_worker.search import timeexpr

log = logging.getLogger("sessiond.store")

WRITES = (p.Remember, p.RememberMany, p.DeleteMemories)
BULK = (p.ExportMemories, p.ImportMemories)  # run as jobs in slices
# Journaled stores go into the table after this much idle time, or once this many wait: a flush
# of one row costs ~2 ms (a transaction, then emptying the journal), so flushing after every
# store would make the next store of a burst wait for it; batching makes that cost rare.
FLUSH_IDLE_S = 0.05
FLUSH_MAX_ROWS = 256
# With memories waiting for their supersession check, the store works through them after this
# much idle time, in slices of about this long.
LINK_IDLE_S = 0.01
LINK_SLICE_S = 0.005
FILLER_STOP_S = 5.0  # at shutdown; it cancels its embed requests at once


class StoreWorker(Worker):
    service = p.SERVICE_STORE
    capacity = 2  # one running, one queued: the hub holds the rest, so a crash loses little

    def setup(self) -> None:
        filler_keys = client_keys(self.cfg, "client")  # it asks the embed pool as a client does
        try:
            self.store = MemoryStore.open(self.cfg.db_path,
                                          privacy=Privacy.from_config(self.cfg))
        except (duckdb.Error, OSError) as exc:
            raise SessiondError(f"cannot open {self.cfg.db_path}: {exc}") from exc
        log.info("opened %s: %d memories", self.cfg.db_path, self.store.count)
        self.tz = zone_of(self.cfg.timezone)  # where "today" and "last week" are meant
        self.filler = EmbedFiller(endpoints(self.cfg).clients, self.run_on_db, self.store,
                                  in_flight=2 * self.cfg.embed_workers,
                                  curve=filler_keys)
        self.filler.start()
        self.bulk: tuple[Delivery, bulk_io.Job] | None = None  # the export/import under way

    def run_on_db(self, fn) -> Future:
        """Run ``fn`` on the DB thread (from any thread); its result arrives in the future."""
        fut: Future = Future()
        self.inbox.put(lambda: _settle(fut, fn))
        return fut

    def compute_loop(self) -> None:
        while True:
            try:  # idle: flush journaled stores, then check new memories for supersession
                item = self.inbox.get(timeout=self._idle_timeout())
            except queue.Empty:
                self._flush_journal()
                self._link_superseded()
                continue
            if item is None:
                self._abort_bulk("the store is stopping", "unavailable")
                break
            if callable(item):
                item()
                continue
            if isinstance(item.body, BULK):
                self._start_bulk(item)
                continue
            self.finish(item, self.answer(item))
            if isinstance(item.body, WRITES):
                self.filler.wake.set()
            if self.store.unflushed >= FLUSH_MAX_ROWS:
                self._flush_journal()
        self.teardown()
        self.close_waker()

    def _idle_timeout(self) -> float | None:
        if self.store.unflushed:
            return FLUSH_IDLE_S
        return LINK_IDLE_S if self.store.linker.pending else None

    def _link_superseded(self) -> None:
        """One slice of supersession checks (a few ms: a request arriving meanwhile waits at
        most that long). A database error is logged and the check tried again later."""
        try:
            self.store.link_superseded(LINK_SLICE_S)
        except duckdb.Error as exc:
            log.error("supersession check failed (tried again when idle): %s", exc)

    def _flush_journal(self) -> None:
        """Move journaled stores into the table (a burst of stores becomes one transaction).
        On failure the records stay in the journal, durable, and the next flush
        (every read runs one first) tries again."""
        try:
            self.store.flush()
        except (duckdb.Error, OSError) as exc:
            log.error("could not write journaled memories into the table (kept in the "
                      "journal, retried on the next flush): %s", exc)

    def teardown(self) -> None:
        """Stop the embed filler, then close the store (flush, index snapshot, checkpoint).
        The database is closed even if the flush or the checkpoint fails; memories that
        could not be flushed stay in the journal and are replayed at the next start."""
        self._stop_filler()
        try:
            self.store.close()
        except (duckdb.Error, OSError):
            log.exception("the database was closed without its final flush or checkpoint")
            return
        log.info("database checkpointed and closed")

    def _stop_filler(self) -> None:
        """Stop the filler thread. This is the DB thread and the filler may be waiting on a
        call queued here, so run those calls while waiting for it."""
        self.filler.request_stop()
        deadline = time.monotonic() + FILLER_STOP_S
        while self.filler.running and time.monotonic() < deadline:
            try:
                item = self.inbox.get(timeout=0.02)
            except queue.Empty:
                continue
            if callable(item):
                item()
        if self.filler.running:
            log.error("the embed filler did not stop within %.0f s", FILLER_STOP_S)

    def pong(self) -> p.Pong:
        pong = super().pong()
        pong.detail = {"db_path": str(self.cfg.db_path), **self.stats()}
        return pong

    def stats(self) -> p.Stats:
        f = self.filler
        return {"memories": self.store.count, "embed_pending": self.store.catalog.pending_count(),
                "embedded_by_filler": f.embedded,
                "embed_failures": f.failures, "embed_filler_running": f.running,
                "embed_filler_restarts": f.restarts, "embed_filler_last_error": f.last_error}

    # ------------------------------------------------------------ requests
    def handle(self, body: p.RequestBody) -> p.ReplyBody:
        return _store_errors(body, lambda: self._handle(body))

    def _handle(self, body: p.RequestBody) -> p.ReplyBody:
        s = self.store
        match body:
            case p.Remember():
                r = s.add(body.kind, body.content, body.project, body.tags, body.session_id,
                          body.metadata, body.created_at)
                return p.Stored(id=r.id, duplicate=r.duplicate, redacted=r.redacted)
            case p.RememberMany(items=items):
                results = s.add_many([_item(i) for i in items])
                return p.StoredMany([p.Stored(r.id, r.duplicate, r.redacted) for r in results])
            case p.Search():
                return self._search(body)
            case p.GetMemories(ids=ids):
                return p.Memories([_linked(s, _memory(m)) for m in s.get(ids)])
            case p.DeleteMemories(ids=ids, project=project, before=before):
                return p.Count(count=s.delete(ids=ids, project=project, before=before))
            case p.StoreStats(session_id=session_id):
                f = self.filler
                data = {**s.stats(), "embed_filler": {
                    "running": f.running, "embedded": f.embedded, "failures": f.failures,
                    "restarts": f.restarts, "last_error": f.last_error}}
                if session_id:
                    data["session"] = sessions_store.session_stats(s, session_id)
                return p.StoreInfo(data)
            case p.AddDependency():
                d = s.add_dependency(body.source, body.target, body.dependency_type,
                                     body.description)
                return p.Dependencies([p.Dependency(**d)])
            case p.ListDependencies(project=project):
                return p.Dependencies([p.Dependency(**d) for d in s.dependencies(project)])
            case (p.CheckPermission() | p.GrantPermission() | p.RevokePermission()
                  | p.LogPermission() | p.PermissionStatus()):
                return permissions_store.answer(s, body)
            case p.OpenSession() | p.RecordCheckpoint() | p.CloseSession() | p.SessionQuery():
                return sessions_store.answer(s, body)
            case p.ProjectOverview(weeks=weeks, top_tags=top_tags):
                return p.StoreInfo(browse.overview(s, weeks, top_tags))
            case p.Neighbours(id=memory_id, limit=limit):
                found = browse.neighbours(s, memory_id, limit)
                return p.SearchHits(hits=[_hit(h) for h in found.hits], mode=found.mode,
                                    total_candidates=found.total_candidates)
        raise BadRequest(f"store does not handle {type(body).__name__}")

    def _search(self, q: p.Search) -> p.SearchHits:
        since, until = q.since, q.until
        if q.time_expression:
            try:
                since, until = timeexpr.parse(q.time_expression, tz=self.tz)
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
            except OverflowError as exc:  # "since 9999-12-31": its end is past the calendar's
                raise BadRequest(f"time expression {q.time_expression!r} reaches past the "
                                 f"dates a calendar holds ({exc})") from exc
        vector = None
        if q.query_vector is not None:
            vector = np.frombuffer(q.query_vector, dtype="<f4")
        result = self.store.search(
            q.query, query_vector=vector, projects=q.projects, kinds=q.kinds,
            tags_any=q.tags_any, tags_all=q.tags_all, since=since, until=until,
            errors_only=q.errors_only, file_path=q.file_path, must_contain=q.must_contain,
            session_id=q.session_id, limit=q.limit, offset=q.offset, min_score=q.min_score,
            order=q.order, decay=q.decay,
            half_life_days=q.half_life_days or self.cfg.decay_half_life_days,
            fusion=q.fusion, tz=self.tz)
        hits = [_hit(h) for h in result.hits]
        return p.SearchHits(hits=hits, mode=result.mode, total_candidates=result.total_candidates,
                            since=_iso(since), until=_iso(until))

    # ------------------------------------------------------- export/import
    def _start_bulk(self, delivery: Delivery) -> None:
        """Open the job (checks, files) and run its first slice; one job at a time."""
        if self.bulk is not None:
            self.finish(delivery, p.Error(code="unavailable", message=(
                f"the store is busy with an {self.bulk[1].what}; retry when it ends")))
            return
        if time.time() > delivery.header.deadline:
            self.finish(delivery, p.Error(code="timeout", message="deadline passed before "
                                          "work started"))
            return
        job = _replying(delivery.body, lambda: self._open_job(delivery.body))
        if isinstance(job, p.Error):
            self.finish(delivery, job)
            return
        self.bulk = (delivery, job)
        self._bulk_slice()

    def _open_job(self, body: p.RequestBody) -> bulk_io.Job:
        match body:
            case p.ExportMemories(path=raw, project=project, overwrite=overwrite):
                path = check_export_path(self.cfg, raw, overwrite=overwrite)
                return bulk_io.ExportJob(self.store, path, project, overwrite)
            case p.ImportMemories(path=raw):
                return bulk_io.ImportJob(self.store, check_io_path(self.cfg, raw, must_exist=True))
        raise BadRequest(f"not an export or import: {type(body).__name__}")

    def _bulk_slice(self) -> None:
        """One slice of the job; the next goes to the back of the queue, behind the requests
        that arrived meanwhile."""
        if self.bulk is None:
            return
        delivery, job = self.bulk
        if time.time() > delivery.header.deadline:
            self._abort_bulk("its deadline passed", "timeout")
            return
        reply = _replying(delivery.body, job.step)
        if reply is None:
            self.inbox.put(self._bulk_slice)
            return
        self.bulk = None
        self.finish(delivery, reply)
        self.filler.wake.set()  # not during the import: its queries would lengthen the wait

    def _abort_bulk(self, why: str, code: p.ErrorCode) -> None:
        if self.bulk is not None:
            (delivery, job), self.bulk = self.bulk, None
            message = job.abort(why)
            log.warning("%s", message)
            self.finish(delivery, p.Error(code=code, message=message))
            self.filler.wake.set()


def _store_errors(body: p.RequestBody | None, fn: Callable[[], Any]) -> Any:
    """``fn()``, with the store's own failures as the errors callers read."""
    try:
        return fn()
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from exc
    except duckdb.Error as exc:
        log.exception("database error on %s", type(body).__name__)
        raise Internal(f"database error: {exc}") from exc


def _replying(body: p.RequestBody | None, fn: Callable[[], Any]) -> Any:
    """``fn()``, or the error reply its failure calls for (as ``Worker.answer`` does)."""
    try:
        return _store_errors(body, fn)
    except ServiceError as exc:
        return p.Error(code=exc.code, message=exc.message)
    except Exception as exc:
        log.exception("store failed on %s", type(body).__name__)
        return p.Error(code="internal", message=f"{type(exc).__name__}: {exc}")


def _settle(fut: Future, fn) -> None:
    try:
        fut.set_result(fn())
    except Exception as exc:  # noqa: BLE001 - not swallowed: the waiting thread gets it
        fut.set_exception(exc)


def _item(r: p.Remember) -> dict[str, Any]:
    return {"kind": r.kind, "content": r.content, "project": r.project, "tags": r.tags,
            "session_id": r.session_id, "metadata": r.metadata, "created_at": r.created_at}


def _memory(row: dict[str, Any]) -> p.Memory:
    return p.Memory(id=row["id"], kind=row["kind"], content=row["content"],
                    project=row["project"], tags=row["tags"], session_id=row["session_id"],
                    created_at=row["created_at"], metadata=row["metadata"],
                    files=row.get("files", []))


def _linked(store: MemoryStore, memory: p.Memory) -> p.Memory:
    memory.supersedes, memory.superseded_by = browse.links(store, memory.id)
    return memory


def _hit(h: dict[str, Any]) -> p.Hit:
    parts = h["parts"]
    return p.Hit(memory=_memory(h), snippet=h["snippet"], score=h["score"], bm25=parts["bm25"],
                 vector=parts["vector"], rrf=parts.get("rrf", 0.0), decay=parts["recency"],
                 keyword=parts["keyword"], relevance=parts["relevance"], chunk=parts["chunk"],
                 supersedes=h["supersedes"], superseded_by=h["superseded_by"])


def _iso(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()
