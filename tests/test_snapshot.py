"""The index snapshot: a clean close writes it, the next open uses it only if nothing changed
since, and the indexes it gives answer exactly like indexes rebuilt from the tables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from store_worker.indexes import snapshot
from store_worker.memory_store import MemoryStore

REPO = Path(__file__).resolve().parents[1]
WORDS = ["socket", "reconnect", "jitter", "duckdb", "lock", "flaky", "test", "parser", "config", "cache", "index", "vector", "timeout", "retry", "backoff", "migration", "schema", "deploy"]


def _fill(store: MemoryStore, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = [r.id for r in store.add_many(
        {"kind": "note" if i % 3 else "reflection",
         "content": " ".join(rng.choice(WORDS, 6)) + f" item {i}",
         "project": f"p{i % 4}", "tags": [f"t{i % 5}"] if i % 2 else []}
        for i in range(n))]
    pending = store.pending_embeddings(10_000)
    vecs = rng.standard_normal((len(pending), 384)).astype(np.float32)
    store.set_embeddings([i for i, _ in pending[:-7]], vecs[:-7])  # a few stay keyword-only
    return ids


def _answers(store: MemoryStore, ranked: bool = True) -> list:
    """Search results for a fixed set of queries. ``ranked``: the hits in order with their
    scores. Otherwise every matching memory (limit 1000) with its BM25 and cosine parts, which
    do not depend on how the rows are numbered (exact ties in rank fusion are broken by row
    number, and a rebuild numbers rows in id order, not in the order they were added)."""
    rng = np.random.default_rng(99)
    out = []
    for q in ("socket reconnect", "duckdb lock timeout", "schema", "item 17"):
        qv = rng.standard_normal(384).astype(np.float32)
        for kw in ({}, {"query_vector": qv}, {"query_vector": qv, "projects": ["p1"]},
                   {"tags_any": ["t3"]}, {"kinds": ["reflection"]}):
            if ranked:
                hits = store.search(q, decay=False, limit=20, **kw).hits
                out.append([(h["id"], round(h["score"], 6)) for h in hits])
            else:
                hits = store.search(q, decay=False, limit=1000, **kw).hits
                out.append({h["id"]: (round(h["parts"]["bm25"], 5),
                                      h["parts"]["vector"] and round(h["parts"]["vector"], 5))
                            for h in hits})
    return out


def test_reopen_uses_the_snapshot_and_answers_like_a_rebuild(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        ids = _fill(s, 300)
        s.delete(ids=ids[:20])
        s.add("note", "added after the bulk: socket reconnect storm", "p1", ["t3"])
        expected, matches, stats = _answers(s), _answers(s, ranked=False), s.stats()
    assert snapshot.path_for(db).exists()
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "snapshot"
        assert _answers(s) == expected  # the very same state: the same ranking
        assert s.stats()["memories"] == stats["memories"] == 281
        assert s.add("note", "added after the bulk: socket reconnect storm", "p1").duplicate
        assert s.get(ids[:20]) == []
    snapshot.path_for(db).unlink()  # the same data, rebuilt from the tables
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "tables"
        assert _answers(s, ranked=False) == matches


def test_a_write_after_loading_it_makes_the_next_open_rebuild(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        _fill(s, 50)
    script = textwrap.dedent(f"""
        import os
        from store_worker.memory_store import MemoryStore
        s = MemoryStore({str(db)!r}, snapshot_min_rows=0)
        assert s.load_info["source"] == "snapshot"
        s.add("note", "written, then the process died", "p0")
        s.flush()
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "tables"
        assert s.search("written then the process died").hits[0]["content"].startswith("written")
        assert s.count == 51


