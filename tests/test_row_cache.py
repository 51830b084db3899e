"""The store's LRU of rows: bounded, returns copies, never serves a deleted row."""

from __future__ import annotations

import pytest

from store_worker.memory_store import MemoryStore
from store_worker.storage.row_cache import ROW_OVERHEAD_BYTES, RowCache


def _row(i: int, size: int = 100) -> dict:
    return {"id": f"id{i}", "content": "x" * size, "metadata": {}, "tags": []}


def test_evicts_least_recently_used_beyond_the_byte_budget():
    cache = RowCache(max_bytes=3 * (ROW_OVERHEAD_BYTES + 100))
    cache.put([_row(1), _row(2), _row(3)])
    cache.get(["id1"])  # id1 is now the most recent
    cache.put([_row(4)])
    found, missing = cache.get(["id1", "id2", "id3", "id4"])
    assert sorted(found) == ["id1", "id3", "id4"] and missing == ["id2"]
    assert cache.bytes <= cache.max_bytes


def test_returns_copies_and_skips_rows_larger_than_the_budget():
    cache = RowCache(max_bytes=1000)
    cache.put([_row(1), _row(2, size=5000)])
    found, _ = cache.get(["id1"])
    found["id1"]["score"] = 1.0
    again, missing = cache.get(["id1", "id2"])
    assert "score" not in again["id1"] and missing == ["id2"]


def test_discard_and_stats():
    cache = RowCache()
    cache.put([_row(1)])
    cache.discard(["id1", "never-there"])
    assert cache.get(["id1"]) == ({}, ["id1"])
    assert cache.stats() == {"rows": 0, "bytes": 0, "hits": 0, "misses": 1,
                             "hit_rate": 0.0}


def test_store_serves_repeat_hits_from_the_cache_and_forgets_deleted_rows(store):
    a = store.add("note", "websocket reconnect needs jitter", "p").id
    b = store.add("note", "websocket ping interval is 20 s", "p").id
    store.flush()  # puts both rows in the cache
    first = store.search("websocket", limit=5).hits
    assert {h["id"] for h in first} == {a, b}
    assert store.stats()["row_cache"]["hits"] >= 2
    assert store.get([a])[0]["content"] == "websocket reconnect needs jitter"
    store.delete(ids=[a])
    assert store.get([a]) == []
    assert [h["id"] for h in store.search("websocket", limit=5).hits] == [b]


@pytest.fixture
def store(tmp_path):
    with MemoryStore(tmp_path / "m.duckdb") as s:
        yield s
