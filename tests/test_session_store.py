"""The store's side of sessions over a real DuckDB file: schema v5, opening, checkpointing and
closing sessions, bad requests writing nothing, and each memory's session in the catalogue
(search and stats filter by it) kept across a reopen from the tables and from the snapshot."""

from __future__ import annotations

import math

import pytest

from shared import protocol as p
from store_worker import sessions_store
from store_worker.indexes import snapshot
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput
from store_worker.sessions_store import answer
from store_worker.storage import schema


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "m.duckdb")
    yield s
    s.close()


def opened(store, root: str = "/work/shop", **fields) -> p.SessionRecord:
    body = p.OpenSession(**{"project": "shop", "root": root, "gateway_pid": 7,
                            "start_head": "a" * 40, "branch": "main", "score": 70.0, **fields})
    return answer(store, body).items[0]


def counts(store) -> tuple[int, int]:
    one = "SELECT count(*) FROM {}"
    return (store.con.execute(one.format("sessions")).fetchall()[0][0],
            store.con.execute(one.format("session_checkpoints")).fetchall()[0][0])


def test_a_version_4_store_gains_the_session_columns(tmp_path, monkeypatch):
    path = tmp_path / "old.duckdb"
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 4)
    with MemoryStore(path) as old:
        kept = old.add("note", "written before sessions existed", "p", session_id="s-old").id
        assert schema.current_version(old.con) == 4
    monkeypatch.undo()
    with MemoryStore(path) as new:
        assert schema.current_version(new.con) == 5
        assert new.search("", session_id="s-old", order="newest").hits[0]["id"] == kept
        assert opened(new).project == "shop"


def test_open_checkpoint_close_and_query(store):
    s = opened(store)
    assert (s.gateway_pid, s.start_score, s.last_score, s.ended_at) == (7, 70.0, 70.0, None)
    assert s.metadata == {"detected_from": ""} and s.checkpoint_count == 0
    store.add("note", "in the session", "shop", session_id=s.id)
    store.add("reflection", "also in it", "shop", session_id=s.id)
    store.add("note", "outside it", "shop")
    got = answer(store, p.RecordCheckpoint(session_id=s.id, score=81.5, delta=11.5,
                                           commit="committed", sha="b" * 40,
                                           note="first", gateway_pid=9)).items[0]
    assert (got.last_score, got.checkpoint_count, got.memories, got.gateway_pid) == (
        81.5, 1, 2, 9)
    answer(store, p.RecordCheckpoint(session_id=s.id, score=None, commit="refused"))
    listed = answer(store, p.SessionQuery(project="shop", checkpoints=True))
    assert listed.memory_counts == {"note": 2, "reflection": 1}
    (one,) = listed.items
    assert [(c.score, c.commit, c.note) for c in one.checkpoints] == [
        (81.5, "committed", "first"), (None, "refused", "")]
    assert one.last_score == 81.5  # an unmeasured checkpoint keeps the last score

    closed = answer(store, p.CloseSession(session_id=s.id, score=85.0, handoff_path="/h.md",
                                          summary={"text": "done", "files": 3})).items[0]
    assert closed.end_reason == "ended" and closed.ended_at is not None
    assert (closed.end_score, closed.handoff_path) == (85.0, "/h.md")
    assert closed.metadata == {"detected_from": "", "summary": {"text": "done", "files": 3}}
    assert answer(store, p.SessionQuery(open_only=True)).items == []
    assert [r.id for r in answer(store, p.SessionQuery(root="/work/shop")).items] == [s.id]
    assert answer(store, p.SessionQuery(root="/elsewhere")).items == []

    stats = sessions_store.session_stats(store, s.id)
    assert (stats["memories"], stats["by_kind"], stats["by_project"]) == (
        2, {"note": 1, "reflection": 1}, {"shop": 2})
    assert stats["session"]["end_reason"] == "ended" and stats["pending_embeddings"] == 2
    assert sessions_store.session_stats(store, "unknown")["session"] == {}


