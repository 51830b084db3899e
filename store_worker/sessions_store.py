"""Working sessions in the store's DuckDB file (schema v5): opened, checkpointed and closed by the
gateway that runs them, read by any gateway (``status`` lists the open ones of every window).

Like the permission requests, each request runs on the store's database thread in one
transaction, committed before the reply; a bad request writes nothing. How many memories a
session holds comes from the catalogue (each row's session), not from a scan of the table.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from shared import protocol as p
from shared.protocol_sessions import MAX_CHECKPOINTS_KEPT, MAX_SESSIONS_LISTED
from store_worker.records import InvalidInput, check_id, check_project, new_id

if TYPE_CHECKING:
    from store_worker.memory_store import MemoryStore

MAX_PATH_LEN = 4096
MAX_NOTE_LEN = 2000
MAX_SUMMARY_BYTES = 64 * 1024
MAX_ABANDON = 100
_COLUMNS = ("id, project, working_dir, gateway_pid, started_at, ended_at, end_reason, start_head,"
            " branch, start_score, last_score, end_score, handoff_path, last_active_at, metadata,"
            " (SELECT count(*) FROM session_checkpoints c WHERE c.session_id = s.id)")
_CHECKPOINT_COLUMNS = "session_id, made_at, score, delta, commit_state, sha, memory_id, note"


def answer(store: MemoryStore, body: p.RequestBody) -> p.SessionList:
    """Handle one session request (a ``MemoryStore`` on its database thread)."""
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    match body:
        case p.OpenSession():
            ids = store.transaction(lambda con: [open_session(con, now, body)])
        case p.RecordCheckpoint():
            ids = store.transaction(lambda con: [record_checkpoint(con, now, body)])
        case p.CloseSession():
            ids = store.transaction(lambda con: [close_session(con, now, body)])
        case p.SessionQuery():
            ids = query(store.con, body)
            if body.project is not None:
                cat = store.catalog
                counts = cat.count_by_kind(cat.mask([check_project(body.project)]))
        case _:
            raise InvalidInput(f"not a session request: {type(body).__name__}")
    with_checkpoints = isinstance(body, p.SessionQuery) and body.checkpoints
    return p.SessionList(items=records(store, ids, with_checkpoints), memory_counts=counts)


# ------------------------------------------------------------------ checks
def _path(value: Any, what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_PATH_LEN or "\x00" in value or (
            not empty and not value):
        raise InvalidInput(f"{what} must be a path of 1-{MAX_PATH_LEN} characters without NUL")
    return value


def _score(value: Any, what: str, low: float = 0.0) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or not (
            low <= value <= 100):
        raise InvalidInput(f"{what} must be a number in {low:g}..100 or null, not {value!r}")
    return float(value)


def _short(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{what} must be a string of at most {limit} characters")
    return value


def _session_id(value: Any) -> str:
    try:
        return check_id(value)
    except InvalidInput:
        raise InvalidInput(f"session_id must be a session's id, not {value!r}") from None


def _open_row(con: duckdb.DuckDBPyConnection, session_id: str, pid: Any) -> None:
    """Raise unless ``session_id`` names an open session; ``pid`` (unless 0) becomes its
    gateway's."""
    if not isinstance(pid, int) or pid < 0:
        raise InvalidInput("gateway_pid must be a non-negative integer")
    found = con.execute("SELECT ended_at, end_reason FROM sessions WHERE id = ?",
                        [_session_id(session_id)]).fetchall()
    if not found:
        raise InvalidInput(f"no session {session_id}")
    if found[0][0] is not None:
        raise InvalidInput(f"session {session_id} has ended ({found[0][1]} at "
                           f"{_iso(found[0][0])}); start a new one")
    if pid:
        con.execute("UPDATE sessions SET gateway_pid = ? WHERE id = ?", [pid, session_id])


