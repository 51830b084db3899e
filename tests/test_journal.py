"""The store's write-ahead journal: an acknowledged ``add`` survives the death of its process
before the row reached the table, and replay neither duplicates nor resurrects anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from store_worker.memory_store import MemoryStore
from store_worker.records import make_record
from store_worker.storage.journal import Journal

REPO = Path(__file__).resolve().parents[1]


def _die_after(db: Path, code: str) -> list[str]:
    """Run ``code`` against a MemoryStore on ``db`` in a child process that then dies without
    flushing or closing (``os._exit``); returns what the child printed, a line per item."""
    script = textwrap.dedent(f"""
        import os, sys
        from store_worker.memory_store import MemoryStore
        s = MemoryStore({str(db)!r})
    """) + textwrap.dedent(code) + "\nsys.stdout.flush()\nos._exit(0)\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_acked_adds_survive_a_process_that_dies_before_flushing(tmp_path):
    db = tmp_path / "m.duckdb"
    ids = _die_after(db, """
        for i in range(25):
            print(s.add("note", f"journaled memory number {i}", "p").id)
        assert s.unflushed == 25
    """)
    assert len(ids) == 25
    assert Path(f"{db}.journal").stat().st_size > 0
    with MemoryStore(db) as s:
        assert s.replayed == 25
        assert [m["id"] for m in s.get(ids)] == ids
        assert s.search("journaled memory number 7").hits[0]["content"].endswith(" 7")
        assert Path(f"{db}.journal").stat().st_size == 0
    with MemoryStore(db) as s:  # replay happened once
        assert s.replayed == 0 and s.count == 25


def _three_journaled(db: Path) -> tuple[list[str], Path]:
    """Three acked adds left only in the journal by a process that died; (ids, journal)."""
    ids = _die_after(db, """
        for i in range(3):
            print(s.add("note", f"journaled record {i} of three", "p").id)
    """)
    return ids, Path(f"{db}.journal")


def test_a_torn_last_record_is_ignored(tmp_path):
    db = tmp_path / "m.duckdb"
    ids, journal = _three_journaled(db)
    whole = journal.read_bytes()
    with journal.open("ab") as f:  # what a kill in the middle of an append leaves
        f.write(whole[: len(whole) // 3 // 2])
    with MemoryStore(db) as s:
        assert s.replayed == 3
        assert sorted(m["id"] for m in s.get(ids)) == sorted(ids)
        assert s.count == 3


def test_a_corrupt_record_stops_the_replay_there(tmp_path):
    db = tmp_path / "m.duckdb"
    ids, journal = _three_journaled(db)
    data = bytearray(journal.read_bytes())
    data[-5] ^= 0xFF  # flip a byte of the last record's payload: its CRC no longer matches
    journal.write_bytes(bytes(data))
    with MemoryStore(db) as s:
        assert s.replayed == 2
        assert [m["id"] for m in s.get(ids)] == ids[:2]


def test_replay_skips_records_the_table_already_has(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db) as s:
        first = s.add("note", "flushed already", "p").id
        s.flush()
    # The process died after its flush committed but before the journal was emptied.
    j = Journal(f"{db}.journal")
    rec = make_record("note", "flushed already", "p", None, None, None, None)
    rec.id = first
    j.append(rec)
    j.append(make_record("note", "only in the journal", "p", None, None, None, None))
    j.close()
    with MemoryStore(db) as s:
        assert s.replayed == 1
        assert s.count == 2
        assert s.stats()["by_project"] == {"p": 2}


def test_a_deleted_memory_does_not_come_back(tmp_path):
    db = tmp_path / "m.duckdb"
    kept, doomed = _die_after(db, """
        a = s.add("note", "keep me", "p").id
        b = s.add("note", "delete me", "p").id
        assert s.delete(ids=[b]) == 1
        print(a, b)
    """)
    with MemoryStore(db) as s:
        assert [m["id"] for m in s.get([kept, doomed])] == [kept]
        assert s.count == 1


def test_dedup_sees_journaled_and_flushed_memories(store):
    a = store.add("note", "the same words", "p")
    again = store.add("note", "the same words", "p")
    assert again.duplicate and again.id == a.id
    other_project = store.add("note", "the same words", "q")
    assert not other_project.duplicate
    store.flush()
    after_flush = store.add("note", "the same words", "p")
    assert after_flush.duplicate and after_flush.id == a.id
    store.delete(ids=[a.id])
    fresh = store.add("note", "the same words", "p")
    assert not fresh.duplicate and fresh.id != a.id


@pytest.fixture
def store(tmp_path):
    with MemoryStore(tmp_path / "m.duckdb") as s:
        yield s


def test_search_and_get_read_journaled_memories_without_a_flush(store):
    m = store.add("note", "the reconnect loop needs jitter", "p", ["net"],
                  metadata={"file": "ws.py"})
    assert store.unflushed == 1
    [row] = store.get([m.id])
    assert row["content"] == "the reconnect loop needs jitter" and row["tags"] == ["net"]
    assert row["metadata"] == {"file": "ws.py"}
    assert store.search("reconnect jitter").hits[0]["id"] == m.id
    assert store.unflushed == 1  # neither read needed the table
    assert store.stats()["memories"] == 1  # this one does: it flushes first
    assert store.unflushed == 0
    assert store.get([m.id]) == [row]  # the same row, now from the table
