"""Typed tool results (structured MCP output) and their construction from wire replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import protocol as p

CONTENT_CAP = 2000  # characters of a memory returned by search; the rest via its id


@dataclass
class StoreResult:
    id: str
    duplicate: bool
    project: str
    redacted: list[str]
    message: str


@dataclass
class ScoreParts:
    bm25: float
    vector: float | None
    rrf: float
    decay: float


@dataclass
class MemoryHit:
    id: str
    kind: str
    project: str
    tags: list[str]
    created_at: str
    session_id: str | None
    content: str
    truncated: bool
    snippet: str
    score: float
    parts: ScoreParts
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    query: str
    mode: str  # hybrid | keyword
    note: str
    total_candidates: int
    offset: int
    results: list[MemoryHit]
    since: str | None = None
    until: str | None = None
    files: list[str] | None = None


def hit(h: p.Hit) -> MemoryHit:
    m = h.memory
    return MemoryHit(
        id=m.id, kind=m.kind, project=m.project, tags=m.tags, created_at=m.created_at,
        session_id=m.session_id, content=m.content[:CONTENT_CAP],
        truncated=len(m.content) > CONTENT_CAP, snippet=h.snippet, score=round(h.score, 6),
        parts=ScoreParts(bm25=round(h.bm25, 4),
                         vector=None if h.vector is None else round(h.vector, 4),
                         rrf=round(h.rrf, 6), decay=round(h.decay, 4)),
        metadata=m.metadata)


def search_result(query: str, reply: p.SearchHits, note: str, offset: int = 0,
                  files: list[str] | None = None) -> SearchResult:
    return SearchResult(query=query, mode=reply.mode, note=note,
                        total_candidates=reply.total_candidates, offset=offset,
                        results=[hit(h) for h in reply.hits], since=reply.since,
                        until=reply.until, files=files)