# ------------------------------------------------------------------ writes
def open_session(con: duckdb.DuckDBPyConnection, now: datetime, body: p.OpenSession) -> str:
    project = check_project(body.project)
    root = _path(body.root, "root")
    if not isinstance(body.gateway_pid, int) or body.gateway_pid < 0:
        raise InvalidInput("gateway_pid must be a non-negative integer")
    head = _short(body.start_head, "start_head", 64)
    branch = _short(body.branch, "branch", 255)
    score = _score(body.score, "score")
    detected = _short(body.detected_from, "detected_from", 32)
    if not isinstance(body.abandon, list) or len(body.abandon) > MAX_ABANDON:
        raise InvalidInput(f"abandon must be a list of at most {MAX_ABANDON} session ids")
    for old in body.abandon:
        con.execute("UPDATE sessions SET ended_at = coalesce(last_active_at, started_at),"
                    " end_reason = 'abandoned' WHERE id = ? AND ended_at IS NULL",
                    [_session_id(old)])
    sid = new_id(now)
    con.execute(
        "INSERT INTO sessions (id, project, working_dir, started_at, metadata, gateway_pid,"
        " start_head, branch, start_score, last_score, last_active_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [sid, project, root, now, json.dumps({"detected_from": detected}), body.gateway_pid,
         head, branch, score, score, now])
    return sid


