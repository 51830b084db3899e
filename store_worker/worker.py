"""The store worker: the only process that opens the DuckDB file.

Every read and write of memory comes here through the hub, so any number of gateways share one
memory without lock errors. Requests run one at a time on the compute thread, which alone
touches the database; the embed filler hands its reads and writes to that thread too.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from concurrent.futures import Future
from typing import Any

import duckdb
import numpy as np

from shared import protocol as p
from shared.config import zone_of
from shared.errors import BadRequest, Internal, SessiondError
from shared.paths import check_io_path
from shared.transport import endpoints
from shared.worker import Worker
from store_worker.embed_filler import EmbedFiller
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput
from store_worker.search import timeexpr

log = logging.getLogger("sessiond.store")

WRITES = (p.Remember, p.RememberMany, p.DeleteMemories, p.ImportMemories)
# Journaled stores go into the table after this much idle time, or once this many wait: a flush
# of one row costs ~2 ms (a transaction, then emptying the journal), so flushing after every
# store would make the next store of a burst wait for it; batching makes that cost rare.
FLUSH_IDLE_S = 0.05
FLUSH_MAX_ROWS = 256
FILLER_STOP_S = 5.0  # at shutdown; it cancels its embed requests at once


class StoreWorker(Worker):
    service = p.SERVICE_STORE
    capacity = 2  # one running, one queued: the hub holds the rest, so a crash loses little

    def setup(self) -> None:
        try:
            self.store = MemoryStore.open(self.cfg.db_path)
        except (duckdb.Error, OSError) as exc:
            raise SessiondError(f"cannot open {self.cfg.db_path}: {exc}") from exc
        log.info("opened %s: %d memories", self.cfg.db_path, self.store.count)
        self.tz = zone_of(self.cfg.timezone)  # where "today" and "last week" are meant
        self.filler = EmbedFiller(endpoints(self.cfg).clients, self.run_on_db, self.store,
                                  in_flight=2 * self.cfg.embed_workers)
        self.filler.start()

    def run_on_db(self, fn) -> Future:
        """Run ``fn`` on the DB thread (from any thread); its result arrives in the future."""
        fut: Future = Future()
        self.inbox.put(lambda: _settle(fut, fn))
        return fut

    def compute_loop(self) -> None:
        while True:
            try:  # with journaled stores waiting, an idle pause flushes them
                item = self.inbox.get(timeout=FLUSH_IDLE_S if self.store.unflushed else None)
            except queue.Empty:
                self._flush_journal()
                continue
            if item is None:
                break
            if callable(item):
                item()
                continue
            self.finish(item, self.answer(item))
            if isinstance(item.body, WRITES):
                self.filler.wake.set()
            if self.store.unflushed >= FLUSH_MAX_ROWS:
                self._flush_journal()
        self.teardown()
        self.close_waker()

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
        return {"memories": self.store.count, "embedded_by_filler": f.embedded,
                "embed_failures": f.failures, "embed_filler_running": f.running,
                "embed_filler_restarts": f.restarts, "embed_filler_last_error": f.last_error}

    # ------------------------------------------------------------ requests
    def handle(self, body: p.RequestBody) -> p.ReplyBody:
        try:
            return self._handle(body)
        except InvalidInput as exc:
            raise BadRequest(str(exc)) from exc
        except duckdb.Error as exc:
            log.exception("database error on %s", type(body).__name__)
            raise Internal(f"database error: {exc}") from exc

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
                return p.Memories([_memory(m) for m in s.get(ids)])
            case p.DeleteMemories(ids=ids, project=project, before=before):
                return p.Count(count=s.delete(ids=ids, project=project, before=before))
            case p.StoreStats():
                f = self.filler
                return p.StoreInfo({**s.stats(), "embed_filler": {
                    "running": f.running, "embedded": f.embedded, "failures": f.failures,
                    "restarts": f.restarts, "last_error": f.last_error}})
            case p.AddDependency():
                d = s.add_dependency(body.source, body.target, body.dependency_type,
                                     body.description)
                return p.Dependencies([p.Dependency(**d)])
            case p.ListDependencies(project=project):
                return p.Dependencies([p.Dependency(**d) for d in s.dependencies(project)])
            case p.ExportMemories(path=raw, project=project):
                return self._export(raw, project)
            case p.ImportMemories(path=raw):
                return self._import(raw)
        raise BadRequest(f"store does not handle {type(body).__name__}")

    def _search(self, q: p.Search) -> p.SearchHits:
        since, until = q.since, q.until
        if q.time_expression:
            try:
                since, until = timeexpr.parse(q.time_expression, tz=self.tz)
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
        vector = None
        if q.query_vector is not None:
            vector = np.frombuffer(q.query_vector, dtype="<f4")
        result = self.store.search(
            q.query, query_vector=vector, projects=q.projects, kinds=q.kinds,
            tags_any=q.tags_any, tags_all=q.tags_all, since=since, until=until,
            errors_only=q.errors_only, file_path=q.file_path, must_contain=q.must_contain,
            limit=q.limit, offset=q.offset, min_score=q.min_score, order=q.order,
            decay=q.decay, half_life_days=q.half_life_days or self.cfg.decay_half_life_days,
            fusion=q.fusion, tz=self.tz)
        hits = [_hit(h) for h in result.hits]
        return p.SearchHits(hits=hits, mode=result.mode, total_candidates=result.total_candidates,
                            since=_iso(since), until=_iso(until))

    def _export(self, raw: str, project: str | None) -> p.Count:
        path = check_io_path(self.cfg, raw, must_exist=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        count = 0
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in self.store.export_rows(project):
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += 1
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)  # a reader never sees half a file
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BadRequest(f"cannot write {path}: {exc}") from exc
        return p.Count(count=count, path=str(path))

    def _import(self, raw: str) -> p.Count:
        path = check_io_path(self.cfg, raw, must_exist=True)
        rows: list[dict[str, Any]] = []
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise BadRequest(f"{path}:{n}: each line must be a JSON object")
                        rows.append(row)
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{path} is not valid UTF-8: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise BadRequest(f"{path}:{n}: not JSON: {exc}") from exc
        except OSError as exc:
            raise BadRequest(f"cannot read {path}: {exc}") from exc
        added, skipped = self.store.import_rows(rows)  # one transaction: all or nothing
        return p.Count(count=added, skipped=skipped, path=str(path))


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
