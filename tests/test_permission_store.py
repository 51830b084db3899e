"""The store's side of permissions over a real DuckDB file: schema v4, checks, the log."""

from __future__ import annotations

import math
import time

import pytest

from shared import protocol as p
from shared.limits import MAX_PERMISSION_DETAIL_LEN, MAX_TRUST_MINUTES
from store_worker import permissions_store
from store_worker.memory_store import MemoryStore
from store_worker.permissions_store import answer
from store_worker.records import InvalidInput
from store_worker.storage import schema

OP, LEVEL = "delete_memories", "critical"


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "m.duckdb")
    yield s
    s.close()


def rows(store: MemoryStore) -> tuple[int, int]:
    count = "SELECT count(*) FROM {}"
    return (store.con.execute(count.format("permission_grants")).fetchall()[0][0],
            store.con.execute(count.format("permission_decisions")).fetchall()[0][0])


def log(store, decision: str, op: str = OP) -> p.PermissionState:
    return answer(store, p.LogPermission(operation=op, level=LEVEL, decision=decision,
                                         detail="d", gateway_pid=7))


def grant(store, ttl_s: float = 60.0, op: str = OP, **kw) -> p.PermissionState:
    return answer(store, p.GrantPermission(operation=op, level=LEVEL, ttl_s=ttl_s,
                                           gateway_pid=7, **kw))


def test_a_version_3_store_gains_the_permission_tables(tmp_path, monkeypatch):
    path = tmp_path / "old.duckdb"
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    with MemoryStore(path) as old:
        kept = old.add("note", "written before permissions existed", "p").id
        assert schema.current_version(old.con) == 3
    monkeypatch.undo()
    with MemoryStore(path) as new:
        assert schema.current_version(new.con) == schema.SCHEMA_VERSION
        assert [m["id"] for m in new.get([kept])] == [kept]
        assert grant(new).grants[0].operation == OP


def test_bad_requests_write_nothing(store):
    grant(store)
    before = rows(store)
    bad = [
        *[p.CheckPermission(operation=op, level=LEVEL) for op in
          ("", "Delete", "rm -rf", "x" * 65, "d\u00e9lete", "a;b")],
        p.CheckPermission(operation=OP, level="extreme"),
        p.CheckPermission(operation=OP, level=LEVEL, detail="x" * (MAX_PERMISSION_DETAIL_LEN + 1)),
        p.CheckPermission(operation=OP, level=LEVEL, gateway_pid=-1),
        *[p.GrantPermission(operation=OP, level=LEVEL, ttl_s=t) for t in
          (0, -1, math.inf, math.nan, MAX_TRUST_MINUTES * 60 + 1)],
        p.GrantPermission(operation=OP, level=LEVEL, ttl_s=60, via="root"),
        *[p.LogPermission(operation=OP, level=LEVEL, decision=d) for d in
          ("trusted", "allowed", "expired", "revoked", "maybe")],
        p.RevokePermission(operation="Nope"),
        p.PermissionStatus(limit=-1),
        p.PermissionStatus(limit=10_000),
    ]
    for body in bad:
        with pytest.raises(InvalidInput):
            answer(store, body)
    assert rows(store) == before
    assert answer(store, p.CheckPermission(operation=OP, level=LEVEL)).allowed


def test_approvals_in_a_row_reset_on_denial_grant_and_revoke(store):
    assert log(store, "asked").approvals_in_row == 0
    assert log(store, "approved").approvals_in_row == 1
    assert log(store, "approved").approvals_in_row == 2
    assert log(store, "approved", op="git_commit").approvals_in_row == 1  # per operation
    assert log(store, "denied").approvals_in_row == 0
    assert log(store, "approved").approvals_in_row == 1
    grant(store)
    check = answer(store, p.CheckPermission(operation=OP, level=LEVEL))
    assert check.allowed and check.approvals_in_row == 0
    answer(store, p.RevokePermission(operation=OP, level=LEVEL))
    assert log(store, "approved").approvals_in_row == 1


def test_a_new_grant_replaces_the_active_one_and_revoke_ends_it(store):
    grant(store, 60)
    (active,) = grant(store, 120, via="elicitation").grants
    assert active.via == "elicitation" and 60 < active.expires_in_s <= 120
    ended = store.con.execute("SELECT end_reason FROM permission_grants ORDER BY id").fetchall()
    assert ended == [("replaced",), (None,)]
    grant(store, 60, op="git_commit")
    gone = answer(store, p.RevokePermission(gateway_pid=9))
    assert gone.count == 2 and gone.grants == []
    log_ = answer(store, p.PermissionStatus()).decisions
    assert [(d.decision, d.operation, d.gateway_pid) for d in log_[:2]] == [
        ("revoked", "git_commit", 9), ("revoked", OP, 9)]


def test_an_expired_grant_stops_counting_and_is_logged_at_its_expiry(store):
    (g,) = grant(store, 0.3).grants
    time.sleep(0.5)
    check = answer(store, p.CheckPermission(operation=OP, level=LEVEL, detail="late"))
    assert not check.allowed and check.grants == []
    expired, trusted = answer(store, p.PermissionStatus()).decisions[:2]
    assert (expired.decision, trusted.decision) == ("expired", "trusted")
    assert expired.at == g.expires_at and expired.gateway_pid is None
    assert store.con.execute("SELECT end_reason FROM permission_grants").fetchall() == [
        ("expired",)]


def test_the_log_keeps_the_newest_decisions(store, monkeypatch):
    monkeypatch.setattr(permissions_store, "KEPT_DECISIONS", 5)
    for i in range(8):
        answer(store, p.LogPermission(operation=OP, level=LEVEL, decision="asked",
                                      detail=f"call {i}"))
    kept = answer(store, p.PermissionStatus(limit=100)).decisions
    assert [d.detail for d in kept] == [f"call {i}" for i in range(7, 2, -1)]
