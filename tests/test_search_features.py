"""Search features of the store (issue 8): chunks of long memories, supersession, listing
without a query, error and file filters over every memory, what a question says about time.

``MemoryStore`` over a real DuckDB file; vectors are chosen by hand where the test is about the
mechanism, and come from the real model where it is about meaning.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from store_worker.indexes import chunks, snapshot
from store_worker.memory_store import MemoryStore
from store_worker.search import intent
from store_worker.search.mentions import files_mentioned, is_error, same_file

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    v = (1 - w) * a + w * b
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "m.duckdb", snapshot_min_rows=0)
    yield s
    s.close()


def ids_of(result) -> list[str]:
    return [h["id"] for h in result.hits]


def embed_all(store: MemoryStore, vector_of) -> None:
    """Fill every pending item the way the embed filler does (``vector_of(key, text)``), then
    check for supersession."""
    while pending := store.pending_embeddings(100):
        store.set_embeddings([k for k, _ in pending],
                             np.stack([vector_of(k, t) for k, t in pending]))
    store.link_superseded()  # as the store worker does when idle


# ------------------------------------------------------------------ chunks
LONG = " ".join(f"word{i}" for i in range(60)) + " the kafka consumer lag alarm fires at 5000 " \
    + " ".join(f"tail{i}" for i in range(200))


def test_a_long_memory_is_embedded_whole_and_in_overlapping_chunks(store):
    spans = chunks.spans(LONG)
    assert len(spans) == 5  # 268 words, windows of 80 every 60
    assert all(b - a > 0 for a, b in spans) and spans[0][0] == 0 and spans[-1][1] == len(LONG)
    assert spans[1][0] < spans[0][1]  # they overlap
    assert chunks.spans("short memory") == []
    rid = store.add("conversation", LONG, "p", created_at=NOW).id
    keys = [k for k, _ in store.pending_embeddings(100)]
    assert keys == [rid] + [chunks.chunk_key(rid, k) for k in range(5)]
    assert store.stats()["pending_embeddings"] == 1
    store.set_embeddings(keys[:3], np.stack([unit(i) for i in range(3)]))  # whole + 2 chunks
    assert [k for k, _ in store.pending_embeddings(100)] == keys[3:]  # only what is missing
    assert store.stats()["pending_embeddings"] == 1  # not done until every chunk is there
    store.set_embeddings(keys[3:], np.stack([unit(i) for i in range(3, 6)]))
    stats = store.stats()
    assert stats["pending_embeddings"] == 0 and store.pending_embeddings(100) == []
    assert stats["chunks"] == {"memories_chunked": 1, "chunks_expected": 5, "chunks_embedded": 5}
    assert stats["vector_index"]["chunk_vectors"] == 5


def test_a_long_memory_is_found_by_its_best_chunk(store):
    other = store.add("note", "an unrelated short note", "p", created_at=NOW).id
    rid = store.add("conversation", LONG, "p", created_at=NOW).id
    detail = unit(42)  # what chunk 1 (holding "kafka consumer lag") is about

    def vector_of(key, text):
        return detail if key == chunks.chunk_key(rid, 1) else unit(len(key) + len(text))

    embed_all(store, vector_of)
    res = store.search("consumer lag threshold", query_vector=mix(detail, unit(7), 0.1), now=NOW)
    assert ids_of(res)[0] == rid
    top = res.hits[0]
    assert top["parts"]["chunk"] == 1 and top["parts"]["vector"] > 0.9
    assert "kafka consumer lag" in top["snippet"]  # the snippet comes from that chunk
    assert other in ids_of(res)


def test_chunks_survive_a_reopen_from_the_snapshot_and_from_the_tables(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        rid = s.add("conversation", LONG, "p", created_at=NOW).id
        embed_all(s, lambda k, t: unit(len(k)))
    for source in ("snapshot", "tables"):
        if source == "tables":
            snapshot.path_for(db).unlink()
        with MemoryStore(db, snapshot_min_rows=0) as s:
            assert s.load_info["source"] == source
            assert s.vectors.chunks_of(s.catalog.row_of[rid]) == [0, 1, 2, 3, 4]
            assert s.stats()["pending_embeddings"] == 0
            assert s.stats()["chunks"]["chunks_embedded"] == 5


def test_deleting_a_long_memory_drops_its_chunks(store):
    rid = store.add("conversation", LONG, "p", created_at=NOW).id
    embed_all(store, lambda k, t: unit(len(k)))
    assert store.delete(ids=[rid]) == 1
    assert store.stats()["chunks"]["chunks_embedded"] == 0
    assert store.vectors.chunks_of(store.catalog.row_of.get(rid, -1)) == []


# ------------------------------------------------------------------ supersession
def test_a_restatement_with_a_new_fact_supersedes_the_older_memory(store):
    subject = unit(1)
    old = store.add("note", "invoice PDFs are rendered with wkhtmltopdf", "billing",
                    created_at=NOW - timedelta(days=200)).id
    new = store.add("note", "replaced wkhtmltopdf with WeasyPrint for invoice PDFs", "billing",
                    created_at=NOW - timedelta(days=5)).id
    same_words = store.add("note", "invoice PDFs: wkhtmltopdf needs xvfb", "billing",
                           created_at=NOW - timedelta(days=3)).id  # no change cue
    elsewhere = store.add("note", "replaced wkhtmltopdf with WeasyPrint", "docs",
                          created_at=NOW - timedelta(days=1)).id  # another project
    vectors = {old: subject, new: mix(subject, unit(2), 0.3),
               same_words: mix(subject, unit(3), 0.3), elsewhere: subject}
    embed_all(store, lambda k, t: vectors[k])
    assert store.stats()["supersessions"] == 1
    res = store.search("invoice pdf renderer", query_vector=subject, now=NOW, limit=10)
    hits = {h["id"]: h for h in res.hits}
    assert hits[new]["supersedes"] == [old] and hits[old]["superseded_by"] == new
    assert hits[same_words]["supersedes"] == [] and hits[elsewhere]["supersedes"] == []
    store.delete(ids=[new])  # the older one is current again
    res = store.search("invoice pdf renderer", query_vector=subject, now=NOW)
    assert {h["id"]: h for h in res.hits}[old]["superseded_by"] is None


def test_supersession_links_survive_a_reopen(tmp_path):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        old = s.add("note", "we deploy with fabric scripts", "p",
                    created_at=NOW - timedelta(days=90)).id
        new = s.add("note", "moved off fabric: deploys now run from GitHub Actions", "p",
                    created_at=NOW - timedelta(days=2)).id
        embed_all(s, lambda k, t: unit(1) if k == old else mix(unit(1), unit(2), 0.2))
    for source in ("snapshot", "tables"):
        if source == "tables":
            snapshot.path_for(db).unlink()
        with MemoryStore(db, snapshot_min_rows=0) as s:
            assert s.load_info["source"] == source
            cat = s.catalog
            assert cat.superseded_by[cat.row_of[old]] == cat.row_of[new]
            assert cat.supersedes(cat.row_of[new]) == [cat.row_of[old]]


# ------------------------------------------------------------------ listing, errors, files
def test_without_a_query_the_period_is_listed_newest_first(store):
    """Regression: a time-only search ("what did I do yesterday") returned nothing, because only
    rows with a keyword score were kept."""
    ids = [store.add("note", f"memory number {i}", "p", created_at=NOW - timedelta(hours=i)).id
           for i in range(30)]
    period = {"since": NOW - timedelta(hours=9), "until": NOW + timedelta(minutes=1)}
    res = store.search("", **period, now=NOW, limit=5)
    assert res.mode == "recent" and res.total_candidates == 10
    assert ids_of(res) == ids[:5]
    assert ids_of(store.search("", **period, now=NOW, limit=5, offset=5)) == ids[5:10]


def test_error_detection_is_about_errors_not_words_that_start_with_e():
    """Regression: the case-insensitive \\bE[A-Z]{3,}\\b matched "else", "every", "email"."""
    assert not is_error("else every email: the Elastic endpoint sends everything")
    for text in ("TypeError: 'NoneType' object is not subscriptable", "got ECONNREFUSED",
                 "the build failed on CI", "Traceback (most recent call last):",
                 "segfault in the renderer", "ConnectionResetException from the pool"):
        assert is_error(text), text


def test_errors_only_and_must_contain_cover_every_memory(store):
    for i in range(150):
        store.add("note", f"deploy {i} hit ECONNREFUSED on the db", "p",
                  created_at=NOW - timedelta(minutes=i))
    for i in range(150):
        store.add("note", f"deploy {i} else every email went fine", "p",
                  created_at=NOW - timedelta(minutes=i))
    store.add("note", "TypeError in the report job", "p", created_at=NOW)
    errors = store.search("", errors_only=True, now=NOW, limit=100)
    assert errors.total_candidates == 151
    typed = store.search("", errors_only=True, must_contain="ECONNREFUSED", now=NOW, limit=100)
    assert typed.total_candidates == 150
    seen = set(ids_of(typed)) | set(ids_of(store.search(
        "", errors_only=True, must_contain="ECONNREFUSED", now=NOW, limit=100, offset=100)))
    assert len(seen) == 150


def test_files_mentioned_are_found_at_store_time():
    assert files_mentioned("edit src/app.py and ./README.md, not 3.14 or v1.2.3 or e.g.") == [
        "src/app.py", "./README.md"]
    assert files_mentioned("see C:\\repo\\main.rs.") == ["/repo/main.rs"]  # the drive is cut
    assert same_file("src/app.py", "/home/me/repo/src/app.py")
    assert same_file("app.py", "src/app.py")
    assert not same_file("src/app.py", "lib/app.py")
    assert not same_file("myapp.py", "app.py")


def test_every_memory_naming_a_file_is_found_paged(store):
    """Regression: search_by_file filtered the top 100 hits of a keyword search."""
    naming = {store.add("note", f"change {i}: touched src/app.py again", "p",
                        created_at=NOW - timedelta(minutes=i)).id for i in range(250)}
    for i in range(2000):
        store.add("note", f"unrelated change {i} in lib/other_{i}.py about app py", "p",
                  created_at=NOW - timedelta(minutes=i))
    store.add("note", "lib/app.py is a different file", "p", created_at=NOW)
    seen: list[str] = []
    for offset in range(0, 300, 100):
        page = store.search("", file_path="/repo/src/app.py", order="newest", limit=100,
                            offset=offset, now=NOW)
        assert page.total_candidates == 250
        seen += ids_of(page)
    assert len(seen) == 250 and set(seen) == naming


# ------------------------------------------------------------------ the question's time words
def test_intent_reads_current_state_and_periods():
    tz = UTC
    assert intent.read("what do we use now for PDFs?", NOW, tz).current
    assert intent.read("is the bot still on Socket Mode", NOW, tz).current
    assert not intent.read("how do we render PDFs", NOW, tz).current
    y = intent.read("what broke in the deploy yesterday?", NOW, tz)
    assert y.has_period and y.since <= NOW - timedelta(days=1) <= y.until
    assert y.period_words == "yesterday" and not y.current
    w = intent.read("the flaky test I fixed last week", NOW, tz)
    assert w.since <= NOW - timedelta(days=7) <= w.until
    assert intent.read("how do we deploy today?", NOW, tz).current


def test_a_named_period_prefers_memories_written_in_it(store):
    old = store.add("note", "the nightly export job failed on a full disk", "p",
                    created_at=NOW - timedelta(days=120)).id
    recent = store.add("note", "the nightly export job failed on a lock timeout", "p",
                       created_at=NOW - timedelta(days=7)).id
    embed_all(store, lambda k, t: unit(1) if k == old else mix(unit(1), unit(2), 0.15))
    query = mix(unit(1), unit(3), 0.2)  # a bit closer to the older one
    assert ids_of(store.search("why did the nightly export fail", query_vector=query,
                               now=NOW))[0] == old
    assert ids_of(store.search("why did the nightly export fail last week", query_vector=query,
                               now=NOW))[0] == recent


def test_asking_for_the_current_state_lets_the_newer_restatement_win(store):
    old = store.add("note", "sessions are stored in memcached", "auth",
                    created_at=NOW - timedelta(days=200)).id
    new = store.add("note", "moved session storage from memcached to redis", "auth",
                    created_at=NOW - timedelta(days=20)).id
    unrelated_newer = store.add("note", "the login page got a new logo", "auth",
                                created_at=NOW - timedelta(days=1)).id
    vectors = {old: unit(1), new: mix(unit(1), unit(2), 0.35), unrelated_newer: unit(9)}
    embed_all(store, lambda k, t: vectors[k])
    query = mix(unit(1), unit(3), 0.3)  # closer to the older statement
    assert ids_of(store.search("where are sessions stored", query_vector=query, now=NOW))[0] == old
    now_first = ids_of(store.search("where are sessions stored now?", query_vector=query,
                                    now=NOW))
    assert now_first[0] == new and now_first.index(unrelated_newer) > now_first.index(old)


def test_without_vectors_search_still_ranks_by_keywords(store):
    """Nothing embedded yet (or the embedding pool down): plain words decide the order."""
    one = store.add("note", "the cache is cold after a deploy", "p", created_at=NOW).id
    both = store.add("note", "the cache warmup job runs after every deploy", "p",
                     created_at=NOW - timedelta(days=300)).id
    store.add("note", "an unrelated note about lunch", "p", created_at=NOW)
    res = store.search("cache warmup", now=NOW)
    assert res.mode == "keyword" and ids_of(res) == [both, one]


def test_a_keyword_query_finds_the_memory_holding_the_keyword(store):
    """One to three plain words are a keyword search: the memory that holds them wins over one
    that is only close in meaning (a longer question still ranks by meaning)."""
    holds = store.add("note", "we render invoice PDFs with wkhtmltopdf 0.12", "p",
                      created_at=NOW - timedelta(days=200)).id
    close = store.add("note", "invoice PDFs look blurry on retina screens", "p",
                      created_at=NOW).id
    embed_all(store, lambda k, t: unit(1) if k == holds else unit(2))
    query = mix(unit(2), unit(1), 0.45)  # the model puts the query nearer the other memory
    assert ids_of(store.search("wkhtmltopdf", query_vector=query, now=NOW))[0] == holds
    long_question = "why do the invoice documents we generate look fuzzy, wkhtmltopdf or not"
    assert ids_of(store.search(long_question, query_vector=query, now=NOW))[0] == close


def test_keyword_queries_are_a_few_words_that_are_not_a_question():
    from store_worker.search.hybrid_search import is_keyword_query

    for q in ("wkhtmltopdf", "celery broker", "BILL-482 retries"):
        assert is_keyword_query(q), q
    for q in ("where are sessions stored?", "what renders PDFs", "how we deploy to prod now",
              ""):
        assert not is_keyword_query(q), q
