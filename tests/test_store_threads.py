"""The store's long-lived threads recover or stop cleanly: the embed filler survives database
errors, and ``StoreWorker.teardown`` stops it and always closes the database."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import private_stack, stack_info, wait_for

from shared.config import load_config
from store_worker.embed_filler import EmbedFiller
from store_worker.memory_store import MemoryStore
from store_worker.worker import StoreWorker


@pytest.fixture(scope="module")
def embed_pool():
    """A real stack: its hub and embed worker embed for the filler under test."""
    with private_stack() as (_env, home):
        yield stack_info(home)["clients"]


def duplicate_row(store: MemoryStore, memory_id: str) -> None:
    """Put a row with this id into the table behind the store's back, so the flush of the
    journaled memory of that id fails with a real ConstraintException (a flush that fails on
    every retry is how the salted-hash dedup bug of issue 9 wedged the store)."""
    store.con.execute(
        "INSERT INTO memories (id, kind, content, content_hash, project, tags, created_at, "
        "metadata, doc_len, terms, tfs) VALUES (?, 'note', 'squatter', 'squatter-hash', "
        "'elsewhere', [], now(), '{}', 0, [], [])", [memory_id])


def test_embed_filler_recovers_from_database_errors(embed_pool, tmp_path):
    db = ThreadPoolExecutor(1, thread_name_prefix="db")  # the store's one database thread
    store = db.submit(MemoryStore.open, tmp_path / "m.duckdb").result()
    ids = [db.submit(store.add, "reflection", f"filler recovery text {i}", "p").result().id
           for i in range(5)]
    assert store.unflushed == 5
    db.submit(duplicate_row, store, ids[0]).result()
    filler = EmbedFiller(embed_pool, db.submit, store, in_flight=2)
    filler.start()
    try:
        # Every read of pending rows flushes first and fails: the filler backs off and retries.
        wait_for(lambda: filler.failures >= 2, 30, what="two failed attempts")
        assert filler.running
        assert "Constraint" in filler.last_error or "Duplicate" in filler.last_error, \
            filler.last_error
        # The database is repaired: the filler carries on by itself and embeds every row.
        db.submit(store.con.execute, "DELETE FROM memories WHERE content = 'squatter'").result()
        wait_for(lambda: db.submit(store.stats).result()["pending_embeddings"] == 0, 60,
                 interval=0.2, what="all rows embedded")
        assert db.submit(store.stats).result()["embedded"] == 5
    finally:
        t0 = time.monotonic()
        filler.stop()
        stop_s = time.monotonic() - t0
        db.submit(store.close).result()
        db.shutdown()
    assert not filler.running
    assert stop_s < 5, f"the filler took {stop_s:.1f}s to stop"


def test_teardown_stops_the_filler_and_closes_the_database_when_the_flush_fails(env, caplog):
    cfg = load_config()
    worker = StoreWorker(cfg, exit_with_parent=False)
    worker.setup()  # opens the database and starts the embed filler (no hub: it waits on us)
    try:
        stored = worker.store.add("reflection", "teardown with a wedged flush", "p")
        duplicate_row(worker.store, stored.id)  # the flush at close now fails for real
        with caplog.at_level(logging.ERROR, logger="sessiond.store"):
            worker.teardown()
    finally:
        if worker.store._con is not None:  # the old teardown left it open: do not leak it
            worker.store.close()
        worker.filler.stop()
    assert not worker.filler.running
    assert "Duplicate key" in caplog.text
    # The file is closed: another process can open it (DuckDB locks it while it is open).
    subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                    str(cfg.db_path)], check=True, timeout=30)
