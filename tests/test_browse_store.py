"""What the dashboard asks the store (``store_worker.browse``): the projects' overview, a memory's
neighbours and links. ``MemoryStore`` over a real DuckDB file, vectors chosen by hand; the
same requests through a real stack are in ``test_webui.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_search_features import embed_all, mix, unit

from shared.errors import NotFound
from store_worker import browse
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday; its week began Monday the 23rd


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "m.duckdb", snapshot_min_rows=0)
    yield s
    s.close()


def test_overview_counts_growth_tags_sessions_and_links(store):
    def add(project, days_ago, tags=(), kind="note", session=None, text=""):
        return store.add(kind, text or f"{project} memory {days_ago} {tags}", project,
                         tags=list(tags), session_id=session,
                         created_at=NOW - timedelta(days=days_ago)).id

    add("shop", 0, ["pdf"], session="s1")
    add("shop", 1, ["pdf", "ui"], session="s1")
    add("shop", 8, ["pdf"], kind="conversation", session="s2")
    add("shop", 400, ["old"])  # before the weeks shown
    gone = add("shop", 2, ["pdf", "doomed"])
    add("billing", 15, ["retry"])
    store.delete(ids=[gone])
    store.add_dependency("shop", "billing", "uses")
    store.add_dependency("billing", "ledger", "extends")  # ledger has no memories

    data = browse.overview(store, weeks=4, top_tags=2, now=NOW)
    assert data["total"] == 5
    assert data["weeks"] == ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    shop, billing = data["projects"]  # biggest first
    assert shop["name"] == "shop" and shop["count"] == 4
    assert shop["kinds"] == {"conversation": 1, "note": 3}
    assert shop["growth"] == [0, 0, 1, 2] and shop["before"] == 1
    assert shop["sessions"] == 2
    assert shop["top_tags"] == [["pdf", 3], ["old", 1]]  # the deleted memory's tags are gone
    assert shop["first"].startswith("2025-10-") and shop["last"] == NOW.isoformat()
    assert billing["growth"] == [0, 1, 0, 0] and billing["before"] == 0
    assert billing["sessions"] == 0 and billing["top_tags"] == [["retry", 1]]
    assert data["top_tags"] == [["pdf", 3], ["old", 1]]
    assert data["kinds"] == {"conversation": 1, "note": 4}
    assert [(d["source"], d["target"], d["type"]) for d in data["dependencies"]] == [
        ("shop", "billing", "uses"), ("billing", "ledger", "extends")]

    bare = browse.overview(store, weeks=0, top_tags=0, now=NOW)
    assert bare["weeks"] == [] and bare["projects"][0]["growth"] == []
    assert bare["projects"][0]["before"] == 4 and bare["top_tags"] == []
    for bad in ({"weeks": -1, "top_tags": 1}, {"weeks": 521, "top_tags": 1},
                {"weeks": 1, "top_tags": 101}):
        with pytest.raises(InvalidInput):
            browse.overview(store, **bad)


def test_an_empty_store_has_an_empty_overview(store):
    data = browse.overview(store, weeks=3, top_tags=5, now=NOW)
    assert data["total"] == 0 and data["projects"] == [] and len(data["weeks"]) == 3


def test_neighbours_by_vector_leave_the_memory_out_and_fall_back_to_words(store):
    subject = unit(1)
    a = store.add("note", "the billing worker renders invoice PDFs", "billing").id
    b = store.add("note", "invoice PDFs come out of the billing worker", "billing").id
    c = store.add("note", "the mobile app caches images on disk", "app").id
    vectors = {a: subject, b: mix(subject, unit(2), 0.2), c: unit(3)}
    embed_all(store, lambda k, t: vectors[k])
    found = browse.neighbours(store, a, 5)
    assert [h["id"] for h in found.hits] == [b, c] and found.mode == "hybrid"
    assert found.hits[0]["parts"]["vector"] == pytest.approx(float(vectors[b] @ subject),
                                                             abs=1e-4)
    assert [h["id"] for h in browse.neighbours(store, a, 1).hits] == [b]

    fresh = store.add("note", "who renders the invoice PDFs", "billing").id  # no vector yet
    by_words = browse.neighbours(store, fresh, 5)
    assert by_words.mode == "keyword" and fresh not in [h["id"] for h in by_words.hits]
    assert {a, b} <= {h["id"] for h in by_words.hits}

    with pytest.raises(NotFound):
        browse.neighbours(store, "nope", 5)
    store.delete(ids=[c])
    with pytest.raises(NotFound):
        browse.neighbours(store, c, 5)
    for bad in (0, 51):
        with pytest.raises(InvalidInput):
            browse.neighbours(store, a, bad)


def test_links_name_both_ends_of_a_supersession(store):
    subject = unit(1)
    old = store.add("note", "invoice PDFs are rendered with wkhtmltopdf", "billing",
                    created_at=NOW - timedelta(days=200)).id
    new = store.add("note", "replaced wkhtmltopdf with WeasyPrint for invoice PDFs", "billing",
                    created_at=NOW - timedelta(days=5)).id
    embed_all(store, lambda k, t: subject if k == old else mix(subject, unit(2), 0.3))
    assert browse.links(store, new) == ([old], None)
    assert browse.links(store, old) == ([], new)
    assert browse.links(store, "unknown") == ([], None)
    store.delete(ids=[new])
    assert browse.links(store, old) == ([], None)


def test_the_pending_count_is_safe_to_read_while_columns_grow(store):
    """The store's heartbeat reads the backlog on its IO thread while the DB thread may be
    swapping the columns for longer copies and appending rows: a reader holding an old, shorter
    column must still get a count (it was a numpy broadcast error)."""
    for i in range(3):
        store.add("note", f"memory {i}", "p")
    cat = store.catalog
    assert cat.pending_count() == 3
    cat.alive = cat.alive[:2].copy()  # as seen mid-swap: row 3 appended, this column not yet
    assert cat.pending_count() == 2