def test_an_unreadable_snapshot_is_rebuilt_from_the_tables(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        _fill(s, 40)
        expected = _answers(s, ranked=False)
    path = snapshot.path_for(db)
    path.write_bytes(path.read_bytes()[:1000])
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "tables"
        assert _answers(s, ranked=False) == expected


def test_small_stores_write_no_snapshot(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db) as s:
        _fill(s, 30)
    assert not snapshot.path_for(db).exists()
    with MemoryStore(db) as s:
        assert s.load_info["source"] == "tables" and s.count == 30


@pytest.mark.parametrize("size", [0, 1])
def test_empty_and_tiny_stores_round_trip(tmp_path, size):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        for i in range(size):
            s.add("note", f"only memory {i}", "p")
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "snapshot"
        assert len(s.search("only memory").hits) == size


_DEDUP_SCRIPT = textwrap.dedent("""
    import json, sys
    from store_worker.memory_store import MemoryStore
    db, phase = sys.argv[1], sys.argv[2]
    texts = [f"dedup across restarts, memory number {i}" for i in range(40)]
    with MemoryStore(db, snapshot_min_rows=0) as s:
        out = {"source": s.load_info["source"]}
        out["results"] = [(r.id, r.duplicate) for r in
                          (s.add("note", t, f"p{i % 3}") for i, t in enumerate(texts))]
        out["flushed"] = s.flush()
        out["count"] = s.count
    print(json.dumps(out))
""")


def _dedup_run(db: Path, phase: str, seed: str) -> dict:
    import json
    import os

    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run([sys.executable, "-c", _DEDUP_SCRIPT, str(db), phase], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dedup_holds_after_a_clean_restart_in_a_new_process(tmp_path):
    """Regression: the catalogue keyed content on the per-process salted ``hash()``, the snapshot
    saved those keys, and a store reopened in another process took known content for new (a new
    id whose flush then failed on the UNIQUE constraint, again and again)."""
    db = tmp_path / "m.duckdb"
    first = _dedup_run(db, "first", seed="1")
    assert first["count"] == 40 and not any(dup for _, dup in first["results"])
    second = _dedup_run(db, "second", seed="2")  # another process, another str hash salt
    assert second["source"] == "snapshot"
    assert second["results"] == [[i, True] for i, _ in first["results"]]
    assert second["flushed"] == 0 and second["count"] == 40


def test_large_arrays_are_mapped_from_their_own_files_and_can_grow(tmp_path, monkeypatch):
    """Format 5: the vector matrix lives in its own file, written with room to grow, and the
    reopened index uses the mapping itself (no copy); adding past that room moves it to memory,
    and the answers stay those of the closed store. A missing array file means a rebuild."""
    monkeypatch.setattr(snapshot, "MAPPED_BYTES", 4096)  # map the small test arrays too
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        _fill(s, 200)
        expected = _answers(s)
    files = {p.name.split(".")[-2] for p in tmp_path.glob("m.duckdb.index.npz.*.npy")}
    assert {"vec_matrix", "cat_ids_text", "text_rows"} <= files
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "snapshot"
        assert isinstance(s.vectors.whole.exact._mat, np.memmap)  # the mapping, not a copy
        assert _answers(s) == expected
        room = len(s.vectors.whole.exact._mat) - len(s.vectors)
        ids = [r.id for r in s.add_many({"kind": "note", "content": f"grown past the room {i}",
                                         "project": "p9"} for i in range(room + 5))]
        pending = s.pending_embeddings(10_000)
        vecs = np.random.default_rng(5).standard_normal((len(pending), 384)).astype(np.float32)
        s.set_embeddings([k for k, _ in pending], vecs)
        assert not isinstance(s.vectors.whole.exact._mat, np.memmap)  # outgrew the mapping
        assert s.search("grown past the room", query_vector=vecs[-1], limit=1).hits[0]["id"] \
            == ids[-1]
        grown = _answers(s)
    before = set(tmp_path.glob("m.duckdb.index.npz.*"))
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "snapshot" and _answers(s) == grown
    after = set(tmp_path.glob("m.duckdb.index.npz.*"))
    assert before.isdisjoint(after)  # the older snapshot's files were removed
    next(p for p in after if p.name.endswith(".vec_matrix.npy")).unlink()
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "tables" and s.count == 200 + room + 5
        assert not list(tmp_path.glob("m.duckdb.index.npz*"))  # the unusable files are gone


def test_a_snapshot_missing_an_array_is_rebuilt_from_the_tables(tmp_path):
    """A snapshot that reads but lacks what the indexes need (an array dropped, say by a writer
    of another build) gives a rebuild, not a store that cannot open."""
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        _fill(s, 60)
        expected = _answers(s, ranked=False)
    path = snapshot.path_for(db)
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files if name != "cat_totals"}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == "tables"
        assert _answers(s, ranked=False) == expected
