"""MemoryStore over a real DuckDB file (no mocks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from store_worker.indexes.text_index import bm25_params, bm25_sql, query_terms
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput
from store_worker.storage import schema

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, seed: int, eps: float = 0.05) -> np.ndarray:
    w = v + eps * unit(seed)
    return (w / np.linalg.norm(w)).astype(np.float32)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "memories.duckdb"


@pytest.fixture
def store(path):
    s = MemoryStore(path)
    yield s
    s.close()


def ids_of(result) -> list[str]:
    return [h["id"] for h in result.hits]


# ----------------------------------------------------------------------------- add


def test_add_then_get_returns_the_row(store):
    r = store.add("note", "  Use uv for the venv.  ", "alpha", ["tooling", "uv"], "s1",
                  {"source": "test", "n": 1}, created_at=NOW)
    assert not r.duplicate and r.redacted == []
    assert len(r.id) == 32
    [row] = store.get([r.id])
    assert row == {
        "id": r.id, "kind": "note", "content": "Use uv for the venv.", "project": "alpha",
        "tags": ["tooling", "uv"], "session_id": "s1", "created_at": NOW.isoformat(),
        "metadata": {"source": "test", "n": 1},
    }


def test_ids_sort_by_creation_time(store):
    a = store.add("note", "first", "p", created_at=NOW - timedelta(days=2)).id
    b = store.add("note", "second", "p", created_at=NOW - timedelta(days=1)).id
    c = store.add("note", "third", "p").id
    assert a < b < c


def test_same_content_in_same_project_is_a_duplicate(store):
    first = store.add("note", "remember the milk", "alpha")
    again = store.add("reflection", "remember the milk", "alpha", ["x"])
    other = store.add("note", "remember the milk", "beta")
    assert again.duplicate and again.id == first.id
    assert not other.duplicate and other.id != first.id
    assert store.stats()["memories"] == 2


def test_secrets_are_redacted_before_storing_and_indexing(store):
    key = "sk-abcdefghijklmnopqrstuvwxyz0123456789"
    r = store.add("note", f"deploy with {key} and postgres://app:hunter22@db:5432/x", "p",
                  metadata={"env": {"TOKEN": "ghp_" + "a" * 36}})
    assert r.redacted == ["url_password", "openai_key", "github_token"]
    [row] = store.get([r.id])
    assert key not in row["content"] and "hunter22" not in row["content"]
    assert "[REDACTED:openai_key]" in row["content"]
    assert "postgres://app:[REDACTED]@db:5432/x" in row["content"]
    assert row["metadata"] == {"env": {"TOKEN": "[REDACTED:github_token]"}}
    assert store.search(key).hits == []
    assert store.search("hunter22").hits == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": ""}, "content must not be empty"),
        ({"content": "   \n\t "}, "content must not be empty"),
        ({"content": "x" * 100_001}, "at most 100000"),
        ({"content": "é" * 50_001}, "100002 bytes"),
        ({"content": "a\x00b"}, "NUL"),
        ({"content": 42}, "content must be a string"),
        ({"kind": "Not A Kind"}, "kind must be"),
        ({"project": ""}, "project must not be empty"),
        ({"project": "p" * 201}, "at most 200"),
        ({"tags": "solo"}, "tags must be a list"),
        ({"tags": [f"t{i}" for i in range(33)]}, "at most 32"),
        ({"tags": ["x" * 65]}, "at most 64"),
        ({"tags": [""]}, "each tag must not be empty"),
        ({"tags": [3]}, "each tag must be a string"),
        ({"metadata": {"x": object()}}, "not JSON-serialisable"),
        ({"metadata": {"x": float("nan")}}, "not JSON-serialisable"),
        ({"metadata": {"x": "y" * 17_000}}, "at most 16384"),
        ({"metadata": ["not", "a", "dict"]}, "JSON object"),
        ({"created_at": "yesterday-ish"}, "ISO-8601"),
    ],
)
def test_invalid_input_is_rejected_and_nothing_is_written(store, kwargs, message):
    args = {"kind": "note", "content": "fine", "project": "p", **kwargs}
    with pytest.raises(InvalidInput, match=message) as info:
        store.add(**args)
    assert isinstance(info.value, ValueError)
    assert store.stats()["memories"] == 0
    assert store.con.execute("SELECT count(*) FROM memory_terms").fetchall() == [(0,)]


def test_add_many_is_all_or_nothing(store):
    good = {"kind": "note", "content": "good one", "project": "p"}
    with pytest.raises(InvalidInput, match="item 1: content must not be empty"):
        store.add_many([good, {**good, "content": " "}])
    assert store.stats()["memories"] == 0
    results = store.add_many([good, {**good, "content": "other"}, good,
                              {**good, "content": "token=abc123456"}])
    assert [r.duplicate for r in results] == [False, False, True, False]
    assert results[2].id == results[0].id
    assert results[3].redacted == ["secret"]
    assert store.stats()["memories"] == 3
    assert store.add("note", "other", "p").duplicate


def test_sql_looking_content_is_stored_verbatim(store):
    evil = "'); DROP TABLE memories; -- \" OR 1=1; SELECT * FROM memory_terms"
    r = store.add("note", evil, "p'; --", ["a'b"], metadata={"k": "'); DROP"})
    [row] = store.get([r.id])
    assert row["content"] == evil and row["project"] == "p'; --" and row["tags"] == ["a'b"]
    assert ids_of(store.search("DROP TABLE memories", project="p'; --")) == [r.id]
    assert store.stats()["memories"] == 1


# -------------------------------------------------------------------------- search


@pytest.fixture
def corpus(store):
    docs = {
        "cfg": "parse_config_v2 crashes when the YAML file is empty",
        "cfg1": "parse_config_v1 was replaced last year; config parsing moved",
        "conn": "the client fails with ECONNREFUSED when the daemon is down",
        "path": "the bug lives in src/store_worker/memory_store.py near the dedup code",
        "noise": "lunch order: soup, bread and a parse of the menu config",
    }
    return {k: store.add("note", v, "p", created_at=NOW).id for k, v in docs.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("parse_config_v2", "cfg"),
        ("ECONNREFUSED", "conn"),
        ("econnrefused daemon", "conn"),
        ("src/store_worker/memory_store.py", "path"),
        ("memory_store.py", "path"),
        ("parse_config_v1", "cfg1"),
    ],
)
def test_keyword_search_finds_exact_identifiers(store, corpus, query, expected):
    res = store.search(query, now=NOW)
    assert res.mode == "keyword"
    assert res.hits[0]["id"] == corpus[expected]
    assert res.hits[0]["parts"]["vector"] is None
    assert res.hits[0]["parts"]["bm25"] > 0


def test_hit_shape_and_snippet(store):
    long = ("filler words here " * 30) + "the ECONNREFUSED error appears here " + ("tail " * 60)
    r = store.add("handoff", long, "p", ["net"], "sess", {"a": 1}, created_at=NOW)
    [hit] = store.search("ECONNREFUSED", now=NOW).hits
    assert set(hit) == {"id", "kind", "content", "snippet", "project", "tags", "session_id",
                        "created_at", "metadata", "score", "parts", "files", "supersedes",
                        "superseded_by"}
    assert hit["id"] == r.id and hit["content"] == long.strip()
    assert "ECONNREFUSED" in hit["snippet"] and len(hit["snippet"]) <= 205
    assert hit["snippet"].startswith("…") and hit["snippet"].endswith("…")
    assert set(hit["parts"]) == {"bm25", "vector", "keyword", "relevance", "recency", "chunk"}
    assert hit["score"] > 0.9  # an exact identifier match is a strong match on its own
    assert hit["supersedes"] == [] and hit["superseded_by"] is None


def test_hybrid_search_ranks_the_vector_near_document_first(store):
    texts = ["cache invalidation notes for the api layer",
             "cache warmup notes for the batch jobs",
             "cache eviction notes for the web tier"]
    ids = [store.add("note", t, "p", created_at=NOW).id for t in texts]
    vectors = np.stack([unit(1), unit(2), unit(3)])
    assert store.set_embeddings(ids, vectors) == 3
    res = store.search("what do the cache notes say?", query_vector=near(vectors[1], 9), now=NOW)
    assert res.mode == "hybrid"
    assert res.hits[0]["id"] == ids[1]
    assert res.hits[0]["parts"]["vector"] > 0.95
    assert res.hits[0]["score"] > 0.9  # near-identical meaning: a strong match
    assert res.hits[1]["score"] < 0.05  # the same words, unrelated meaning: a weak one
    keywords = store.search("cache notes", query_vector=near(vectors[1], 9), now=NOW)
    assert ids_of(keywords)[0] == ids[1]  # typed as keywords, the words count for all three
    assert all(h["score"] > 0.5 for h in keywords.hits)


def test_unembedded_rows_are_found_by_keywords_in_hybrid_mode(store):
    embedded = store.add("note", "alpha topic", "p", created_at=NOW).id
    store.set_embeddings([embedded], unit(1)[None])
    pending = store.add("note", "zanzibar rollout plan", "p", created_at=NOW).id
    res = store.search("zanzibar", query_vector=unit(1), now=NOW)
    assert res.mode == "hybrid"
    hits = {h["id"]: h for h in res.hits}
    assert set(hits) == {pending, embedded}  # each is first of one list
    assert hits[pending]["parts"]["vector"] is None and hits[pending]["parts"]["bm25"] > 0
    assert hits[embedded]["parts"]["bm25"] == 0 and hits[embedded]["parts"]["vector"] > 0.99


def test_hybrid_with_nothing_embedded_scores_like_keyword_search(store):
    r = store.add("note", "only keywords so far", "p", created_at=NOW).id
    hybrid = store.search("keywords", query_vector=unit(3), now=NOW)
    keyword = store.search("keywords", now=NOW)
    assert hybrid.mode == "hybrid" and ids_of(hybrid) == ids_of(keyword) == [r]
    assert hybrid.hits[0]["score"] == pytest.approx(keyword.hits[0]["score"])


def test_an_old_exact_answer_beats_a_fresh_weak_match_at_the_defaults(store):
    """Regression: the old default multiplied by 0.5 ** (age / 30 days), so a memory written
    in the summer lost to any fresh, weak match in the winter."""
    old = store.add("note", "we pin the payments SDK to 4.2 because 4.3 broke refunds", "p",
                    created_at=NOW - timedelta(days=200)).id
    fresh = store.add("note", "lunch order for the team offsite", "p",
                      created_at=NOW - timedelta(hours=1)).id
    store.set_embeddings([old, fresh], np.stack([unit(1), unit(2)]))
    res = store.search("payments SDK version", query_vector=near(unit(1), 5, eps=0.6), now=NOW)
    assert ids_of(res) == [old, fresh]
    assert res.hits[0]["score"] > 10 * res.hits[1]["score"]


def test_recency_breaks_near_ties_and_decay_is_still_an_explicit_option(store):
    text = "flaky test in the retry loop"
    old = store.add("note", text, "p1", created_at=NOW - timedelta(days=90)).id
    new = store.add("note", text, "p2", created_at=NOW - timedelta(days=1)).id
    plain = store.search("flaky retry", now=NOW)  # equally relevant: the newer first
    assert ids_of(plain) == [new, old]
    assert plain.hits[0]["score"] == pytest.approx(plain.hits[1]["score"], abs=0.01)
    decayed = store.search("flaky retry", now=NOW, decay=True)  # half-life 30 days
    assert ids_of(decayed) == [new, old]
    assert decayed.hits[1]["parts"]["recency"] == pytest.approx(0.5 ** 3)
    assert decayed.hits[1]["score"] == pytest.approx(
        0.5 ** 3 * decayed.hits[1]["parts"]["relevance"])
    off = store.search("flaky retry", now=NOW, decay=False)
    assert [h["score"] for h in off.hits] == [h["parts"]["relevance"] for h in off.hits]
    slow = store.search("flaky retry", now=NOW, decay=True, half_life_days=10_000)
    assert slow.hits[0]["score"] == pytest.approx(slow.hits[1]["score"], rel=0.01)


def test_filters(store):
    def add(content, project, kind="note", tags=(), days=0):
        return store.add(kind, content, project, list(tags),
                         created_at=NOW - timedelta(days=days)).id

    a = add("shared topic one", "alpha", "note", ["x", "y"], days=1)
    b = add("shared topic two", "alpha", "reflection", ["y"], days=10)
    c = add("shared topic three", "beta", "note", ["x"], days=40)
    d = add("shared topic four", "gamma", "handoff", [], days=100)
    store.set_embeddings([a, b, c, d], np.stack([unit(i) for i in range(4)]))

    def found(**kw):
        keyword = set(ids_of(store.search("shared topic", now=NOW, **kw)))
        hybrid = set(ids_of(store.search("shared topic", query_vector=unit(0), now=NOW, **kw)))
        assert keyword == hybrid
        return keyword

    assert found() == {a, b, c, d}
    assert found(project="alpha") == {a, b}
    assert found(projects=["beta", "gamma"]) == {c, d}
    assert found(project="alpha", projects=["gamma"]) == {a, b, d}
    assert found(project="nobody") == set()
    assert found(kinds=["note"]) == {a, c}
    assert found(kinds=["note", "handoff"]) == {a, c, d}
    assert found(tags_any=["x"]) == {a, c}
    assert found(tags_any=["x", "y"]) == {a, b, c}
    assert found(tags_all=["x", "y"]) == {a}
    assert found(tags_all=["x", "nope"]) == set()
    assert found(since=NOW - timedelta(days=20)) == {a, b}
    assert found(until=NOW - timedelta(days=10)) == {c, d}  # until is exclusive, b is at -10d
    assert found(until=NOW - timedelta(days=10) + timedelta(microseconds=1)) == {b, c, d}
    assert found(since=(NOW - timedelta(days=50)).isoformat(), until=NOW - timedelta(days=5)) == {
        b, c}
    assert found(project="alpha", kinds=["reflection"], tags_any=["y"]) == {b}


def test_limit_offset_and_min_score(store):
    ids = [store.add("note", f"common word number {i}", "p", created_at=NOW).id
           for i in range(30)]
    first = store.search("common", limit=10, now=NOW, decay=False)
    second = store.search("common", limit=10, offset=10, now=NOW, decay=False)
    assert first.total_candidates == 30
    assert len(first.hits) == 10 and len(second.hits) == 10
    assert not set(ids_of(first)) & set(ids_of(second))
    assert set(ids_of(store.search("common", limit=30, now=NOW))) == set(ids)
    store.set_embeddings(ids[:5], np.stack([unit(i) for i in range(5)]))
    # the score is a relevance: only the memory whose meaning matches clears 0.5
    question = "which note has a common word?"
    strict = store.search(question, query_vector=unit(0), min_score=0.5, now=NOW)
    assert ids_of(strict) == [ids[0]] and strict.total_candidates == 1
    assert store.search(question, min_score=1.0, now=NOW).total_candidates == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"min_score": 1.5},
     {"half_life_days": 0}, {"query_vector": np.ones(3)}, {"query_vector": np.zeros(384)},
     {"kinds": "note"}, {"since": "not a date"}, {"fusion": "magic"}, {"order": "random"},
     {"must_contain": "   "}],
)
def test_search_rejects_bad_arguments(store, kwargs):
    with pytest.raises(InvalidInput):
        store.search("x", **kwargs)


def test_bm25_matches_the_sql_reference(store):
    texts = ["alpha beta gamma", "alpha alpha delta", "beta beta beta epsilon zeta",
             "gamma delta parse_config_v2", "unrelated words only here", "alpha " * 10]
    ids = [store.add("note", t, "p" if len(t) % 2 else "q").id for t in texts]
    store.flush()  # the SQL reference reads the table

    def agree() -> None:
        cat = store.catalog
        n = len(cat)
        for query in ["alpha", "beta gamma", "parse_config_v2 delta", "alpha zeta"]:
            terms = query_terms(query)
            dense = store.text_index.scores(terms, cat.alive[:n], cat.doc_len[:n],
                                            cat.avgdl).bm25
            sql = store.con.execute(
                bm25_sql("TRUE"), bm25_params(terms, cat.n_alive, cat.avgdl, [], 100)).fetchall()
            assert {mid: pytest.approx(score, rel=1e-5) for mid, score in sql} == {
                cat.ids[r]: float(dense[r]) for r in np.flatnonzero(dense)}

    agree()  # every row alive
    store.delete(ids=[ids[1]])  # a deleted row leaves the postings, not the statistics
    agree()


# ------------------------------------------------------------------ embeddings


def test_pending_and_set_embeddings(store):
    ids = [store.add("note", f"doc {i}", "p").id for i in range(3)]
    assert store.pending_embeddings(10) == [(i, f"doc {n}") for n, i in enumerate(ids)]
    assert store.set_embeddings([ids[0], "nonexistent"], np.stack([unit(0), unit(1)]) * 3) == 1
    assert [i for i, _ in store.pending_embeddings(10)] == ids[1:]
    stored = store.con.execute(
        "SELECT embedding FROM memory_embeddings WHERE id = ?", [ids[0]]).fetchall()[0][0]
    assert np.allclose(stored, unit(0), atol=1e-6)  # stored unit length
    assert store.set_embeddings([ids[0]], unit(5)[None]) == 1  # replaces
    assert store.search("doc", query_vector=unit(5)).hits[0]["parts"]["vector"] == pytest.approx(1)
    with pytest.raises(InvalidInput, match="shape"):
        store.set_embeddings(ids, np.zeros((2, 384), dtype=np.float32))
    with pytest.raises(InvalidInput, match="NaN"):
        store.set_embeddings(ids[:1], np.full((1, 384), np.nan, dtype=np.float32))
    stats = store.stats()
    assert (stats["embedded"], stats["pending_embeddings"]) == (1, 2)


def test_set_embeddings_in_bulk(store):
    results = store.add_many({"kind": "note", "content": f"bulk {i}", "project": "p"}
                             for i in range(300))
    ids = [r.id for r in results]
    vectors = np.stack([unit(i) for i in range(300)])
    assert store.set_embeddings(ids, vectors) == 300
    rows = dict(store.con.execute("SELECT id, embedding FROM memory_embeddings").fetchall())
    assert all(np.allclose(rows[i], vectors[k], atol=1e-6) for k, i in enumerate(ids))
    assert store.search("bulk", query_vector=vectors[123]).hits[0]["id"] == ids[123]


# ------------------------------------------------------------- delete / reopen


def test_delete_removes_rows_terms_and_vectors(store):
    keep = store.add("note", "keep this xylophone note", "a", created_at=NOW).id
    gone = store.add("note", "delete this xylophone note", "a", created_at=NOW).id
    store.set_embeddings([keep, gone], np.stack([unit(1), unit(2)]))
    assert store.delete(ids=[gone, "unknown"]) == 1
    assert store.get([gone]) == []
    assert ids_of(store.search("xylophone", now=NOW)) == [keep]
    assert ids_of(store.search("xylophone", query_vector=unit(2), now=NOW)) == [keep]
    assert store.con.execute(
        "SELECT count(*) FROM memory_terms WHERE memory_id = ?", [gone]).fetchall() == [(0,)]
    assert store.con.execute("SELECT count(*) FROM memory_embeddings").fetchall() == [(1,)]
    assert len(store.vectors) == 1
    # the same content can be stored again once deleted
    assert not store.add("note", "delete this xylophone note", "a").duplicate


def test_delete_by_project_and_before(store):
    old = store.add("note", "old a", "a", created_at=NOW - timedelta(days=30)).id
    new = store.add("note", "new a", "a", created_at=NOW).id
    other = store.add("note", "old b", "b", created_at=NOW - timedelta(days=30)).id
    assert store.delete(project="a", before=NOW - timedelta(days=1)) == 1
    assert [r["id"] for r in store.get([old, new, other])] == [new, other]
    assert store.delete(before=NOW + timedelta(days=1)) == 2
    assert store.stats()["memories"] == 0
    with pytest.raises(InvalidInput, match="needs ids, project or before"):
        store.delete()


def test_reopen_rebuilds_indexes_and_keeps_rows(path):
    with MemoryStore(path) as s:
        a = s.add("note", "persistent quokka fact", "p", ["t"], created_at=NOW).id
        b = s.add("note", "another quokka fact", "q", created_at=NOW).id
        c = s.add("note", "third quokka, never embedded", "p", created_at=NOW).id
        s.set_embeddings([a, b], np.stack([unit(1), unit(2)]))
        s.delete(ids=[b])
        before = s.search("quokka", query_vector=unit(1), now=NOW)
    with MemoryStore(path) as s:
        assert len(s.vectors) == 1 and len(s.catalog) == 2
        assert s.pending_embeddings(10) == [(c, "third quokka, never embedded")]
        after = s.search("quokka", query_vector=unit(1), now=NOW)
        assert ids_of(after) == ids_of(before) == [a, c]
        assert [h["score"] for h in after.hits] == pytest.approx([h["score"] for h in before.hits])
        assert ids_of(s.search("quokka", tags_all=["t"], now=NOW)) == [a]
        assert s.add("note", "persistent quokka fact", "p").duplicate


def test_a_committed_add_survives_sigkill(path):
    script = textwrap.dedent(f"""
        import os, signal, sys
        from store_worker.memory_store import MemoryStore
        s = MemoryStore({str(path)!r})
        r = s.add("note", "written just before the crash", "p")
        print(r.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr
    rid = proc.stdout.strip()
    with MemoryStore(path) as s:
        assert [r["content"] for r in s.get([rid])] == ["written just before the crash"]
        assert ids_of(s.search("crash")) == [rid]


# -------------------------------------------------------------- export / import


def test_export_import_round_trip_is_identical_and_idempotent(store, tmp_path):
    store.add("note", "one", "a", ["x"], "s1", {"k": [1, 2]}, created_at=NOW)
    store.add("handoff", "two", "b", created_at=NOW - timedelta(days=3, microseconds=7))
    store.add_many({"kind": "checkpoint", "content": f"bulk {i}", "project": "a"}
                   for i in range(1200))
    exported = list(store.export_rows())
    assert len(exported) == 1202
    # in the order written (the table's order), which a fresh import keeps
    assert [r["content"] for r in exported[:3]] == ["one", "two", "bulk 0"]
    assert len(list(store.export_rows(project="b"))) == 1
    with MemoryStore(tmp_path / "fresh.duckdb") as fresh:
        assert fresh.import_rows(exported) == (1202, 0)
        assert list(fresh.export_rows()) == exported
        assert fresh.import_rows(exported) == (0, 1202)
        assert ids_of(fresh.search("two")) == [exported[1]["id"]]


def test_export_reader_sees_the_store_as_it_was_when_opened(store):
    """Writes between two fetches (as the worker interleaves them) change nothing it reads."""
    kept = store.add("note", "present at the start", "a").id
    doomed = store.add("note", "deleted mid-export", "a").id
    store.add_many({"kind": "note", "content": f"row {i}", "project": "a"} for i in range(50))
    journaled = store.add("note", "journaled, not yet flushed", "a").id
    reader = store.export_reader()
    try:
        first = reader.fetch(10)
        store.delete(ids=[doomed])
        late = store.add("note", "added mid-export", "a").id
        store.flush()
        rest = []
        while batch := reader.fetch(7):
            rest += batch
    finally:
        reader.close()
    ids = [r["id"] for r in first + rest]
    assert len(ids) == 53 and len(set(ids)) == 53
    assert {kept, doomed, journaled} <= set(ids) and late not in ids
    assert {r["id"] for r in store.export_rows()} == set(ids) - {doomed} | {late}
    store.checkpoint()  # the reader's transaction is over: a checkpoint may run


def test_import_skips_same_content_under_another_id_and_validates(store):
    store.add("note", "already here", "p")
    rows = [
        {"id": "a" * 32, "kind": "note", "content": "already here", "project": "p",
         "tags": [], "created_at": NOW.isoformat(), "metadata": {}, "session_id": None},
        {"id": "b" * 32, "kind": "note", "content": "new one", "project": "p",
         "tags": [], "created_at": NOW.isoformat(), "metadata": "{}", "session_id": None},
    ]
    assert store.import_rows(rows) == (1, 1)
    with pytest.raises(InvalidInput, match="item 0: id and created_at are required"):
        store.import_rows([{"kind": "note", "content": "x", "project": "p"}])
    with pytest.raises(InvalidInput, match="item 0: id must be"):
        store.import_rows([{**rows[1], "id": "bad id!"}])


# --------------------------------------------------------- dependencies, stats


def test_dependencies(store):
    dep = store.add_dependency("web", "api", "uses", "calls the REST api")
    assert dep["created"] and dep["type"] == "uses"
    again = store.add_dependency("web", "api", "uses", "different words")
    assert not again["created"] and again["description"] == "calls the REST api"
    store.add_dependency("api", "db-lib", "extends")
    with pytest.raises(InvalidInput, match="type must be one of"):
        store.add_dependency("web", "api", "likes")
    with pytest.raises(InvalidInput, match="itself"):
        store.add_dependency("web", "web", "related")
    deps = store.dependencies("api")
    assert [(d["source"], d["target"], d["direction"]) for d in deps] == [
        ("web", "api", "in"), ("api", "db-lib", "out")]
    assert store.dependencies("nobody") == []


def test_stats(store):
    store.add("note", "a", "p1")
    store.add("reflection", "b", "p1")
    c = store.add("note", "c", "p2").id
    store.set_embeddings([c], unit(0)[None])
    stats = store.stats()
    assert stats["memories"] == 3
    assert stats["by_kind"] == {"note": 2, "reflection": 1}
    assert stats["by_project"] == {"p1": 2, "p2": 1}
    assert (stats["embedded"], stats["pending_embeddings"]) == (1, 2)
    assert stats["db_bytes"] > 0 and stats["schema_version"] == schema.SCHEMA_VERSION
    store.delete(ids=[c])
    assert store.count == 2 and store.stats()["memories"] == 2
