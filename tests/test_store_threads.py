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


def hide_table(store: MemoryStore, hidden: bool = True) -> None:
    """Rename the memories table away (or back), so that the flush and reads of the store fail
    with a real DuckDB CatalogException until it is back."""
    old, new = ("memories", "memories_away") if hidden else ("memories_away", "memories")
    store.con.execute(f"ALTER TABLE {old} RENAME TO {new}")


def test_embed_filler_recovers_from_database_errors(embed_pool, tmp_path):
    db = ThreadPoolExecutor(1, thread_name_prefix="db")  # the store's one database thread
    store = db.submit(MemoryStore.open, tmp_path / "m.duckdb").result()
    for i in range(5):
        db.submit(store.add, "reflection", f"filler recovery text {i}", "p").result()
    assert store.unflushed == 5
    db.submit(hide_table, store).result()
    filler = EmbedFiller(embed_pool, db.submit, store, in_flight=2)
    filler.start()
    try:
        # Every read of pending rows flushes first and fails: the filler backs off and retries.
        wait_for(lambda: filler.failures >= 2, 30, what="two failed attempts")
        assert filler.running
        assert "memories does not exist" in filler.last_error, filler.last_error
        # The database is repaired: the filler carries on by itself and embeds every row.
        db.submit(hide_table, store, False).result()
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
        worker.store.add("reflection", "teardown with a failing flush", "p")  # journaled
        hide_table(worker.store)  # the flush at close now fails for real
        with caplog.at_level(logging.ERROR, logger="sessiond.store"):
            worker.teardown()
    finally:
        if worker.store._con is not None:  # the old teardown left it open: do not leak it
            worker.store.close()
        worker.filler.stop()
    assert not worker.filler.running
    assert "memories does not exist" in caplog.text
    # The file is closed: another process can open it (DuckDB locks it while it is open).
    subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                    str(cfg.db_path)], check=True, timeout=30)