def test_abandoned_sessions_end_at_their_last_activity(store):
    old = opened(store, gateway_pid=11)
    answer(store, p.RecordCheckpoint(session_id=old.id, score=72.0))
    active = answer(store, p.SessionQuery(session_id=old.id)).items[0].last_active_at
    new = opened(store, abandon=[old.id])
    gone = answer(store, p.SessionQuery(session_id=old.id)).items[0]
    assert (gone.end_reason, gone.ended_at) == ("abandoned", active)
    assert [r.id for r in answer(store, p.SessionQuery(open_only=True)).items] == [new.id]


def test_bad_requests_write_nothing(store):
    s = opened(store)
    answer(store, p.CloseSession(session_id=opened(store, root="/other").id))
    before = counts(store)
    bad = [
        (p.OpenSession(project="", root="/r", gateway_pid=1), "project"),
        (p.OpenSession(project="x", root="", gateway_pid=1), "root"),
        (p.OpenSession(project="x", root="/r\x00", gateway_pid=1), "root"),
        (p.OpenSession(project="x", root="/r" * 3000, gateway_pid=1), "root"),
        (p.OpenSession(project="x", root="/r", gateway_pid=-1), "gateway_pid"),
        (p.OpenSession(project="x", root="/r", gateway_pid=1, score=101.0), "score"),
        (p.OpenSession(project="x", root="/r", gateway_pid=1, score=math.nan), "score"),
        (p.OpenSession(project="x", root="/r", gateway_pid=1, abandon=["x"] * 101), "abandon"),
        (p.OpenSession(project="x", root="/r", gateway_pid=1, abandon=["no such id!"]),
         "session_id"),
        (p.RecordCheckpoint(session_id="nope"), "no session nope"),
        (p.RecordCheckpoint(session_id=s.id, delta=-101.0), "delta"),
        (p.RecordCheckpoint(session_id=s.id, note="n" * 2001), "note"),
        (p.RecordCheckpoint(session_id=s.id, memory_id="bad id"), "id"),
        (p.CloseSession(session_id=s.id, reason="bored"), "reason"),
        (p.CloseSession(session_id=s.id, summary={"big": "x" * 70_000}), "summary"),
        (p.CloseSession(session_id=s.id, summary={"nan": math.inf}), "summary"),
        (p.SessionQuery(limit=0), "limit"),
        (p.SessionQuery(limit=101), "limit"),
    ]
    for body, words in bad:
        with pytest.raises(InvalidInput, match=words):
            answer(store, body)
        assert counts(store) == before, body
    ended = answer(store, p.SessionQuery(open_only=False, root="/other")).items[0]
    with pytest.raises(InvalidInput, match="has ended"):
        answer(store, p.RecordCheckpoint(session_id=ended.id, score=1.0))
    with pytest.raises(InvalidInput, match="has ended"):
        answer(store, p.CloseSession(session_id=ended.id))
    assert answer(store, p.SessionQuery(session_id=s.id)).items[0].ended_at is None


@pytest.mark.parametrize("source", ["snapshot", "tables"])
def test_each_memorys_session_survives_a_reopen(tmp_path, source):
    db = tmp_path / "m.duckdb"
    with MemoryStore(db, snapshot_min_rows=0) as s:
        a = [s.add("note", f"socket reconnect {i}", "p", session_id="sa").id for i in range(3)]
        b = s.add("note", "socket reconnect in b", "p", session_id="sb").id
        none = s.add("note", "socket reconnect in none", "p").id
        s.add_many([{"kind": "note", "content": "socket reconnect bulk", "project": "q",
                     "session_id": "sb"}])
    if source == "tables":
        snapshot.path_for(db).unlink()
    with MemoryStore(db, snapshot_min_rows=0) as s:
        assert s.load_info["source"] == source

        def found(**kw) -> set[str]:
            return {h["id"] for h in s.search("socket reconnect", limit=50, **kw).hits}

        assert found(session_id="sa") == set(a)
        assert len(found(session_id="sb")) == 2 and b in found(session_id="sb")
        assert found(session_id="sc") == set()
        assert none in found() and len(found()) == 6
        new = s.add("note", "socket reconnect later", "p", session_id="sa").id
        assert found(session_id="sa") == {*a, new}
        assert found(session_id="sb", projects=["q"]) == found(projects=["q"])
