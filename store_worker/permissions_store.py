"""Permission grants and the decision log, kept in the store's DuckDB file (schema v4).

The gateway classifies operations and decides whom to ask; this module only remembers: which
grants exist and until when, and every decision taken (asked, approved, denied, trusted,
allowed, refused, expired, revoked), with the gateway's pid. It runs on the store's database
thread like every other request; each request is one transaction, committed before the reply,
so a grant survives a crash of any process once it is acknowledged.

Expiry is judged by this process's clock: every request first ends the grants whose time has
passed and logs each as ``expired`` (at its expiry time), so the log says when a grant stopped
counting even if nobody asked for it since.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import duckdb

from shared import protocol as p
from shared.limits import (
    KEPT_DECISIONS,
    MAX_DECISIONS_SHOWN,
    MAX_OPERATION_LEN,
    MAX_PERMISSION_DETAIL_LEN,
    MAX_TRUST_MINUTES,
)
from store_worker.records import InvalidInput

LEVELS = get_args(p.PermissionLevel)
DECISIONS = get_args(p.PermissionDecision)
VIAS = get_args(p.GrantVia)
_OPERATION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
# What the gateway may log itself; the others are the store's own (grants made, used, ended).
GATEWAY_DECISIONS = ("asked", "approved", "denied", "refused")
_GRANT_COLUMNS = "operation, level, via, granted_at, expires_at, gateway_pid"

def answer(store: Any, body: p.RequestBody) -> p.PermissionState:
    """Handle one permission request in one transaction of ``store`` (a ``MemoryStore``)."""
    now = datetime.now(UTC)
    return store.transaction(lambda con: _answer(con, body, now))


def _answer(con: duckdb.DuckDBPyConnection, body: p.RequestBody,
            now: datetime) -> p.PermissionState:
    end_expired(con, now)
    match body:
        case p.CheckPermission(operation=op, level=level, detail=detail, gateway_pid=pid):
            op = check_operation(op)
            grants = active_grants(con, now, op)
            if grants:
                log(con, now, "allowed", op, level, detail, pid)
            return p.PermissionState(allowed=bool(grants), grants=grants,
                                     approvals_in_row=approvals_in_row(con, op))
        case p.GrantPermission():
            return p.PermissionState(grants=grant(con, now, body))
        case p.RevokePermission(operation=op, level=level, gateway_pid=pid):
            ended = revoke(con, now, None if op is None else check_operation(op), level, pid)
            return p.PermissionState(grants=active_grants(con, now, None), count=ended)
        case p.LogPermission(operation=op, level=level, decision=decision, detail=detail,
                             gateway_pid=pid):
            if decision not in GATEWAY_DECISIONS:
                raise InvalidInput(f"decision must be one of {', '.join(GATEWAY_DECISIONS)} "
                                   f"(the store records the others itself), not {decision!r}")
            op = check_operation(op)
            log(con, now, decision, op, level, detail, pid)
            return p.PermissionState(approvals_in_row=approvals_in_row(con, op))
        case p.PermissionStatus(operation=op, limit=limit):
            op = None if op is None else check_operation(op)
            if not isinstance(limit, int) or not 0 <= limit <= MAX_DECISIONS_SHOWN:
                raise InvalidInput(f"limit must be 0..{MAX_DECISIONS_SHOWN}, not {limit!r}")
            return p.PermissionState(grants=active_grants(con, now, op),
                                     decisions=recent_decisions(con, op, limit),
                                     approvals_in_row=approvals_in_row(con, op) if op else 0)
    raise InvalidInput(f"not a permission request: {type(body).__name__}")


# ------------------------------------------------------------------ checks
def check_operation(op: Any) -> str:
    if (not isinstance(op, str) or not 0 < len(op) <= MAX_OPERATION_LEN
            or not set(op) <= _OPERATION_CHARS):
        raise InvalidInput(f"operation must be 1-{MAX_OPERATION_LEN} characters of [a-z0-9_], "
                           f"not {op!r}")
    return op


def _check_fields(level: Any, detail: Any, pid: Any) -> None:
    if level is not None and level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if not isinstance(detail, str) or len(detail) > MAX_PERMISSION_DETAIL_LEN:
        raise InvalidInput(f"detail must be a string of at most {MAX_PERMISSION_DETAIL_LEN} "
                           "characters")
    if not isinstance(pid, int) or pid < 0:
        raise InvalidInput(f"gateway_pid must be a non-negative integer, not {pid!r}")


# ------------------------------------------------------------------ writes
def log(con: duckdb.DuckDBPyConnection, at: datetime, decision: str, op: str,
        level: str | None, detail: str, pid: int | None) -> None:
    """Append one decision; the log keeps the newest ``KEPT_DECISIONS``."""
    _check_fields(level, detail, 0 if pid is None else pid)
    newest = con.execute(
        "INSERT INTO permission_decisions (decided_at, decision, operation, level, detail, gateway_pid)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        [at, decision, op, level, detail, pid]).fetchall()[0][0]
    if newest > KEPT_DECISIONS:
        con.execute("DELETE FROM permission_decisions WHERE id <= ?", [newest - KEPT_DECISIONS])


def grant(con: duckdb.DuckDBPyConnection, now: datetime, g: p.GrantPermission) -> list[p.Grant]:
    """Trust ``g.operation`` until now + ``g.ttl_s``, replacing its active grant."""
    op = check_operation(g.operation)
    _check_fields(g.level, g.detail, g.gateway_pid)
    if g.via not in VIAS:
        raise InvalidInput(f"via must be one of {', '.join(VIAS)}, not {g.via!r}")
    limit_s = MAX_TRUST_MINUTES * 60
    if not isinstance(g.ttl_s, int | float) or not math.isfinite(g.ttl_s) or not (
            0 < g.ttl_s <= limit_s):
        raise InvalidInput(f"a grant lasts more than 0 and at most {MAX_TRUST_MINUTES} minutes "
                           f"({limit_s} s), not {g.ttl_s!r} s")
    _end(con, now, op, "replaced")
    expires = now + timedelta(seconds=g.ttl_s)
    con.execute(f"INSERT INTO permission_grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                [op, g.level, g.via, now, expires, g.gateway_pid])
    minutes = f"{g.ttl_s / 60:g}"
    detail = f"for {minutes} min until {expires.isoformat(timespec='seconds')} via {g.via}"
    if g.detail:
        detail += f"; {g.detail}"
    log(con, now, "trusted", op, g.level, detail[:MAX_PERMISSION_DETAIL_LEN], g.gateway_pid)
    return active_grants(con, now, op)


def revoke(con: duckdb.DuckDBPyConnection, now: datetime, op: str | None, level: str | None,
           pid: int) -> int:
    """End the active grants of ``op`` (None: all), logging one ``revoked`` per grant ended
    (or one saying there was nothing to end). Returns how many ended."""
    _check_fields(level, "", pid)
    ended = _end(con, now, op, "revoked")
    for operation, grant_level in ended:
        log(con, now, "revoked", operation, grant_level, "grant ended", pid)
    if not ended:
        log(con, now, "revoked", op or "*", level if op else None, "no active grant", pid)
    return len(ended)


def _end(con: duckdb.DuckDBPyConnection, now: datetime, op: str | None,
         reason: str) -> list[tuple[str, str]]:
    where = "ended_at IS NULL" + ("" if op is None else " AND operation = ?")
    return [(r[0], r[1]) for r in con.execute(
        f"UPDATE permission_grants SET ended_at = ?, end_reason = ? WHERE {where}"
        " RETURNING operation, level", [now, reason] + ([] if op is None else [op])).fetchall()]


def end_expired(con: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """End the grants whose expiry has passed, each logged ``expired`` at its expiry time."""
    rows = con.execute(
        "UPDATE permission_grants SET ended_at = expires_at, end_reason = 'expired'"
        " WHERE ended_at IS NULL AND expires_at <= ?"
        " RETURNING operation, level, expires_at, granted_at, gateway_pid", [now]).fetchall()
    for op, level, expires_at, granted_at, pid in sorted(rows, key=lambda r: r[2]):
        log(con, expires_at, "expired", op, level,
            f"granted at {_iso(granted_at)} by gateway {pid}", None)


# ------------------------------------------------------------------ reads
def active_grants(con: duckdb.DuckDBPyConnection, now: datetime,
                  op: str | None) -> list[p.Grant]:
    where = "ended_at IS NULL AND expires_at > ?" + ("" if op is None else " AND operation = ?")
    rows = con.execute(f"SELECT {_GRANT_COLUMNS} FROM permission_grants WHERE {where}"
                       " ORDER BY operation, expires_at", [now] + ([] if op is None else [op]))
    return [p.Grant(operation=o, level=lv, via=via, granted_at=_iso(at), expires_at=_iso(exp),
                    expires_in_s=round((exp - now).total_seconds(), 3), gateway_pid=pid)
            for o, lv, via, at, exp, pid in rows.fetchall()]


def approvals_in_row(con: duckdb.DuckDBPyConnection, op: str) -> int:
    """Approvals of ``op`` since it was last denied, trusted, revoked or expired."""
    return con.execute(
        "SELECT count(*) FROM permission_decisions WHERE operation = ? AND decision = 'approved'"
        " AND id > coalesce((SELECT max(id) FROM permission_decisions WHERE operation = ?"
        " AND decision IN ('denied', 'trusted', 'revoked', 'expired')), 0)",
        [op, op]).fetchall()[0][0]


def recent_decisions(con: duckdb.DuckDBPyConnection, op: str | None,
                     limit: int) -> list[p.DecisionRecord]:
    where = "" if op is None else "WHERE operation = ?"
    rows = con.execute(
        "SELECT decided_at, decision, operation, level, detail, gateway_pid"
        " FROM permission_decisions"
        f" {where} ORDER BY id DESC LIMIT ?", ([] if op is None else [op]) + [limit]).fetchall()
    return [p.DecisionRecord(at=_iso(at), decision=d, operation=o, level=lv, detail=detail,
                             gateway_pid=pid) for at, d, o, lv, detail, pid in rows]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()