def record_checkpoint(con: duckdb.DuckDBPyConnection, now: datetime,
                      body: p.RecordCheckpoint) -> str:
    _open_row(con, body.session_id, body.gateway_pid)
    score = _score(body.score, "score")
    delta = _score(body.delta, "delta", low=-100.0)
    commit = _short(body.commit, "commit", 64)
    sha = _short(body.sha, "sha", 64)
    memory_id = check_id(body.memory_id) if body.memory_id else ""
    note = _short(body.note, "note", MAX_NOTE_LEN)
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM session_checkpoints"
                      " WHERE session_id = ?", [body.session_id]).fetchall()[0][0]
    con.execute(f"INSERT INTO session_checkpoints (seq, {_CHECKPOINT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, body.session_id, now, score, delta, commit, sha, memory_id, note])
    if seq > MAX_CHECKPOINTS_KEPT:
        con.execute("DELETE FROM session_checkpoints WHERE session_id = ? AND seq <= ?",
                    [body.session_id, seq - MAX_CHECKPOINTS_KEPT])
    con.execute("UPDATE sessions SET last_score = coalesce(?, last_score), last_active_at = ?"
                " WHERE id = ?", [score, now, body.session_id])
    return body.session_id


def close_session(con: duckdb.DuckDBPyConnection, now: datetime, body: p.CloseSession) -> str:
    _open_row(con, body.session_id, body.gateway_pid)
    if body.reason not in ("ended", "abandoned", "replaced"):
        raise InvalidInput(f"reason must be ended, abandoned or replaced, not {body.reason!r}")
    score = _score(body.score, "score")
    handoff = _path(body.handoff_path, "handoff_path", empty=True)
    if not isinstance(body.summary, dict):
        raise InvalidInput("summary must be a JSON object")
    try:
        summary = json.dumps(body.summary, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"summary is not JSON: {exc}") from None
    if len(summary.encode("utf-8", "surrogatepass")) > MAX_SUMMARY_BYTES:
        raise InvalidInput(f"summary is over {MAX_SUMMARY_BYTES} bytes as JSON")
    con.execute(
        "UPDATE sessions SET ended_at = ?, end_reason = ?, end_score = ?, handoff_path = ?,"
        " last_score = coalesce(?, last_score), last_active_at = ?,"
        " metadata = json_merge_patch(coalesce(metadata, '{}'), json_object('summary', ?::JSON))"
        " WHERE id = ?",
        [now, body.reason, score, handoff, score, now, summary, body.session_id])
    return body.session_id


# ------------------------------------------------------------------ reads
def query(con: duckdb.DuckDBPyConnection, q: p.SessionQuery) -> list[str]:
    if not isinstance(q.limit, int) or not 1 <= q.limit <= MAX_SESSIONS_LISTED:
        raise InvalidInput(f"limit must be 1..{MAX_SESSIONS_LISTED}, not {q.limit!r}")
    where, params = [], []
    if q.session_id is not None:
        where.append("id = ?")
        params.append(_session_id(q.session_id))
    if q.root is not None:
        where.append("working_dir = ?")
        params.append(_path(q.root, "root"))
    if q.project is not None:
        where.append("project = ?")
        params.append(check_project(q.project))
    if q.open_only:
        where.append("ended_at IS NULL")
    sql = "SELECT id FROM sessions" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [r[0] for r in con.execute(f"{sql} ORDER BY started_at DESC, id DESC LIMIT ?",
                                      [*params, q.limit]).fetchall()]


def records(store: MemoryStore, ids: list[str], with_checkpoints: bool) -> list[p.SessionRecord]:
    """The sessions ``ids``, in that order, with their memory counts (and checkpoints)."""
    if not ids:
        return []
    con, cat = store.con, store.catalog
    rows = {r[0]: r for r in con.execute(
        f"SELECT {_COLUMNS} FROM sessions s WHERE id IN (SELECT unnest(?::VARCHAR[]))",
        [ids]).fetchall()}
    marks: dict[str, list[p.CheckpointRecord]] = {}
    if with_checkpoints:
        for sid, at, score, delta, commit, sha, memory_id, note in con.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM session_checkpoints"
                " WHERE session_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY session_id, seq",
                [ids]).fetchall():
            marks.setdefault(sid, []).append(p.CheckpointRecord(
                at=_iso(at), score=score, delta=delta, commit=commit, sha=sha,
                memory_id=memory_id, note=note))
    n = len(cat)
    # memories per session code (+1: code -1 is "no session"), counted in one pass
    per_code = np.bincount(cat.session[:n][cat.alive[:n]] + 1,
                           minlength=len(cat.session_codes) + 1)
    out = []
    for sid in ids:
        (_, project, root, pid, started, ended, reason, head, branch, start_score, last_score,
         end_score, handoff, active, metadata, count) = rows[sid]
        out.append(p.SessionRecord(
            id=sid, project=project, root=root or "", gateway_pid=pid, started_at=_iso(started),
            ended_at=None if ended is None else _iso(ended), end_reason=reason,
            start_head=head, branch=branch, start_score=start_score, last_score=last_score,
            end_score=end_score, handoff_path=handoff, last_active_at=_iso(active or started),
            checkpoint_count=count, checkpoints=marks.get(sid, []),
            memories=int(per_code[cat.session_codes[sid] + 1]) if sid in cat.session_codes else 0,
            metadata=json.loads(metadata) if metadata else {}))
    return out


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def session_stats(store: MemoryStore, session_id: str) -> dict[str, Any]:
    """``reflection_stats`` of one session: its memories by kind and project, how many wait
    for their vectors, and the session itself (empty when no session has that id)."""
    cat = store.catalog
    mask = cat.mask(session_id=_session_id(session_id))
    rows = np.flatnonzero(mask)
    names = {code: name for name, code in cat.project_codes.items()}
    by_project = np.bincount(cat.project[rows], minlength=len(names)) if len(rows) else []
    found = records(store, query(store.con, p.SessionQuery(session_id=session_id)), False)
    return {
        "id": session_id,
        "memories": len(rows),
        "by_kind": cat.count_by_kind(mask),
        "by_project": {names[c]: int(k) for c, k in enumerate(by_project) if k},
        "pending_embeddings": int(np.count_nonzero(
            ~(cat.embedded[rows] & cat.chunks_done[rows]))),
        "session": _plain(found[0]) if found else {},
    }


def _plain(record: p.SessionRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__struct_fields__ if f != "checkpoints"}
