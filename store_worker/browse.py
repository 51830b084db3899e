"""What the dashboard asks the store beyond the tools' requests (``shared.protocol_browse``): the
projects' overview, a memory's nearest neighbours and its supersession links.

Everything is read from the in-memory catalogue and indexes (numpy over row numbers), never by a
scan of the table: at 100k memories the overview takes a few milliseconds plus ~10 us per
distinct tag.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import NotFound
from shared.protocol_browse import MAX_NEIGHBOURS, MAX_OVERVIEW_TAGS, MAX_OVERVIEW_WEEKS
from store_worker import dependencies
from store_worker.records import InvalidInput, SearchResult, check_id, epoch_us

if TYPE_CHECKING:
    from store_worker.memory_store import MemoryStore

WEEK_US = 7 * 86_400 * 1_000_000
NEIGHBOUR_QUERY_CHARS = 2000  # of a memory's text, when it has no vector yet


def _iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))).isoformat()


def _week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of ``now``'s week."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def overview(store: MemoryStore, weeks: int, top_tags: int,
             now: datetime | None = None) -> dict[str, Any]:
    """Per project: memories by kind, first and last memory, sessions, weekly growth (the last
    ``weeks`` weeks, the current one last, plus how many came before them), top tags; the same
    tags over all projects; every project dependency."""
    if not (isinstance(weeks, int) and 0 <= weeks <= MAX_OVERVIEW_WEEKS):
        raise InvalidInput(f"weeks must be an integer in 0..{MAX_OVERVIEW_WEEKS}")
    if not (isinstance(top_tags, int) and 0 <= top_tags <= MAX_OVERVIEW_TAGS):
        raise InvalidInput(f"top_tags must be an integer in 0..{MAX_OVERVIEW_TAGS}")
    store.flush()
    cat = store.catalog
    n = len(cat)
    alive = cat.alive[:n]
    rows = np.flatnonzero(alive)
    proj = cat.project[:n][rows].astype(np.int64)
    kind = cat.kind[:n][rows].astype(np.int64)
    created = cat.created_us[:n][rows]
    names, kinds = list(cat.project_codes), list(cat.kind_codes)
    n_proj, n_kind = len(names), max(1, len(kinds))
    counts = np.bincount(proj, minlength=n_proj)
    by_kind = np.bincount(proj * n_kind + kind, minlength=n_proj * n_kind).reshape(n_proj, n_kind)
    first = np.full(n_proj, np.iinfo(np.int64).max)
    last = np.full(n_proj, np.iinfo(np.int64).min)
    np.minimum.at(first, proj, created)
    np.maximum.at(last, proj, created)
    sess = cat.session[:n][rows].astype(np.int64)
    in_session = sess >= 0
    pairs = np.unique(proj[in_session] * (len(cat.session_codes) + 1) + sess[in_session])
    sessions = np.bincount(pairs // (len(cat.session_codes) + 1), minlength=n_proj)

    growth = np.zeros((n_proj, weeks), dtype=np.int64)
    before = counts.copy()
    week_starts: list[str] = []
    if weeks:
        start = _week_start(now or datetime.now(UTC)) - timedelta(weeks=weeks - 1)
        start_us = epoch_us(start)
        bucket = (created - start_us) // WEEK_US
        inside = (bucket >= 0) & (bucket < weeks)
        growth = np.bincount(proj[inside] * weeks + bucket[inside],
                             minlength=n_proj * weeks).reshape(n_proj, weeks)
        before = np.bincount(proj[created < start_us], minlength=n_proj)
        week_starts = [(start + timedelta(weeks=i)).date().isoformat() for i in range(weeks)]

    tags_by_project, tags_overall = _top_tags(store, n_proj, top_tags) if top_tags else ({}, [])
    projects = [{
        "name": names[c], "count": int(counts[c]),
        "kinds": {kinds[k]: int(by_kind[c, k]) for k in range(len(kinds)) if by_kind[c, k]},
        "first": _iso(first[c]), "last": _iso(last[c]), "sessions": int(sessions[c]),
        "growth": growth[c].tolist(), "before": int(before[c]),
        "top_tags": tags_by_project.get(c, []),
    } for c in np.argsort(-counts, kind="stable").tolist() if counts[c]]
    return {
        "total": len(rows), "projects": projects, "weeks": week_starts,
        "kinds": {kinds[k]: int(v) for k, v in enumerate(by_kind.sum(axis=0).tolist()) if v},
        "top_tags": tags_overall,
        "dependencies": dependencies.every(store.con),
    }


def _top_tags(store: MemoryStore, n_proj: int,
              k: int) -> tuple[dict[int, list[list[Any]]], list[list[Any]]]:
    """The ``k`` most used tags of each project (by project code) and over all; ties go to the
    name that sorts first."""
    cat = store.catalog
    n = len(cat)
    alive, project = cat.alive[:n], cat.project[:n]
    overall: list[tuple[int, str]] = []
    per: dict[int, list[tuple[int, str]]] = {}
    for tag, postings in cat.tag_postings():
        rows = np.unique(postings)
        rows = rows[rows < n]
        rows = rows[alive[rows]]
        if not len(rows):
            continue
        overall.append((len(rows), tag))
        by_proj = np.bincount(project[rows], minlength=n_proj)
        for code in np.flatnonzero(by_proj).tolist():
            per.setdefault(code, []).append((int(by_proj[code]), tag))
    return {code: _best(items, k) for code, items in per.items()}, _best(overall, k)


def _best(items: list[tuple[int, str]], k: int) -> list[list[Any]]:
    return [[tag, count] for count, tag in heapq.nsmallest(k, items, key=lambda x: (-x[0], x[1]))]


# ----------------------------------------------------------------- one memory
def links(store: MemoryStore, memory_id: str) -> tuple[list[str], str | None]:
    """The memories ``memory_id`` supersedes, and the one superseding it (None)."""
    cat = store.catalog
    row = cat.row_of.get(memory_id)
    if row is None or not cat.alive[row]:
        return [], None
    newer = int(cat.superseded_by[row])
    return ([cat.ids[r] for r in cat.supersedes(row)],
            cat.ids[newer] if newer >= 0 and cat.alive[newer] else None)


def neighbours(store: MemoryStore, memory_id: str, limit: int) -> SearchResult:
    """The ``limit`` memories closest to ``memory_id``: by its stored whole vector (every score
    part as in a search, with no time preference), or, while it has none, by its first words."""
    memory_id = check_id(memory_id)
    if not (isinstance(limit, int) and 1 <= limit <= MAX_NEIGHBOURS):
        raise InvalidInput(f"limit must be an integer in 1..{MAX_NEIGHBOURS}")
    store.flush()
    cat = store.catalog
    row = cat.row_of.get(memory_id)
    if row is None or not cat.alive[row]:
        raise NotFound(f"no memory {memory_id}")
    vector = store.vectors.vector(row)
    if vector is not None:
        found = store.search("", query_vector=vector, limit=limit + 1, decay=False)
    else:
        (memory,) = store.get([memory_id])
        found = store.search(memory["content"][:NEIGHBOUR_QUERY_CHARS], limit=limit + 1,
                             decay=False)
    hits = [h for h in found.hits if h["id"] != memory_id][:limit]
    return SearchResult(hits, found.mode, len(hits))
